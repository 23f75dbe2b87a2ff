"""Flow locks: one run of a flow at a time per state store, checked while the run writes.

SQLite: an exclusive `flock` of a file next to the store (`FileLock`); the kernel drops it when
the process dies, and it cannot be lost while the process lives, so checking it is free.

PostgreSQL: session advisory locks on a connection of their own (`PgLockSession`), outside the
store's pool, in autocommit (an idle-in-transaction session would pin the vacuum horizon for
as long as a lock is held). PostgreSQL releases them when that session ends, which is what
makes failover between hosts work without any expiry logic of ours:

- the process is killed (kill -9, OOM): its kernel closes the socket, the backend ends at once;
- the connection is cut (`pg_terminate_backend`, a restart of the server): the same;
- the host vanishes without closing TCP: the session is idle between our heartbeats
  (`HEARTBEAT_S`), so the server ends it after ``idle_session_timeout`` = `LEASE_TIMEOUT_S`
  (PostgreSQL >= 14; older servers rely on the TCP keepalives set on both ends, ~11 s).

A lock is only worth something if the holder notices losing it: `holds` is one query on the
lock's own connection (is this backend still granted that key?) and is run before each apply
batch (`syncd.cycle.session`); a connection that is gone or a lock that is no longer ours
stops the run (`LockLost`, a `Fatal`).

The session's ``application_name`` says who holds it (``syncd daemon HOST:PID`` or ``syncd run
HOST:PID``), so "flow X is running on ..." can name the instance from `pg_locks` joined to
`pg_stat_activity`, and the number of live daemons is the number of such sessions: nothing is
recorded that could go stale when an instance dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from syncd.errors import Fatal, StoreLocked
from syncd.state.opening import (
    CONNECT_TIMEOUT_S,
    parse_state_url,
    safe_url,
    secret_of,
    translate_errors,
)

log = logging.getLogger("syncd.state")

#: An idle lock session is ended by the server after this long (its holder vanished).
LEASE_TIMEOUT_S = 10
#: A lock session says it is alive this often (well inside `LEASE_TIMEOUT_S`).
HEARTBEAT_S = 2.0
#: TCP keepalives on both ends of a lock session: idle 5 s, then 3 probes 2 s apart.
KEEPALIVE = {"idle": 5, "interval": 2, "count": 3}
#: ``application_name`` prefix of a daemon's lock session (counted as a live instance).
DAEMON = "syncd daemon"
RUN = "syncd run"

_MASK64 = (1 << 64) - 1


class LockLost(Fatal):
    """The flow's lock went away mid-run (its connection died, or it is no longer ours):
    another instance may be running the flow now, so this one must not write anything more."""


def instance_name(role: str) -> str:
    """``syncd daemon HOST:PID``: who holds a lock, as PostgreSQL shows it (63 bytes max)."""
    return f"{role} {socket.gethostname()}:{os.getpid()}".encode()[:63].decode(errors="ignore")


#: A key: a bigint (run locks), or two int4 (leases: ``(LEASE_CLASS, hash)``), which
#: `pg_locks` tells apart (objsubid 1 and 2), so leases can be counted per instance.
Key = int | tuple[int, int]
#: The first int4 of every lease key ("syncd" in its high bits).
LEASE_CLASS = 0x5379_6E63


def _key(text_: str, size: int = 8) -> int:
    return int.from_bytes(hashlib.blake2b(text_.encode(), digest_size=size).digest(), "big",
                          signed=True)


def run_key(flow: str) -> int:
    """The run lock's key: the same as every earlier syncd, so a mixed-version pair of
    processes during an upgrade still excludes each other."""
    return _key(flow)


def lease_key(flow: str) -> tuple[int, int]:
    """The lease key: held by the daemon instance that owns the flow, between runs too."""
    return (LEASE_CLASS, _key(flow, 4))


def _params(key: Key) -> dict[str, int]:
    """How `pg_locks` shows `key`: classid/objid halves of a bigint (objsubid 1), or the two
    int4 as unsigned (objsubid 2)."""
    if isinstance(key, tuple):
        return {"hi": key[0] & 0xFFFFFFFF, "lo": key[1] & 0xFFFFFFFF, "sub": 2}
    u = key & _MASK64
    return {"hi": u >> 32, "lo": u & 0xFFFFFFFF, "sub": 1}


def _call(fn: str, key: Key) -> tuple[Any, dict[str, int]]:
    """``SELECT pg_try_advisory_lock(...)`` (or unlock) for either form of key."""
    if isinstance(key, tuple):
        return (text(f"SELECT {fn}(CAST(:a AS integer), CAST(:b AS integer))"),
                {"a": key[0], "b": key[1]})
    return text(f"SELECT {fn}(CAST(:k AS bigint))"), {"k": key}


_MINE = text("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
             "AND pid = pg_backend_pid() AND classid::bigint = :hi AND objid::bigint = :lo "
             "AND objsubid = :sub)")
_HOLDER = text(
    "SELECT l.pid, a.application_name, a.client_addr::text FROM pg_locks l "
    "LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.granted AND l.classid::bigint = :hi "
    "AND l.objid::bigint = :lo AND l.objsubid = :sub "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())")
_LEASES = text(
    "SELECT a.application_name, count(l.pid) FROM pg_stat_activity a "
    "LEFT JOIN pg_locks l ON l.pid = a.pid AND l.locktype = 'advisory' AND l.granted "
    "AND l.objsubid = 2 AND l.classid::bigint = :cls "
    "WHERE a.datname = current_database() AND a.application_name LIKE :prefix "
    "GROUP BY a.pid, a.application_name")

def holder_of(conn: Connection, key: Key) -> str | None:
    """Who holds advisory `key` in this database (``syncd daemon HOST:PID``), None if nobody:
    any connection can ask (the status page asks through the store's pool)."""
    row = conn.execute(_HOLDER, _params(key)).first()
    if row is None:
        return None
    pid, name, addr = row
    where = f" from {addr}" if addr else ""
    return name or f"PostgreSQL backend {pid}{where}"


def session_for(url: str, role: str, secret: SecretStr | None = None) -> PgLockSession:
    """A lock session on the PostgreSQL store at `url` (a `StateURL` brings its password, or
    `secret` when the URL was already made a plain string)."""
    parsed = parse_state_url(url)
    secret = secret or secret_of(url)
    if secret is not None:
        parsed = parsed.set(password=secret.get_secret_value())
    return PgLockSession(parsed, role, safe_url(url), secret)


class FileLock:
    """SQLite: one flow's lock as an exclusive flock of ``STORE.FLOW.lock`` (0600)."""

    def __init__(self, store_path: Path, flow: str) -> None:
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in flow)
        path = store_path.with_name(f"{store_path.name}.{safe}.lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        with contextlib.suppress(OSError):  # 0600 whatever the umask (not ours: leave it)
            os.fchmod(fd, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreLocked(f"flow {flow!r} is already running against the state store "
                              f"{store_path} (another syncd process?)") from None
        self.fd = fd

    def release(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


class PgLockSession:
    """Advisory locks on one dedicated PostgreSQL session, named `role` HOST:PID.

    Thread-safe (a daemon's flows check it from their apply threads, the heartbeat from its
    own). Connects lazily and again after the session died; everything it held is then gone
    (`generation` counts the sessions, so a holder can tell "still mine" from "mine again").
    """

    def __init__(self, url: URL, role: str, store_name: str,
                 secret: SecretStr | None = None) -> None:
        self.role, self.store_name = role, store_name
        self.name = instance_name(role)
        args: dict[str, Any] = {
            "application_name": self.name, "keepalives": 1,
            "keepalives_idle": KEEPALIVE["idle"], "keepalives_interval": KEEPALIVE["interval"],
            "keepalives_count": KEEPALIVE["count"],
            "tcp_user_timeout": LEASE_TIMEOUT_S * 1000,
        }
        if "connect_timeout" not in url.query:
            args["connect_timeout"] = CONNECT_TIMEOUT_S
        self._engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT",
                                     connect_args=args)
        translate_errors(self._engine, store_name, secret)  # StoreError, never a password
        self._conn: Connection | None = None
        self._mutex = threading.RLock()
        self.held: set[Key] = set()
        self.generation = 0
        self._closed = threading.Event()
        self._beat: threading.Thread | None = None

    # -- the session -----------------------------------------------------------------------
    def _session(self) -> Connection:
        """The live session, opened (again) if needed, with the server-side timeouts that
        bound a vanished holder. Raises `StoreError` (naming the store, never its password)
        when the database cannot be reached."""
        if self._conn is not None:
            return self._conn
        conn = self._engine.connect()
        try:
            version = int(conn.execute(text("SHOW server_version_num")).scalar() or 0)
            k = KEEPALIVE
            for setting, value in (("idle", k["idle"]), ("interval", k["interval"]),
                                   ("count", k["count"])):
                conn.execute(text(f"SET tcp_keepalives_{setting} = {value}"))
            if version >= 120000:
                conn.execute(text(f"SET tcp_user_timeout = {LEASE_TIMEOUT_S * 1000}"))
            if version >= 140000:
                conn.execute(text(f"SET idle_session_timeout = {LEASE_TIMEOUT_S * 1000}"))
        except Exception:
            conn.close()
            raise
        self._conn = conn
        self.held.clear()
        self.generation += 1
        if self._beat is None:
            self._beat = threading.Thread(target=self._heartbeat, daemon=True,
                                          name=f"lock-heartbeat-{self.role}")
            self._beat.start()
        return conn

    def _dead(self, exc: BaseException) -> None:
        """The session failed: forget it (PostgreSQL released whatever it held)."""
        if self._conn is not None:
            log.warning("state store %s: the lock session %s is gone (%s); its locks are "
                        "released", self.store_name, self.name, type(exc).__name__)
            with contextlib.suppress(Exception):
                self._conn.invalidate()
            self._conn = None
        self.held.clear()

    def _query(self, stmt: Any, params: dict[str, Any] | None = None, *,
               reconnect: bool = True) -> Any:
        """One statement on the session. With `reconnect`, a session found dead is replaced
        once (what it held is gone either way); without, its death is the answer."""
        with self._mutex:
            if self._conn is None and not reconnect:
                raise ConnectionError("the lock session is gone")
            opened = self._conn is not None
            try:
                return self._session().execute(stmt, params or {}).scalar()
            except Exception as exc:
                self._dead(exc)
                if not (reconnect and opened):
                    raise
            return self._session().execute(stmt, params or {}).scalar()

    def _heartbeat(self) -> None:
        """Keep the session from looking idle to the server while its holder lives."""
        while not self._closed.wait(HEARTBEAT_S):
            with self._mutex:
                if self._conn is None:
                    continue
                with contextlib.suppress(Exception):
                    self._query(text("SELECT 1"), reconnect=False)

    @property
    def alive(self) -> bool:
        return self._conn is not None

    # -- locks -----------------------------------------------------------------------------
    def try_lock(self, key: Key) -> bool:
        """Take `key` without waiting; False if any session holds it (this one included: two
        runs of one flow in one process exclude each other as two processes do)."""
        with self._mutex:
            if key in self.held:
                return False
            got = bool(self._query(*_call("pg_try_advisory_lock", key)))
            if got:
                self.held.add(key)
            return got

    def unlock(self, key: Key) -> None:
        with self._mutex:
            if key not in self.held:
                return
            self.held.discard(key)
            with contextlib.suppress(Exception):  # a dead session released it already
                self._query(*_call("pg_advisory_unlock", key), reconnect=False)

    def holds(self, key: Key) -> bool:
        """Is `key` still granted to this very session? False when the session is gone."""
        with self._mutex:
            if key not in self.held:
                return False
            try:
                return bool(self._query(_MINE, _params(key), reconnect=False))
            except Exception:
                return False

    def holder(self, key: Key) -> str | None:
        """Who holds `key` (``syncd daemon HOST:PID``), or None if nobody does."""
        with self._mutex:
            if key in self.held:
                return self.name
            try:
                return holder_of(self._session(), key)
            except Exception as exc:  # who holds it is only ever said in a message
                self._dead(exc)
                return None

    def leases(self) -> list[tuple[str, int]]:
        """Live daemon instances on this store (their lock sessions, this one included) and
        how many leases each holds, one pair per session: the load flows are spread by."""
        params = {"cls": LEASE_CLASS, "prefix": f"{DAEMON} %"}
        with self._mutex:
            try:
                rows = self._session().execute(_LEASES, params).all()
            except Exception as exc:  # a session found dead is replaced once
                self._dead(exc)
                rows = self._session().execute(_LEASES, params).all()
        return [(str(name), int(n)) for name, n in rows] or [(self.name, len(self.held))]

    def close(self) -> None:
        """End the session: PostgreSQL releases every lock it held."""
        self._closed.set()
        with self._mutex:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = None
            self.held.clear()
        self._engine.dispose()
