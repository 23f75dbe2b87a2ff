"""`syncd daemon` as a subprocess against real slapd and scim2-server: no overlapping runs,
SIGTERM mid-run, SIGHUP reloads, sd_notify, metrics, and no secret in any output.

Every daemon here runs under the kernel's MemoryDenyWriteExecute (PR_SET_MDWE), as the unit
file runs it. A delaying proxy on 127.0.0.1 in front of scim2-server makes runs slow (and can
answer 429) where a test needs that; waits are on observable conditions, with timeouts.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Sync
from tests.peers.directory import write_ldif
from tests.peers.ldap_fixtures import SMALL_GROUPS, SMALL_USERS
from tests.peers.scim_servers import Scim2Server
from tests.peers.slapd import Slapd
from tests.unit.test_daemon_notify import Listener
from tests.unit.test_systemd import _mdwe

SYNCD = str(Path(sys.executable).parent / "syncd")
FLOW = "corp-to-app"
BIG = 400


def wait_for(cond: Callable[[], bool], timeout: float = 60.0, what: str = "",
             daemon: DaemonProc | None = None) -> None:
    """Poll `cond`; fail early, with its log, when the daemon died meanwhile."""
    deadline = time.monotonic() + timeout
    while not cond():
        if daemon is not None and not daemon.alive():
            raise AssertionError(f"daemon exited ({daemon.proc.returncode}) while waiting for "
                                 f"{what}:\n{daemon.stderr.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)  # polling interval, not synchronisation


# -- a slow (and optionally throttling) SCIM server ------------------------------------------


class DelayProxy:
    """Forwards to `upstream` after `delay` seconds per request; the first `throttle` POSTs
    are answered 429 with Retry-After: 0."""

    def __init__(self, upstream: Scim2Server, delay: float, throttle: int = 0) -> None:
        self.upstream, self.delay, self.throttle = upstream, delay, throttle
        self.requests = 0
        self.lock = threading.Lock()
        client = httpx.Client(base_url=upstream.root, timeout=60)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with proxy.lock:
                    proxy.requests += 1
                    throttled = self.command == "POST" and proxy.throttle > 0
                    if throttled:
                        proxy.throttle -= 1
                time.sleep(proxy.delay)  # the slow server this proxy simulates
                if throttled:
                    self.send_response(429)
                    self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "content-length", "connection")}
                r = client.request(self.command, self.path, content=body, headers=headers)
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection",
                                         "content-encoding", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.client = client

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{self.upstream.prefix}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.client.close()


# -- the daemon process and its state store ------------------------------------------------


class DaemonProc:
    def __init__(self, config: Path, tmp: Path, *args: str, env: dict[str, str] | None = None
                 ) -> None:
        self.stderr = tmp / f"daemon-{uuid.uuid4().hex[:6]}.err"
        self.stdout = self.stderr.with_suffix(".out")
        with self.stderr.open("wb") as err, self.stdout.open("wb") as out:
            self.proc = subprocess.Popen(
                [SYNCD, *args, "daemon", "--config", str(config)], stdout=out, stderr=err,
                env={**os.environ, **(env or {})}, preexec_fn=_mdwe)

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for raw in self.stderr.read_text().splitlines():
            assert raw.startswith("{"), f"not a JSON log line: {raw!r}"
            out.append(json.loads(raw))
        return out

    def logged(self, text: str, level: str | None = None) -> bool:
        return any(text in d["msg"] and (level is None or d["level"] == level)
                   for d in self.lines())

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> tuple[int, float]:
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        return code, time.monotonic() - t0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def daemons() -> Iterator[list[DaemonProc]]:
    started: list[DaemonProc] = []
    yield started
    for d in started:
        d.kill()


@dataclass
class Run:
    id: str
    flow: str
    start: datetime
    end: datetime | None
    result: str


def runs(state: Path) -> list[Run]:
    if not state.exists():
        return []
    with sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=30) as db:
        try:
            rows = db.execute("SELECT id, flow, started_at, finished_at, result FROM run "
                              "ORDER BY started_at").fetchall()
        except sqlite3.OperationalError:  # the table is being created
            return []
    return [Run(i, f, datetime.fromisoformat(s), datetime.fromisoformat(e) if e else None, r)
            for i, f, s, e, r in rows]


def finished(state: Path) -> list[Run]:
    return [r for r in runs(state) if r.end is not None]


def configure(sync: Sync, scim_url: str | None = None, extra: str = "",
              connector: str = "") -> None:
    sync.write(extra=extra)
    text = sync.config.read_text()
    if scim_url is not None:
        text = text.replace(f'url = "{sync.scim.url}"', f'url = "{scim_url}"')
    if connector:
        text = text.replace('token = "env:E2E_SCIM_TOKEN"',
                            f'token = "env:E2E_SCIM_TOKEN"\n{connector}')
    sync.config.write_text(text)


def schedule(interval: str) -> str:
    return f'[flows.{FLOW}.schedule]\ninterval = "{interval}"\n'


def users_on_target(sync: Sync) -> list[dict[str, Any]]:
    return sync.list("Users")


# -- tests ---------------------------------------------------------------------------------


def test_runs_never_overlap_when_slower_than_their_interval(
        tmp_path: Path, sync_scim2: Sync, daemons: list[DaemonProc]) -> None:
    assert sync_scim2.run().code == 0  # the initial load, fast: the daemon then only checks
    initial = {r.id for r in runs(sync_scim2.state)}
    proxy = DelayProxy(sync_scim2.scim, delay=0.35)  # type: ignore[arg-type]
    try:
        configure(sync_scim2, proxy.url, schedule("1s"))
        d = DaemonProc(sync_scim2.config, tmp_path)
        daemons.append(d)
        wait_for(lambda: len(finished(sync_scim2.state)) >= 4, 120, "three daemon runs", d)
        code, took = d.stop()
    finally:
        proxy.close()
    assert code == 0 and took < 30
    all_runs = [r for r in runs(sync_scim2.state) if r.id not in initial]
    assert len(all_runs) >= 3
    assert all(r.end is not None for r in all_runs), "a run left 'running' after shutdown"
    for r in all_runs:
        assert r.end is not None and (r.end - r.start).total_seconds() > 1.0, \
            "the run should outlast the 1s interval, or this test proves nothing"
    spans = sorted((r.start, r.end) for r in all_runs if r.end is not None)
    for (_s1, e1), (s2, _e2) in itertools.pairwise(spans):
        assert e1 <= s2, f"runs overlap: one ended {e1}, the next started {s2}"
    assert d.logged("maximum number of running instances reached"), \
        "the scheduler never had to skip a tick"
    assert {r.result for r in all_runs} <= {"ok", "aborted"}


@pytest.fixture
def big_slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    ldif = write_ldif(tmp_path_factory.mktemp("big") / "big.ldif", BIG, 10, 40)
    with Slapd(ldif=ldif, size_limit=0) as server:
        yield server


def test_sigterm_mid_run_exits_0_with_a_consistent_store(
        tmp_path: Path, big_slapd: Slapd, scim2_server: Scim2Server,
        monkeypatch: pytest.MonkeyPatch, daemons: list[DaemonProc]) -> None:
    sync = Sync(tmp_path, big_slapd, scim2_server, monkeypatch)
    proxy = DelayProxy(scim2_server, delay=0.02)
    try:
        configure(sync, proxy.url, schedule("1h"), 'bulk = "never"\nconcurrency = 4')
        d = DaemonProc(sync.config, tmp_path)
        daemons.append(d)
        wait_for(lambda: len(users_on_target(sync)) >= 20, 120, "the apply to be under way", d)
        code, took = d.stop()
    finally:
        proxy.close()
    assert code == 0, d.stderr.read_text()[-3000:]
    assert took < 30
    (run,) = runs(sync.state)
    assert run.result == "aborted" and run.end is not None
    assert d.logged(f"flow {FLOW} run aborted")

    on_target = {u["id"]: u["userName"] for u in users_on_target(sync)}
    assert 0 < len(on_target) < BIG, "SIGTERM should have landed mid-apply"
    with sqlite3.connect(f"file:{sync.state}?mode=ro", uri=True) as db:
        links = db.execute("SELECT source_id, target_id, base, status FROM link "
                           "WHERE kind = 'user'").fetchall()
    assert all(t and b and b != "{}" and s == "active" for _, t, b, s in links), \
        "a half-written link"
    assert sorted(t for _, t, _, _ in links) == sorted(on_target), \
        "links must be exactly the users that exist on the target"

    configure(sync)  # straight to the SCIM server now: the proxy is gone
    again = sync.run()
    assert again.code == 0, again.out
    names = Counter(u["userName"] for u in users_on_target(sync))
    assert len(names) == BIG and max(names.values()) == 1, "duplicates on the target"
    assert sync.run().doc["changes"] == []  # type: ignore[index]


def test_sighup_bad_config_keeps_the_old_one_good_config_reschedules(
        tmp_path: Path, sync_scim2: Sync, daemons: list[DaemonProc]) -> None:
    notify = Listener(str(tmp_path / "notify.sock"))
    try:
        configure(sync_scim2, extra=schedule("1h"))
        good = sync_scim2.config.read_text()
        d = DaemonProc(sync_scim2.config, tmp_path, env={"NOTIFY_SOCKET": notify.address})
        daemons.append(d)
        wait_for(lambda: len(finished(sync_scim2.state)) == 1, 60, "the startup run", d)
        wait_for(lambda: "READY=1" in notify.fields(), 10, "READY=1", d)

        sync_scim2.config.write_text(good.replace('interval = "1h"', 'interval = "whenever"'))
        d.signal(signal.SIGHUP)
        wait_for(lambda: d.logged("reload failed", "error"), 30, "the reload error", d)
        (err,) = [x for x in d.lines() if "reload failed" in x["msg"]]
        assert "schedule.interval" in err["msg"]
        wait_for(lambda: notify.fields().count("READY=1") == 2, 10, "READY=1 after RELOADING", d)
        assert "RELOADING=1" in notify.fields()
        assert d.alive()
        assert len(runs(sync_scim2.state)) == 1, "the old hourly schedule still holds"

        sync_scim2.config.write_text(good.replace('interval = "1h"', 'interval = "1s"'))
        d.signal(signal.SIGHUP)
        wait_for(lambda: len(finished(sync_scim2.state)) >= 3, 60, "runs on the new schedule", d)
        assert d.logged("reloaded: 1 flow(s) scheduled", "info")
        assert d.logged(f"flow {FLOW} scheduled: interval[0:00:01]")
        code, _ = d.stop()
        assert code == 0
        wait_for(lambda: "STOPPING=1" in notify.fields(), 10, "STOPPING=1")
    finally:
        notify.close()


def test_notify_watchdog_and_metrics(tmp_path: Path, sync_scim2: Sync,
                                     daemons: list[DaemonProc]) -> None:
    from tests.unit.test_daemon_metrics import free_port, value

    port = free_port()
    notify = Listener(f"@syncd-e2e-{uuid.uuid4().hex}")
    proxy = DelayProxy(sync_scim2.scim, delay=0, throttle=2)  # type: ignore[arg-type]
    try:
        configure(sync_scim2, proxy.url,
                  schedule("1h") + f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n')
        d = DaemonProc(sync_scim2.config, tmp_path,
                       env={"NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": "200000"})
        daemons.append(d)
        wait_for(lambda: "READY=1" in notify.fields(), 30, "READY=1", d)
        wait_for(lambda: notify.fields().count("WATCHDOG=1") >= 3, 10, "watchdog pings", d)
        wait_for(lambda: any(f.startswith(f"STATUS={FLOW}: ok ") for f in notify.fields()),
                 60, "STATUS= with the run", d)
        body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        code, _ = d.stop()
    finally:
        proxy.close()
        notify.close()
    assert code == 0
    assert value(body, "syncd_runs_total", flow=FLOW, result="ok") == 1
    assert value(body, "syncd_changes_total", flow=FLOW, kind="user", op="create",
                 result="applied") == SMALL_USERS
    assert value(body, "syncd_changes_total", flow=FLOW, kind="group", op="create",
                 result="applied") == SMALL_GROUPS
    assert value(body, "syncd_target_http_429_total", target="app") == 2
    assert (value(body, "syncd_last_success_timestamp_seconds", flow=FLOW) or 0) > 1.7e9
    assert value(body, "syncd_last_run_result", flow=FLOW, syncd_last_run_result="ok") == 1
    assert value(body, "syncd_pending_objects", flow=FLOW, state="quarantined") == 0
    assert value(body, "syncd_run_duration_seconds_count", flow=FLOW) == 1


def test_no_secret_in_any_output(tmp_path: Path, small_ldif: Path, scim2_server: Scim2Server,
                                 monkeypatch: pytest.MonkeyPatch,
                                 daemons: list[DaemonProc]) -> None:
    ldap_secret = f"Ldap-{uuid.uuid4().hex}"
    wrong_token = f"Wrong-{uuid.uuid4().hex}"
    token = scim2_server.token or ""
    assert token
    with Slapd(ldif=small_ldif, admin_password=ldap_secret) as ldap:
        sync = Sync(tmp_path, ldap, scim2_server, monkeypatch)  # env: references
        creds = tmp_path / "credentials"
        creds.mkdir()
        (creds / "ldap-pw").write_text(ldap_secret + "\n")
        (creds / "scim-token").write_text(token)
        configure(sync, extra=schedule("1h"))
        env_config = sync.config.read_text()
        file_config = (env_config.replace('"env:E2E_LDAP_PASSWORD"', '"file:ldap-pw"')
                       .replace('"env:E2E_SCIM_TOKEN"', '"file:scim-token"'))
        (tmp_path / "file.toml").write_text(file_config)

        outputs: list[str] = []
        d = DaemonProc(tmp_path / "file.toml", tmp_path, "-vv",
                       env={"CREDENTIALS_DIRECTORY": str(creds)})
        daemons.append(d)
        wait_for(lambda: len(finished(sync.state)) == 1, 60, "the daemon's run", d)
        assert d.stop()[0] == 0
        outputs += [d.stderr.read_text(), d.stdout.read_text()]
        assert '"applied create user' in outputs[0], "the log capture is empty?"

        ldap.modify("dn: uid=user000001,ou=people,dc=example,dc=org\nchangetype: modify\n"
                    "replace: title\ntitle: Changed\n")
        env = {**os.environ, "E2E_LDAP_PASSWORD": ldap_secret, "E2E_SCIM_TOKEN": token}
        for args in (["-vv", "run", "-c", str(sync.config)],
                     ["-vv", "run", "-c", str(sync.config), "-o", "json"],
                     ["-vv", "status", "-c", str(sync.config)],
                     ["-vv", "run", "-c", str(sync.config), "--dry-run"]):
            res = subprocess.run([SYNCD, *args], env=env, capture_output=True, text=True,
                                 timeout=120)
            assert res.returncode == 0, res.stderr[-2000:]
            outputs += [res.stdout, res.stderr]
        # failures are where secrets like to leak: wrong token, wrong password
        for bad in ({"E2E_SCIM_TOKEN": wrong_token},
                    {"E2E_LDAP_PASSWORD": f"{ldap_secret}-nope"}):
            res = subprocess.run([SYNCD, "-vv", "run", "-c", str(sync.config)],
                                 env={**env, **bad}, capture_output=True, text=True,
                                 timeout=120)
            assert res.returncode == 1, res.stdout + res.stderr
            outputs += [res.stdout, res.stderr]
    everything = "\n".join(outputs)
    assert "Changed" in everything  # the update was shown, so output was captured
    for secret in (ldap_secret, token, wrong_token):
        assert secret not in everything, f"secret {secret[:6]}… leaked"
