"""A throwaway OpenLDAP server on 127.0.0.1 for tests, the demo and benchmarks.

Why a launcher of our own: the connector must be proven against the real slapd (paging, size
limits, syncprov, TLS), not a mock. Each instance lives in its own temporary directory:
cn=config is built offline with ``slapadd -n0`` (so no running server is needed to configure
it), data is bulk-loaded with ``slapadd -q -w`` (``-w`` writes contextCSN, so syncrepl
cookies work right after start), and slapd runs in the foreground (``-d 0``) so we own its
PID: stop = SIGTERM, wait, then SIGKILL. Readiness is detected by polling an LDAP bind,
never by sleeping a fixed time.

The data database has the syncprov overlay (RFC 4533, needed by incremental reads) and
``olcDbNoSync`` (online writes are fsync-bound otherwise: 66/s vs ~1,700/s). The admin
(rootdn) is never size-limited; other identities get `size_limit` (slapd's default is 500),
which is how tests provoke ``sizeLimitExceeded``.

Usage::

    with Slapd(ldif=path) as server:        # path from tests.peers.directory.write_ldif
        server.url, server.admin_dn, server.admin_password, server.base
        server.modify("dn: ...\\nchangetype: modify\\n...")
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import ldap3

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
MODULE_PATH = "/usr/lib/ldap"
SCHEMA_DIR = "/etc/ldap/schema"
SCHEMAS = ("core", "cosine", "nis", "inetorgperson")
BASE = "dc=example,dc=org"
ADMIN_DN = f"cn=admin,{BASE}"

_SUFFIX_LDIF = (
    f"dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n"
)


class SlapdError(RuntimeError):
    """slapd or one of the OpenLDAP tools failed; the message carries their output."""


def require_openldap() -> None:
    """Fail loudly (never skip) when the OpenLDAP binaries are missing."""
    missing = [p for p in (SLAPD, SLAPADD) if not os.access(p, os.X_OK)]
    missing += [t for t in ("ldapmodify", "ldapdelete") if shutil.which(t) is None]
    if missing:
        raise SlapdError(
            f"OpenLDAP is not installed ({', '.join(missing)} missing): "
            "apt-get install slapd ldap-utils"
        )


def _wait_state(pid: int, state: str, timeout: float = 5.0) -> None:
    """Wait until /proc says the process is in `state` (SIGSTOP is delivered asynchronously)."""
    deadline = time.monotonic() + timeout
    stat = Path(f"/proc/{pid}/stat")
    while time.monotonic() < deadline:
        fields = stat.read_text().rsplit(")", 1)[-1].split()
        if fields and fields[0] == state:
            return
        time.sleep(0.001)
    raise SlapdError(f"slapd {pid} did not reach state {state}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _run(cmd: list[str], *, stdin: str | None = None, what: str) -> str:
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SlapdError(f"{what} failed (exit {proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


class Slapd:
    """One OpenLDAP server. Construct, then `start()` (or use as a context manager).

    `ldif`: a file to bulk-load before start; it must contain the suffix entry
    (`tests.peers.directory.generate_ldif` does). Without it only the suffix entry exists.
    `tls`: also create a throwaway CA and server certificate (for 127.0.0.1 and localhost),
    enable StartTLS on `url` and listen on `ldaps_url`; `ca_file` is the CA to trust.
    `cert_names`: the certificate's subjectAltNames (another name tests host-name checks).
    `syncprov`: load the content-sync overlay (False: a server without RFC 4533, as many
    are); `sessionlog`: how many deletes/changes it remembers for delete-mode refreshes.
    """

    base = BASE
    admin_dn = ADMIN_DN

    def __init__(
        self,
        *,
        ldif: str | Path | None = None,
        admin_password: str = "admin-secret",
        size_limit: int = 500,
        tls: bool = False,
        cert_names: tuple[str, ...] = ("IP:127.0.0.1", "DNS:localhost"),
        start_timeout: float = 15.0,
        syncprov: bool = True,
        sessionlog: int = 10000,
        max_size: int = 4 << 30,
    ) -> None:
        """`max_size`: the mdb map size in bytes (a million users with their indexes need
        more than the default 4 GiB)."""
        require_openldap()
        self.max_size = max_size
        self.admin_password = admin_password
        self.size_limit = size_limit
        self.tls = tls
        self.cert_names = cert_names
        self.start_timeout = start_timeout
        self.syncprov = syncprov
        self.sessionlog = sessionlog
        self._ldif = Path(ldif) if ldif is not None else None
        self.directory = Path(tempfile.mkdtemp(prefix="syncd-slapd-"))
        self.port = 0
        self.tls_port = 0
        self.ca_file: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._configured = False
        self._log = self.directory / "slapd.log"
        self._pwfile = self.directory / "admin.pw"
        self._pwfile.write_text(admin_password, encoding="utf-8")
        self._pwfile.chmod(0o600)

    # ---- addresses -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        if not self.tls:
            raise SlapdError("this server was started without tls=True")
        return f"ldaps://127.0.0.1:{self.tls_port}"

    @property
    def ldapi_url(self) -> str:
        return "ldapi://" + quote(str(self.directory / "ldapi"), safe="")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # ---- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Slapd:
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    def start(self) -> Slapd:
        """Configure and load (first time only), start slapd and wait until it answers."""
        if self._proc is not None and self._proc.poll() is None:
            return self
        if not self._configured:
            if self.tls:
                self._make_certificates()
            self._configure()
            self._configured = True
        last = ""
        for _attempt in range(3):  # a free port can be taken between probing and binding
            self.port = free_port()
            self.tls_port = free_port() if self.tls else 0
            urls = [f"ldap://127.0.0.1:{self.port}/", self.ldapi_url]
            if self.tls:
                urls.append(f"ldaps://127.0.0.1:{self.tls_port}/")
            log = self._log.open("ab")
            try:
                self._proc = subprocess.Popen(
                    [SLAPD, "-d", "0", "-F", str(self.directory / "slapd.d"), "-h", " ".join(urls)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            finally:
                log.close()
            if self._wait_ready():
                return self
            last = self._log.read_text(errors="replace")[-2000:]
            self._reap()
        raise SlapdError(f"slapd did not start: {last}")

    def _wait_ready(self) -> bool:
        """Poll an admin bind until it succeeds; False if slapd exited (e.g. port taken)."""
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        delay = 0.005
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            server = ldap3.Server(
                "127.0.0.1", port=self.port, connect_timeout=1, get_info=ldap3.NONE
            )
            conn = ldap3.Connection(server, self.admin_dn, self.admin_password, receive_timeout=2)
            try:
                if conn.bind():
                    return True
            except ldap3.core.exceptions.LDAPException:
                pass
            finally:
                conn.unbind()
            time.sleep(delay)  # polling back-off, not synchronisation
            delay = min(delay * 2, 0.1)
        self.kill()
        raise SlapdError(f"slapd not ready after {self.start_timeout}s; log in {self._log}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait up to `timeout`, then SIGKILL. Data stays; `start()` again works."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)  # a paused server cannot handle SIGTERM
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._proc = None

    def kill(self) -> None:
        """SIGKILL now, for fault tests (the server vanishes mid-conversation)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def _reap(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
        self._proc = None

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """SIGSTOP slapd for the block: connections stay open but nothing answers, which is
        how tests provoke client timeouts without sleeping."""
        assert self._proc is not None, "not running"
        os.kill(self._proc.pid, signal.SIGSTOP)
        _wait_state(self._proc.pid, "T")  # stopped for sure before the block runs
        try:
            yield
        finally:
            if self._proc is not None and self._proc.poll() is None:
                os.kill(self._proc.pid, signal.SIGCONT)

    def cleanup(self) -> None:
        """Stop and delete the temporary directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    # ---- online changes --------------------------------------------------------------------

    def _tool(self, tool: str, args: list[str], stdin: str | None) -> str:
        cmd = [tool, "-x", "-H", self.url, "-D", self.admin_dn, "-y", str(self._pwfile), *args]
        return _run(cmd, stdin=stdin, what=tool)

    def modify(self, ldif: str) -> str:
        """Apply LDIF change records (``changetype: add|modify|delete|modrdn``) as the admin."""
        return self._tool("ldapmodify", [], ldif)

    def add(self, ldif: str) -> str:
        """Add plain LDIF entries (no changetype lines needed) as the admin."""
        return self._tool("ldapmodify", ["-a"], ldif)

    def delete(self, *dns: str, recursive: bool = False) -> str:
        return self._tool("ldapdelete", ["-r", *dns] if recursive else list(dns), None)

    # ---- offline setup ---------------------------------------------------------------------

    def _make_certificates(self) -> None:
        d = self.directory
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        _run(
            [
                "openssl",
                "req",
                "-x509",
                *ec,
                "-keyout",
                str(d / "ca.key"),
                "-out",
                str(d / "ca.pem"),
                "-days",
                "2",
                "-subj",
                "/CN=syncd test CA",
            ],
            what="openssl (CA)",
        )
        _run(
            [
                "openssl",
                "req",
                *ec,
                "-keyout",
                str(d / "server.key"),
                "-out",
                str(d / "server.csr"),
                "-subj",
                "/CN=127.0.0.1",
            ],
            what="openssl (server key)",
        )
        (d / "san.ext").write_text(f"subjectAltName={','.join(self.cert_names)}\n")
        _run(
            [
                "openssl",
                "x509",
                "-req",
                "-in",
                str(d / "server.csr"),
                "-CA",
                str(d / "ca.pem"),
                "-CAkey",
                str(d / "ca.key"),
                "-CAcreateserial",
                "-out",
                str(d / "server.pem"),
                "-days",
                "2",
                "-extfile",
                str(d / "san.ext"),
            ],
            what="openssl (server cert)",
        )
        self.ca_file = str(d / "ca.pem")

    def _config_ldif(self) -> str:
        d = self.directory
        tls = ""
        if self.tls:
            tls = (
                f"olcTLSCACertificateFile: {d / 'ca.pem'}\n"
                f"olcTLSCertificateFile: {d / 'server.pem'}\n"
                f"olcTLSCertificateKeyFile: {d / 'server.key'}\n"
            )
        schemas = "".join(f"include: file://{SCHEMA_DIR}/{s}.ldif\n\n" for s in SCHEMAS)
        return f"""dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {d / "slapd.pid"}
olcArgsFile: {d / "slapd.args"}
{tls}
dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: {MODULE_PATH}
olcModuleLoad: back_mdb
{"olcModuleLoad: syncprov" if self.syncprov else ""}

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

{schemas}dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend
olcSizeLimit: {self.size_limit}

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcAccess: {{0}}to * by * none

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcDbDirectory: {d / "data"}
olcSuffix: {self.base}
olcRootDN: {self.admin_dn}
olcRootPW: {self.admin_password}
olcDbNoSync: TRUE
olcDbMaxSize: {self.max_size}
olcSizeLimit: {self.size_limit}
olcLimits: {{0}}dn.exact="{self.admin_dn}" size=unlimited time=unlimited
olcDbIndex: objectClass eq
olcDbIndex: entryUUID eq
olcDbIndex: entryCSN eq
olcDbIndex: uid eq
olcDbIndex: cn eq
olcDbIndex: mail eq
olcDbIndex: member eq
olcAccess: {{0}}to attrs=userPassword by self write by anonymous auth by * none
olcAccess: {{1}}to * by * read
{self._syncprov_ldif()}"""

    def _syncprov_ldif(self) -> str:
        if not self.syncprov:
            return ""
        return f"""
dn: olcOverlay={{0}}syncprov,olcDatabase={{1}}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcSyncProvConfig
olcOverlay: {{0}}syncprov
olcSpCheckpoint: 100 10
olcSpSessionlog: {self.sessionlog}
"""

    def _configure(self) -> None:
        conf = self.directory / "slapd.d"
        conf.mkdir()
        (self.directory / "data").mkdir()
        _run([SLAPADD, "-n0", "-F", str(conf)], stdin=self._config_ldif(), what="slapadd -n0")
        data_args = [SLAPADD, "-q", "-w", "-F", str(conf), "-b", self.base]
        if self._ldif is not None:
            _run([*data_args, "-l", str(self._ldif)], what=f"slapadd of {self._ldif}")
        else:
            _run(data_args, stdin=_SUFFIX_LDIF, what="slapadd of the suffix entry")
