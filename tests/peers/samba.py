"""A throwaway Samba AD domain controller, the Active Directory stand-in of the tests.

Why: the LDAP connector's AD path (objectGUID anchors, DirSync incremental reads with
tombstones, ``userAccountControl`` disable) must be proven against a real AD-speaking server,
not only at the BER level. Samba 4 is the only one that can run in CI.

How it runs (root only: it needs a network namespace):

- **Provisioning** (``samba-tool domain provision``, ~9 s) happens once into a *template*
  directory (`SambaTemplate`), which also holds the sample OUs; every `SambaDC` copies it
  (~0.1 s, 33 MB) and writes its own smb.conf with the copy's paths, so each server is
  independent. Only the ``ldap`` service runs, TLS is off (no key generation at start, which
  would cost ~7 s) and simple binds over plain LDAP are allowed
  (``ldap server require strong auth = no``).
- Samba's LDAP port is fixed at 389, so samba runs in a **network namespace of its own**
  (``ip netns add syncd-ad-<pid>-<n>``, loopback only) and the host reaches it through two
  socat processes bridged by a Unix socket in the instance directory (Unix sockets are not
  per network namespace): ``127.0.0.1:<free port>`` -> ``ldap.sock`` -> ``127.0.0.1:389``
  inside the namespace. Nothing listens outside 127.0.0.1.
- samba runs in the foreground (``-F``, single process model) in a process group of its own,
  as do the socats; readiness is an admin bind through the bridge, polled (never a fixed
  sleep); stop = SIGTERM to those process groups (by id), wait, SIGKILL; then the namespace
  is deleted.

Usage::

    template = SambaTemplate(); template.build()           # once per session
    with SambaDC(template) as dc:
        dc.url, dc.base, dc.admin_dn, dc.admin_password
        dn = dc.add_user("alice", givenName="Alice")
        dc.guid(dn)                                          # canonical UUID string
        dc.modify(dn, {"title": "Boss"}); dc.delete(dn)
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import ldap3

from tests.peers.slapd import free_port

SAMBA = "/usr/sbin/samba"
SAMBA_TOOL = "/usr/bin/samba-tool"
REALM = "SYNCD.TEST"
DOMAIN = "SYNCD"
NETBIOS = "SYNCDDC"
BASE = "DC=syncd,DC=test"
ADMIN_DN = f"CN=Administrator,CN=Users,{BASE}"
ADMIN_PASSWORD = "Syncd-Adm1n-Secret!"
#: The sample OUs every template holds: users and groups of the tests live there, away from
#: the built-in accounts under CN=Users.
PEOPLE = f"OU=People,{BASE}"
GROUPS = f"OU=Groups,{BASE}"
#: userAccountControl: NORMAL_ACCOUNT | PASSWD_NOTREQD -- an enabled account without a
#: password (setting unicodePwd needs an encrypted connection, which the tests do not use).
UAC_ENABLED_NO_PASSWORD = 0x200 | 0x20
UAC_ACCOUNTDISABLE = 0x2

_counter = itertools.count()


class SambaError(RuntimeError):
    """samba, samba-tool, socat or ip failed; the message carries their output."""


def require_samba() -> None:
    """Fail loudly (never skip) when Samba AD, socat or ip are missing, or we are not root."""
    missing = [p for p in (SAMBA, SAMBA_TOOL) if not os.access(p, os.X_OK)]
    missing += [t for t in ("socat", "ip") if shutil.which(t) is None]
    if missing:
        raise SambaError(
            f"Samba AD DC is not installed ({', '.join(missing)} missing): apt-get install "
            "samba samba-ad-dc samba-ad-provision socat iproute2 (scripts/bootstrap.sh does)"
        )
    if os.geteuid() != 0:
        raise SambaError("the Samba AD DC tests need root (ip netns add): run them as root")


def _run(cmd: list[str], *, what: str, timeout: float = 120) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=timeout)
    if proc.returncode != 0:
        out = (proc.stderr.strip() or proc.stdout.strip())[-3000:]
        raise SambaError(f"{what} failed (exit {proc.returncode}): {out}")
    return proc.stdout


def _smb_conf(directory: Path) -> str:
    d = directory
    return f"""[global]
