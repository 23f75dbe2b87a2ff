"""A throwaway 389 Directory Server on 127.0.0.1, for tests and benchmarks.

Why: 389-ds (FreeIPA, Red Hat DS) speaks RFC 4533 its own way (cookies bound to the search,
``refreshDeletes = FALSE`` after a changes-only refresh, deletes named by nsUniqueId), so the
connector's incremental reads must be proven against the real server, not against OpenLDAP.

How it runs (root only: ns-slapd drops to the ``dirsrv`` user):

- **Creation** (``dscreate from-file``, ~6 s) under a private prefix in a temporary
  directory: lib389 reads ``$PREFIX/share/dirsrv/inf/defaults.inf``, a copy of Debian's that
  says ``with_systemd = 0`` and puts every path (config, db, logs, locks, run) below the
  prefix. The directories are created beforehand and handed to ``dirsrv``, which the server
  runs as. The empty suffix `BASE` gets no entry: `load` adds the sample LDIF with it.
- **Configuration** is edited offline in ``dse.ldif`` before each start: listen on
  127.0.0.1 only, on a free port; the Retro Changelog (logging ``nsUniqueId`` as
  ``targetUniqueId`` and, unless ``changelog_entryuuid=False``, ``entryUUID`` as
  ``targetEntryUUID``) and Content Synchronization (RFC 4533) plugins when ``content_sync``;
  non-durable transactions (online adds are fsync-bound otherwise).
- **Running**: ``ns-slapd -d 0`` stays in the foreground, so its PID is ours: stop = SIGTERM,
  wait, SIGKILL. Readiness is an admin bind, polled (never a fixed sleep). After a SIGKILL the
  lock file under ``lock/slapd-NAME/server/`` still names the dead PID and ns-slapd refuses to
  start: `start` removes lock files whose process is gone (or a zombie).

Usage::

    with Ds389() as ds:                      # ~8 s; a session fixture shares it
        ds.load(ldif_text)                   # online adds as Directory Manager
        ds.url, ds.admin_dn, ds.admin_password, ds.base
        ds.modify(dn, {"title": "Boss"}); ds.rename(dn, "uid=new"); ds.delete(dn)
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import ldap3

from tests.peers.slapd import free_port

NS_SLAPD = "/usr/sbin/ns-slapd"
DSCREATE = "/usr/sbin/dscreate"
DEFAULTS_INF = "/usr/share/dirsrv/inf/defaults.inf"
USER = "dirsrv"
BASE = "dc=example,dc=org"
ADMIN_DN = "cn=Directory Manager"
ADMIN_PASSWORD = "Syncd-389-Adm1n"
NAME = "syncd"


class Ds389Error(RuntimeError):
    """dscreate, ns-slapd or an LDAP change failed; the message carries their output."""


def require_389ds() -> None:
    """Fail loudly (never skip) when 389-ds is missing or we are not root."""
    missing = [p for p in (NS_SLAPD, DSCREATE, DEFAULTS_INF) if not os.path.exists(p)]
    missing += [t for t in ("ldapmodify",) if shutil.which(t) is None]
    try:
        pwd.getpwnam(USER)
    except KeyError:
        missing.append(f"user {USER}")
    if missing:
        raise Ds389Error(
            f"389 Directory Server is not installed ({', '.join(missing)} missing): "
            "apt-get install 389-ds-base ldap-utils (scripts/bootstrap.sh does)"
        )
    if os.geteuid() != 0:
        raise Ds389Error("the 389-ds tests need root (ns-slapd runs as dirsrv): run as root")


def _run(cmd: list[str], *, what: str, env: Mapping[str, str] | None = None,
         stdin: str | None = None, timeout: float = 180) -> str:  # fmt: skip
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=False,
                          env=dict(env) if env is not None else None, timeout=timeout)  # fmt: skip
    if proc.returncode != 0:
        out = (proc.stderr.strip() or proc.stdout.strip())[-3000:]
        raise Ds389Error(f"{what} failed (exit {proc.returncode}): {out}")
    return proc.stdout


def _process_gone(pid: int) -> bool:
    """True when `pid` does not exist or is a zombie (containers may never reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    fields = stat.rsplit(")", 1)[-1].split()
    return not fields or fields[0] in ("Z", "X")


def _set_attr(ldif: str, dn: str, attr: str, values: list[str]) -> str:
    """Replace every `attr` line of entry `dn` in a dse.ldif text by `values` (added when
    absent). dse.ldif entries are blank-line separated; the edited lines are never folded."""
    head = f"dn: {dn}\n"
    start = ldif.lower().find(head.lower())
    if start < 0:
        raise Ds389Error(f"dse.ldif has no entry {dn}")
    end = ldif.find("\n\n", start)
    end = len(ldif) if end < 0 else end
    lines = [ln for ln in ldif[start:end].split("\n")
             if not ln.lower().startswith(attr.lower() + ":")]  # fmt: skip
    lines += [f"{attr}: {v}" for v in values]
    return ldif[:start] + "\n".join(lines) + ldif[end:]


def _records_without(ldif: str | Path, first_line: str) -> Iterator[str]:
    """The records of `ldif` (text or file, blank-line separated), but the one starting with
    `first_line` (case-insensitive)."""
    lines = ldif.open(encoding="utf-8") if isinstance(ldif, Path) else iter(ldif.splitlines(True))
    record: list[str] = []
    for line in [*lines, "\n"]:
        if line.strip():
            record.append(line)
            continue
        if record and record[0].rstrip("\n").lower() != first_line.lower():
            yield "".join(record) + "\n"
        record = []


class Ds389:
    """One 389-ds instance. Construct, then `start()` (or use as a context manager).

    `content_sync`: enable the Retro Changelog and Content Synchronization plugins (False: a
    389-ds without RFC 4533, where ``auto`` must choose watermarks). `changelog_entryuuid`:
    the changelog also logs each entry's entryUUID (``targetEntryUUID``), which is how deletes
    are mapped to entryUUID anchors.
    """

    base = BASE
    admin_dn = ADMIN_DN
    admin_password = ADMIN_PASSWORD

    def __init__(
        self,
        *,
        content_sync: bool = True,
        changelog_entryuuid: bool = True,
        start_timeout: float = 60.0,
        directory: str | Path | None = None,
    ) -> None:
        require_389ds()
        self.content_sync = content_sync
        self.changelog_entryuuid = changelog_entryuuid
        self.start_timeout = start_timeout
        self.directory = Path(directory or tempfile.mkdtemp(prefix="syncd-389ds-"))
        self.directory.chmod(0o755)  # ns-slapd (user dirsrv) must reach the prefix
        self.prefix = self.directory / "prefix"
        self.config_dir = self.prefix / "etc" / "dirsrv" / f"slapd-{NAME}"
        self.pid_file = self.prefix / "run" / f"slapd-{NAME}.pid"
        self.lock_dir = self.prefix / "lock" / f"slapd-{NAME}"
        self.log_dir = self.prefix / "log" / f"slapd-{NAME}"
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._created = False
        self._admin: ldap3.Connection | None = None
        self._pwfile = self.directory / "admin.pw"
        self._pwfile.write_text(self.admin_password, encoding="utf-8")
        self._pwfile.chmod(0o600)

    # ---- addresses -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # ---- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Ds389:
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

    def _paths(self) -> dict[str, str]:
        p, n = str(self.prefix), NAME
        return {
            "with_systemd": "0", "tmp_dir": f"{p}/tmp", "initconfig_dir": f"{p}/etc/default",
            "config_dir": f"{p}/etc/dirsrv/slapd-{{instance_name}}", "local_state_dir": f"{p}/var",
            "run_dir": f"{p}/run", "ldapi": f"{p}/run/slapd-{{instance_name}}.socket",
            "pid_file": f"{p}/run/slapd-{{instance_name}}.pid",
            "inst_dir": f"{p}/lib/dirsrv/slapd-{{instance_name}}",
            "schema_dir": f"{p}/etc/dirsrv/slapd-{{instance_name}}/schema",
            "cert_dir": f"{p}/etc/dirsrv/slapd-{{instance_name}}",
            "lock_dir": f"{p}/lock/slapd-{{instance_name}}",
            "log_dir": f"{p}/log/slapd-{{instance_name}}",
            "access_log": f"{p}/log/slapd-{{instance_name}}/access",
            "audit_log": f"{p}/log/slapd-{{instance_name}}/audit",
            "error_log": f"{p}/log/slapd-{{instance_name}}/errors",
            "security_log": f"{p}/log/slapd-{{instance_name}}/security",
            "db_dir": f"{p}/db/slapd-{{instance_name}}/db",
            "db_home_dir": f"{p}/db/slapd-{{instance_name}}/db",
            "backup_dir": f"{p}/db/slapd-{{instance_name}}/bak",
            "ldif_dir": f"{p}/db/slapd-{{instance_name}}/ldif",
            "tmpfiles_d": f"{p}/tmpfiles.d", "ldapi_autobind": "off",
            "_dirs": " ".join(f"{p}/{d}" for d in (
                "tmp", "etc/default", f"etc/dirsrv/slapd-{n}", "var", "run", f"lock/slapd-{n}",
                f"log/slapd-{n}", f"db/slapd-{n}/db", f"db/slapd-{n}/bak", f"db/slapd-{n}/ldif",
                f"lib/dirsrv/slapd-{n}", "tmpfiles.d")),
        }  # fmt: skip

    def create(self) -> Ds389:
        """dscreate the instance (once); the server is left stopped."""
        if self._created:
            return self
        paths = self._paths()
        inf_dir = self.prefix / "share" / "dirsrv" / "inf"
        inf_dir.mkdir(parents=True)
        lines = []
        for line in Path(DEFAULTS_INF).read_text().splitlines():
            m = re.match(r"^(\w+) = ", line)
            if m and m.group(1) in paths:
                line = f"{m.group(1)} = {paths[m.group(1)]}"
            lines.append(line)
        (inf_dir / "defaults.inf").write_text("\n".join(lines) + "\n")
        owner = pwd.getpwnam(USER)
        for d in paths["_dirs"].split():
            Path(d).mkdir(parents=True, exist_ok=True)
        for root, dirs, files in os.walk(self.prefix):
            for name in [*dirs, *files]:
                os.chown(os.path.join(root, name), owner.pw_uid, owner.pw_gid)
            os.chmod(root, 0o755)
        os.chown(self.prefix, owner.pw_uid, owner.pw_gid)
        inf = self.directory / "instance.inf"
        inf.write_text(
            "[general]\nfull_machine_name = localhost\nstart = False\nsystemd = False\n"
            "selinux = False\nstrict_host_checking = False\n"
            f"[slapd]\ninstance_name = {NAME}\nport = {free_port()}\nsecure_port = 0\n"
            f"self_sign_cert = False\nroot_dn = {ADMIN_DN}\nroot_password = {self.admin_password}\n"
            f"[backend-userroot]\nsuffix = {BASE}\nsample_entries = no\n"
            "create_suffix_entry = False\n"
        )
        env = {**os.environ, "PREFIX": str(self.prefix)}
        _run([DSCREATE, "from-file", str(inf)], what="dscreate", env=env)
        self._stop_strays()
        self._configure()
        self._created = True
        return self

    def _stop_strays(self) -> None:
        """dscreate leaves the server stopped; should it not, stop the PID it wrote."""
        with contextlib.suppress(FileNotFoundError, ValueError):
            pid = int(self.pid_file.read_text().strip())
            if not _process_gone(pid):
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + 30
                while not _process_gone(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)  # polling an exit we cannot wait() for

    def _configure(self) -> None:
        dse = self.config_dir / "dse.ldif"
        text = dse.read_text()
        text = _set_attr(text, "cn=config,cn=ldbm database,cn=plugins,cn=config",
                         "nsslapd-db-durable-transaction", ["off"])  # fmt: skip
        if self.content_sync:
            retro = "cn=Retro Changelog Plugin,cn=plugins,cn=config"
            logged = ["nsuniqueid:targetUniqueId"]
            if self.changelog_entryuuid:
                logged.append("entryuuid:targetEntryUUID")
            text = _set_attr(text, retro, "nsslapd-pluginEnabled", ["on"])
            text = _set_attr(text, retro, "nsslapd-attribute", logged)
            text = _set_attr(text, retro, "nsslapd-changelogmaxage", ["2d"])
            sync = "cn=Content Synchronization,cn=plugins,cn=config"
            text = _set_attr(text, sync, "nsslapd-pluginEnabled", ["on"])
        dse.write_text(text)

    def _set_port(self, port: int) -> None:
        dse = self.config_dir / "dse.ldif"
        text = _set_attr(dse.read_text(), "cn=config", "nsslapd-port", [str(port)])
        text = _set_attr(text, "cn=config", "nsslapd-listenhost", ["127.0.0.1"])
        dse.write_text(text)

    def _clear_stale_locks(self) -> None:
        """Lock files naming a dead (or zombie) ns-slapd, left by a SIGKILL."""
        for sub in ("server", "imports", "exports"):
            for lock in (self.lock_dir / sub).glob("*"):
                try:
                    pid = int(lock.name)
                except ValueError:
                    continue
                if _process_gone(pid):
                    lock.unlink(missing_ok=True)
        with contextlib.suppress(FileNotFoundError, ValueError):
            if _process_gone(int(self.pid_file.read_text().strip())):
                self.pid_file.unlink()

    def start(self) -> Ds389:
        if self._proc is not None and self._proc.poll() is None:
            return self
        self.create()
        last = ""
        for attempt in range(3):  # a free port can be taken between probing and binding
            self._clear_stale_locks()
            # A restart keeps its port, as a real server does: 389-ds cookies name it.
            self.port = self.port if self.port and attempt == 0 else free_port()
            self._set_port(self.port)
            out = (self.directory / "ns-slapd.out").open("ab")
            try:
                self._proc = subprocess.Popen(
                    [NS_SLAPD, "-D", str(self.config_dir), "-i", str(self.pid_file), "-d", "0"],
                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                )  # fmt: skip
            finally:
                out.close()
            if self._wait_ready():
                return self
            last = self._logs()
            self._reap()
        raise Ds389Error(f"ns-slapd did not start: {last}")

    def _wait_ready(self) -> bool:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        delay = 0.01
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            server = ldap3.Server("127.0.0.1", port=self.port, connect_timeout=1,
                                  get_info=ldap3.NONE)  # fmt: skip
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
        self.kill()
        raise Ds389Error(f"ns-slapd not ready after {self.start_timeout}s: {self._logs()}")

    def _logs(self) -> str:
        parts = []
        for path in (self.directory / "ns-slapd.out", self.log_dir / "errors"):
            if path.exists():
                parts.append(f"--- {path.name}:\n{path.read_text(errors='replace')[-2000:]}")
        return "\n".join(parts)

    def _reap(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
        self._proc = None

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, wait up to `timeout`, then SIGKILL. Data stays; `start()` again works."""
        self._close_admin()
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._proc = None

    def kill(self) -> None:
        """SIGKILL now (a crash): leaves the stale lock file `start` then clears."""
        self._close_admin()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    # ---- online changes (plain ldap3 and ldapmodify, independent of the connector) ----------

    def _close_admin(self) -> None:
        if self._admin is not None:
            with contextlib.suppress(Exception):
                self._admin.unbind()
            self._admin = None

    @property
    def admin(self) -> ldap3.Connection:
        """An ldap3 connection bound as Directory Manager (kept open)."""
        if self._admin is None or self._admin.closed:
            self._admin = ldap3.Connection(
                ldap3.Server("127.0.0.1", port=self.port, get_info=ldap3.NONE),
                self.admin_dn, self.admin_password, auto_bind=True, receive_timeout=60,
            )  # fmt: skip
        return self._admin

    def _check(self, what: str) -> None:
        result = self.admin.result
        if result["result"] != 0:
            raise Ds389Error(f"{what}: {result['description']} {result['message']}")

    def load(self, ldif: str | Path) -> None:
        """Add the LDIF records (text or a file) online as Directory Manager. The suffix
        entry, which dscreate made, is left out (`tests.peers.directory` LDIF starts with it)."""
        args = ["ldapmodify", "-a", "-x", "-H", self.url, "-D", self.admin_dn,
                "-y", str(self._pwfile)]  # fmt: skip
        path = self.directory / "load.ldif"
        with path.open("w", encoding="utf-8") as out:
            out.writelines(_records_without(ldif, f"dn: {BASE}"))
        what = f"ldapmodify -a of {ldif if isinstance(ldif, Path) else 'LDIF text'}"
        _run([*args, "-f", str(path)], what=what, timeout=3600)

    def add(self, dn: str, attributes: Mapping[str, Any]) -> str:
        self.admin.add(dn, attributes=dict(attributes))
        self._check(f"add {dn}")
        return dn

    def modify(self, dn: str, changes: Mapping[str, Any]) -> None:
        """Replace attributes: ``{"title": "Boss"}``; None removes one."""
        spec = {attr: [(ldap3.MODIFY_REPLACE, [] if v is None else v if isinstance(v, list)
                        else [v])] for attr, v in changes.items()}  # fmt: skip
        self.admin.modify(dn, spec)
        self._check(f"modify {dn}")

    def rename(self, dn: str, new_rdn: str, new_superior: str | None = None) -> str:
        self.admin.modify_dn(dn, new_rdn, delete_old_dn=True, new_superior=new_superior)
        self._check(f"modrdn {dn}")
        parent = new_superior or dn.split(",", 1)[1]
        return f"{new_rdn},{parent}"

    def delete(self, dn: str) -> None:
        self.admin.delete(dn)
        self._check(f"delete {dn}")

    def ids(self, base: str) -> dict[str, tuple[str, str]]:
        """DN (lower-case) -> (entryUUID, nsUniqueId) under `base`, read with plain ldap3."""
        self.admin.search(base, "(objectClass=*)", ldap3.SUBTREE,
                          attributes=["entryUUID", "nsUniqueId"])  # fmt: skip
        out = {}
        for e in self.admin.response:
            if e.get("type") != "searchResEntry":
                continue
            raw = {k.lower(): v for k, v in e["raw_attributes"].items()}
            out[e["dn"].lower()] = (raw["entryuuid"][0].decode(), raw["nsuniqueid"][0].decode())
        return out
