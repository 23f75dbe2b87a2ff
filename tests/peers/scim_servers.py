"""Real SCIM 2.0 servers as subprocesses on 127.0.0.1, for tests, demos and benchmarks.

Both launchers are context managers with ``.url`` (the SCIM base URL to put in a connector's
``url``), ``.pid``, ``.token`` (the static bearer token it accepts, or None = no auth),
``.reset()`` (empty the directory, for a clean test without a new process) and ``.stop()``.
Readiness is found by polling ``GET {url}/ServiceProviderConfig``; the process is stopped by
its PID (SIGTERM, then SIGKILL).

 - `Scim2Server`: python-scim's scim2-server (in memory) served by waitress with keep-alive,
   see tests/peers/run_scim2_server.py.
 - `DjangoScimServer`: django-scim2-server in a generated throwaway Django project (SQLite
   in WAL mode, migrated once, served by waitress). Its auth check is a static bearer token
   (or none), configured through ``SCIM2_SERVER_AUTH_CHECK``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import httpx

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 30.0


def free_port() -> int:
    """A port that was free a moment ago (a start retries when it lost the race)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Peer:
    """Start a server process, poll it ready, stop it by PID."""

    #: path under the root where SCIM lives, e.g. "/v2" or "/scim/v2"
    prefix = "/v2"

    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.root + self.prefix

    @property
    def pid(self) -> int:
        assert self.proc is not None, "server not started"
        return self.proc.pid

    def _command(self, port: int) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        )
        env.pop("SCIM_PEER_TOKEN", None)
        if self.token:
            env["SCIM_PEER_TOKEN"] = self.token
        return env

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def start(self) -> Self:
        for _attempt in range(3):
            self.port = free_port()
            self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
            self.proc = subprocess.Popen(
                self._command(self.port),
                cwd=str(REPO),
                env=self._env(),
                stdout=self._log,
                stderr=subprocess.STDOUT,
            )
            if self._wait_ready():
                return self
            self.stop()
        raise RuntimeError(f"{type(self).__name__} did not start: {self._output()}")

    def _output(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-2000:]

    def _wait_ready(self) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + READY_TIMEOUT
        delay = 0.01
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    return False  # exited (port taken, crash): caller retries / reports
                try:
                    r = client.get(self.url + "/ServiceProviderConfig", headers=self._headers())
                    if r.status_code == 200:
                        return True
                except httpx.TransportError:
                    pass
                time.sleep(delay)  # polling interval, not synchronisation
                delay = min(delay * 2, 0.2)
        return False

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc is not None:
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        """SIGKILL by PID, at once (a crash, not a shutdown); `stop()` still cleans up."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def reset(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start() if self.proc is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class Scim2Server(_Peer):
    """scim2-server 0.8.3 (full SCIM: enterprise extension, /Bulk, ETags, PATCH filters)."""

    prefix = "/v2"

    def __init__(
        self,
        token: str | None = None,
        *,
        bulk_max_operations: int | None = None,
        bulk_max_payload: int | None = None,
        user_extensions: list[dict[str, Any]] | None = None,
    ) -> None:
        """The /Bulk limits default to scim2-server's (1000 operations, 1 MiB);
        `user_extensions`: schema documents served as extensions of User (custom schemas)."""
        super().__init__(token)
        self.bulk_max_operations = bulk_max_operations
        self.bulk_max_payload = bulk_max_payload
        self.user_extensions = user_extensions
        self._extensions_file: Path | None = None

    def _command(self, port: int) -> list[str]:
        cmd = [sys.executable, "-m", "tests.peers.run_scim2_server", "--port", str(port)]
        if self.bulk_max_operations is not None:
            cmd += ["--bulk-max-operations", str(self.bulk_max_operations)]
        if self.bulk_max_payload is not None:
            cmd += ["--bulk-max-payload", str(self.bulk_max_payload)]
        if self.user_extensions:
            if self._extensions_file is None:
                fd, name = tempfile.mkstemp(prefix="scim2-extensions-", suffix=".json")
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(self.user_extensions, fh)
                self._extensions_file = Path(name)
            cmd += ["--user-extension", str(self._extensions_file)]
        return cmd

    def stop(self) -> None:
        super().stop()
        if self._extensions_file is not None:
            self._extensions_file.unlink(missing_ok=True)
            self._extensions_file = None

    def reset(self) -> None:
        r = httpx.post(self.root + "/__reset__", timeout=5)
        r.raise_for_status()


_SETTINGS = """\
SECRET_KEY = "test-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django_scim2_server",
]
MIDDLEWARE = []
ROOT_URLCONF = "scimpeer.urls"
DATABASES = {{
    "default": {{
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": {db!r},
        "OPTIONS": {{
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;",
        }},
    }}
}}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
SCIM2_SERVER_AUTH_CHECK = "scimpeer.auth.static_token"
"""

_URLS = """\
from django.urls import include, path