\tnetbios name = {NETBIOS}
\trealm = {REALM}
\tworkgroup = {DOMAIN}
\tserver role = active directory domain controller
\tserver services = ldap
\tldap server require strong auth = no
\ttls enabled = no
\tinterfaces = lo
\tbind interfaces only = yes
\tprivate dir = {d}/private
\tstate directory = {d}/state
\tcache directory = {d}/cache
\tlock directory = {d}
\tpid directory = {d}
\tbinddns dir = {d}/bind-dns
\tlog file = {d}/log.samba
\tlogging = file
\tidmap_ldb:use rfc2307 = yes
"""


def _stop_group(proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM the process group led by `proc` (started with start_new_session), wait, then
    SIGKILL the group. Only ids of processes we started."""
    if proc is None:
        return
    pgid = proc.pid
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGCONT)
            os.killpg(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    with contextlib.suppress(ProcessLookupError):  # forked socat children, tfork helpers
        os.killpg(pgid, signal.SIGKILL)


class SambaTemplate:
    """A provisioned domain (plus the sample OUs) to copy per server; `build()` once."""

    def __init__(self, directory: str | Path | None = None) -> None:
        require_samba()
        self.directory = Path(directory or tempfile.mkdtemp(prefix="syncd-samba-template-"))
        self.built = False

    def build(self) -> SambaTemplate:
        if self.built:
            return self
        prov = self.directory / "prov"
        if prov.exists():
            shutil.rmtree(prov)
        _run(
            [
                SAMBA_TOOL, "domain", "provision", "--targetdir", str(prov),
                f"--realm={REALM}", f"--domain={DOMAIN}", f"--host-name={NETBIOS.lower()}",
                f"--adminpass={ADMIN_PASSWORD}", "--use-rfc2307", "--server-role=dc",
                "--dns-backend=NONE",
            ],
            what="samba-tool domain provision",
            timeout=300,
        )  # fmt: skip
        # The sample OUs, added once through a running server so every copy has them.
        # It runs in place (no copy); its run-time leftovers are removed afterwards.
        with SambaDC(self, _in_place=True) as dc:
            for ou in (PEOPLE, GROUPS):
                dc.add(ou, {"objectClass": ["top", "organizationalUnit"]})
        for path in prov.rglob("*"):  # sockets (ldapi, the bridge) cannot be copied
            if path.is_socket() or path.name in ("samba.pid", "samba.out", "log.samba"):
                path.unlink()
        for out in prov.glob("socat-*.out"):
            out.unlink()
        self.built = True
        return self

    def cleanup(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


class SambaDC:
    """One Samba AD DC from `template`. Construct, then `start()` (or a context manager)."""

    base = BASE
    admin_dn = ADMIN_DN
    admin_password = ADMIN_PASSWORD
    people = PEOPLE
    groups = GROUPS

    def __init__(
        self, template: SambaTemplate, *, start_timeout: float = 30.0, _in_place: bool = False
    ) -> None:
        require_samba()
        if not template.built and not _in_place:
            template.build()
        self.template = template
        self.start_timeout = start_timeout
        self._in_place = _in_place
        self.directory = (
            template.directory / "prov"
            if _in_place
            else Path(tempfile.mkdtemp(prefix="syncd-samba-"))
        )
        self.namespace = f"syncd-ad-{os.getpid()}-{next(_counter)}"
        self.port = 0
        self._samba: subprocess.Popen[bytes] | None = None
        self._inner: subprocess.Popen[bytes] | None = None
        self._outer: subprocess.Popen[bytes] | None = None
        self._netns = False
        self._copied = False
        self._admin: ldap3.Connection | None = None

    # ---- addresses -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._samba.pid if self._samba is not None else None

    # ---- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> SambaDC:
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

    def _popen(self, cmd: list[str], log: str) -> subprocess.Popen[bytes]:
        out = (self.directory / log).open("ab")
        try:
            return subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        finally:
            out.close()

    def start(self) -> SambaDC:
        if self._samba is not None and self._samba.poll() is None:
            return self
        if not self._copied and not self._in_place:
            shutil.copytree(self.template.directory / "prov", self.directory, dirs_exist_ok=True)
            self._copied = True
        (self.directory / "etc" / "smb.conf").write_text(_smb_conf(self.directory))
        if not self._netns:
            _run(["ip", "netns", "add", self.namespace], what="ip netns add")
            self._netns = True
            _run(["ip", "-n", self.namespace, "link", "set", "lo", "up"], what="ip link set lo up")
        ns = ["ip", "netns", "exec", self.namespace]  # execs: the PID is samba's / socat's
        conf = str(self.directory / "etc" / "smb.conf")
        self._samba = self._popen(
            [*ns, SAMBA, "-F", "-M", "single", "-s", conf, "--debug-stdout", "-d", "1"],
            "samba.out",
        )
        sock = self.directory / "ldap.sock"
        self._inner = self._popen(
            [*ns, "socat", f"UNIX-LISTEN:{sock},fork,unlink-early", "TCP:127.0.0.1:389"],
            "socat-inner.out",
        )
        last = ""
        for _attempt in range(3):  # a free port can be taken between probing and binding
            self.port = free_port()
            self._outer = self._popen(
                [
                    "socat", f"TCP-LISTEN:{self.port},bind=127.0.0.1,fork,reuseaddr",
                    f"UNIX-CONNECT:{sock}",
                ],
                "socat-outer.out",
            )  # fmt: skip
            if self._wait_ready():
                return self
            last = (self.directory / "socat-outer.out").read_text(errors="replace")[-1000:]
            _stop_group(self._outer, 5)
            self._outer = None
        raise SambaError(f"the socat bridge did not start: {last}")

    def _wait_ready(self) -> bool:
        """Poll an admin bind through the bridge; False if the outer socat died (port taken),
        SambaError if samba died or did not answer in time."""
        deadline = time.monotonic() + self.start_timeout
        delay = 0.01
        while time.monotonic() < deadline:
            for proc, what in ((self._samba, "samba"), (self._inner, "inner socat")):
                if proc is None or proc.poll() is not None:
                    raise SambaError(f"{what} exited: {self._logs()}")
            if self._outer is None or self._outer.poll() is not None:
                return False
            server = ldap3.Server(
                "127.0.0.1", port=self.port, connect_timeout=1, get_info=ldap3.NONE
            )
            conn = ldap3.Connection(server, self.admin_dn, self.admin_password, receive_timeout=5)
            try:
                if conn.bind():
                    return True
            except ldap3.core.exceptions.LDAPException:
                pass
            finally:
                conn.unbind()
            time.sleep(delay)  # polling back-off, not synchronisation
            delay = min(delay * 2, 0.1)
        raise SambaError(f"samba not ready after {self.start_timeout}s: {self._logs()}")

    def _logs(self) -> str:
        parts = []
        for name in ("samba.out", "log.samba", "socat-inner.out", "socat-outer.out"):
            p = self.directory / name
            if p.exists():
                parts.append(f"--- {name}:\n{p.read_text(errors='replace')[-1500:]}")
        return "\n".join(parts)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop samba and the bridge (by process group id). Data stays; `start()` works."""
        if self._admin is not None:
            with contextlib.suppress(Exception):
                self._admin.unbind()
            self._admin = None
        _stop_group(self._outer, timeout)
        _stop_group(self._samba, timeout)
        _stop_group(self._inner, timeout)
        self._outer = self._samba = self._inner = None

    def cleanup(self) -> None:
        """Stop, delete the namespace and the directory."""
        self.stop()
        if self._netns:
            with contextlib.suppress(SambaError):
                _run(["ip", "netns", "delete", self.namespace], what="ip netns delete")
            self._netns = False
        if not self._in_place:
            shutil.rmtree(self.directory, ignore_errors=True)

    # ---- online changes (plain ldap3, independent of the connector) ------------------------

    @property
    def admin(self) -> ldap3.Connection:
        """An ldap3 connection bound as the domain Administrator (kept open)."""
        if self._admin is None or self._admin.closed:
            self._admin = ldap3.Connection(
                ldap3.Server("127.0.0.1", port=self.port, get_info=ldap3.NONE),
                self.admin_dn, self.admin_password, auto_bind=True, receive_timeout=30,
            )  # fmt: skip
        return self._admin

    def _check(self, what: str) -> None:
        result = self.admin.result
        if result["result"] != 0:
            raise SambaError(f"{what}: {result['description']} {result['message']}")

    def add(self, dn: str, attributes: Mapping[str, Any]) -> str:
        self.admin.add(dn, attributes=dict(attributes))
        self._check(f"add {dn}")
        return dn

    def add_user(
        self, name: str, *, parent: str = PEOPLE, enabled: bool = True, **attrs: Any
    ) -> str:
        """A user ``CN=name,parent`` with sAMAccountName `name` (enabled, no password);
        returns its DN."""
        uac = UAC_ENABLED_NO_PASSWORD | (0 if enabled else UAC_ACCOUNTDISABLE)
        values = {
            "objectClass": ["top", "person", "organizationalPerson", "user"],
            "sAMAccountName": name,
            "userPrincipalName": f"{name}@{REALM.lower()}",
            "userAccountControl": str(uac),
            **attrs,
        }
        return self.add(f"CN={name},{parent}", values)

    def add_group(self, name: str, members: Iterable[str] = (), *, parent: str = GROUPS) -> str:
        values: dict[str, Any] = {"objectClass": ["top", "group"], "sAMAccountName": name}
        if members := list(members):
            values["member"] = members
        return self.add(f"CN={name},{parent}", values)

    def modify(self, dn: str, changes: Mapping[str, Any]) -> None:
        """Replace attributes: ``{"title": "Boss"}``; a value of None or [] removes it; an
        ldap3 change list (``[(MODIFY_ADD, [...])]``) is passed through."""
        spec: dict[str, Any] = {}
        for attr, value in changes.items():
            if isinstance(value, list) and value and isinstance(value[0], tuple):
                spec[attr] = value
            elif value is None or value == []:
                spec[attr] = [(ldap3.MODIFY_REPLACE, [])]
            else:
                spec[attr] = [(ldap3.MODIFY_REPLACE, value if isinstance(value, list) else [value])]
        self.admin.modify(dn, spec)
        self._check(f"modify {dn}")

    def delete(self, dn: str) -> None:
        self.admin.delete(dn)
        self._check(f"delete {dn}")

    def get(self, dn: str, *attrs: str) -> dict[str, list[Any]]:
        """Raw attribute values of one entry (bytes), read with ldap3."""
        self.admin.search(dn, "(objectClass=*)", ldap3.BASE, attributes=list(attrs))
        self._check(f"read {dn}")
        (entry,) = self.admin.response
        return {k.lower(): v for k, v in entry["raw_attributes"].items()}

    def guid(self, dn: str) -> str:
        """objectGUID of `dn` as the canonical UUID string (from its little-endian bytes)."""
        (raw,) = self.get(dn, "objectGUID")["objectguid"]
        return str(uuid.UUID(bytes_le=bytes(raw)))

    def uac(self, dn: str) -> int:
        (raw,) = self.get(dn, "userAccountControl")["useraccountcontrol"]
        return int(raw)