urlpatterns = [path("scim/v2/", include("django_scim2_server.urls"))]
"""

_AUTH = """\
import hmac
import os

TOKEN = os.environ.get("SCIM_PEER_TOKEN", "")


def static_token(request):
    \"\"\"No token configured: everyone may; else exactly 'Bearer TOKEN'.\"\"\"
    if not TOKEN:
        return True
    given = request.META.get("HTTP_AUTHORIZATION", "")
    return hmac.compare_digest(given.encode(), f"Bearer {TOKEN}".encode())
"""

_WSGI = """\
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scimpeer.settings")
from django.core.wsgi import get_wsgi_application

_django = get_wsgi_application()


def application(environ, start_response):
    \"\"\"Buffer Django's response and set Content-Length: without it waitress closes the
    connection after every response, and the peer would not be keep-alive.\"\"\"
    seen = {}

    def capture(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, headers
        return lambda data: None

    result = _django(environ, capture)
    try:
        body = b"".join(result)
    finally:
        result.close()  # Django's request_finished: closes this thread's DB connection
    headers = [(k, v) for k, v in seen["headers"] if k.lower() != "content-length"]
    if not seen["status"].startswith(("204", "304")):
        headers.append(("Content-Length", str(len(body))))
    start_response(seen["status"], headers)
    return [body]
"""

#: Tables the reset empties, children first.
_TABLES = (
    "django_scim2_server_scimgroup",
    "django_scim2_server_scimuser",
    "auth_user_groups",
    "auth_user_user_permissions",
    "auth_group_permissions",
    "auth_group",
    "auth_user",
)


class DjangoScimServer(_Peer):
    """django-scim2-server 1.1.0 in a generated Django project, SQLite, waitress."""

    prefix = "/scim/v2"

    def __init__(self, token: str | None = None) -> None:
        super().__init__(token)
        self.dir: Path | None = None

    @property
    def db(self) -> Path:
        assert self.dir is not None
        return self.dir / "db.sqlite3"

    def _env(self) -> dict[str, str]:
        env = super()._env()
        assert self.dir is not None
        env["PYTHONPATH"] = os.pathsep.join([str(self.dir), env["PYTHONPATH"]])
        env["DJANGO_SETTINGS_MODULE"] = "scimpeer.settings"
        return env

    def _generate(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="django-scim-"))
        pkg = self.dir / "scimpeer"
        pkg.mkdir()
        (pkg / "__init__.py").write_text("")
        (pkg / "settings.py").write_text(_SETTINGS.format(db=str(self.db)))
        (pkg / "urls.py").write_text(_URLS)
        (pkg / "auth.py").write_text(textwrap.dedent(_AUTH))
        (pkg / "wsgi.py").write_text(_WSGI)
        subprocess.run(
            [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"],
            cwd=str(self.dir),
            env=self._env(),
            check=True,
            capture_output=True,
        )

    def _command(self, port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "waitress",
            "--listen",
            f"127.0.0.1:{port}",
            "--threads",
            "8",
            "--ident",
            "django-scim2-server",
            "scimpeer.wsgi:application",
        ]

    def start(self) -> Self:
        if self.dir is None:
            self._generate()
        super().start()
        return self

    def reset(self) -> None:
        """Empty the directory straight in SQLite (the server keeps no cache of its own)."""
        con = sqlite3.connect(self.db, timeout=30)
        try:
            with con:
                for table in _TABLES:
                    con.execute(f"DELETE FROM {table}")
        finally:
            con.close()

    def stop(self) -> None:
        super().stop()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
