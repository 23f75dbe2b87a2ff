"""The state store: links (with their base), cursors and the run journal.

SQLModel declares the tables (`declarations`), rendered as Core tables in `schema`, which is
what a run imports (issue 17: SQLModel and the ORM cost every start ~0.3 s); reads and the
hot writes go through SQLAlchemy Core (`insert ... on conflict do update` executemany),
because per-object ORM sessions are ~10x slower at 100k rows (PEERS.md). SQLite runs in WAL
mode; PostgreSQL works with the same code.

Dry runs open the store read-only and never create it: "nothing is written anywhere".

Scale: link bases come back as `StoredAttrs` (canonical JSON decoded on first access), so a
reconcile of 100k unchanged entries compares digests and never decodes a base; a link written
by `apply` carries its encoded text, so the digest and the row share one encoding. The %
safety rule counts links with COUNT(*) (`count_links`) instead of loading their ids.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, and_, create_engine, event, select, text, update
from sqlalchemy.engine import URL

from syncd.errors import ConfigError, StoreError, StoreLocked
from syncd.state import schema
from syncd.state.conflicts import ConflictsMixin
from syncd.state.cursors import CursorsMixin
from syncd.state.facts import FactsMixin
from syncd.state.journal import JournalMixin
from syncd.state.links import LinksMixin
from syncd.state.locks import (
    RUN,
    FileLock,
    PgLockSession,
    holder_of,
    lease_key,
    run_key,
    session_for,
)
from syncd.state.opening import (
    CONNECT_TIMEOUT_S,
    check_sqlite_path,
    create_private,
    parse_state_url,
    remove_created,
    safe_url,
    secret_of,
    translate_errors,
)
from syncd.state.records import cap_error, now
from syncd.state.references import ReferencesMixin
from syncd.state.retries import RetriesMixin
from syncd.state.tables import STORE_TABLES, create_missing_indexes


class Store(LinksMixin, CursorsMixin, RetriesMixin, ConflictsMixin, JournalMixin,
            FactsMixin, ReferencesMixin):
    """The state store at `url` (a `StateURL` brings its password along). Opening it checks
    what can go wrong up front — a corrupt or unwritable file, a full disk, a database that
    does not answer — and raises `StoreError` naming the store and the reason; a store that
    this call created and could not initialise is removed again (nothing half-written)."""

    def __init__(self, url: str, *, readonly: bool = False,
                 locks: PgLockSession | None = None) -> None:
        self.url = str(url)  # never holds a separately configured password
        self.readonly = readonly
        self._locks: dict[str, FileLock | PgLockSession] = {}
        #: A daemon's lock session, shared by its runs (it outlives this store object).
        self._shared_locks = locks
        self._secret = secret_of(url)
        try:
            parsed = parse_state_url(self.url)
        except ValueError as exc:
            raise ConfigError(str(exc), "state.url") from None
        self.dialect = parsed.get_backend_name()
        self._sqlite_path: Path | None = None
        if self.dialect == "sqlite" and parsed.database and parsed.database != ":memory:":
            self._sqlite_path = Path(parsed.database)
        self.engine: Engine | None = None
        if readonly and self._sqlite_path is not None and not self._sqlite_path.exists():
            return  # nothing stored yet: a dry run sees an empty store and creates nothing
        created = False
        try:
            if self._sqlite_path is not None:
                check_sqlite_path(self._sqlite_path, readonly=readonly)
                created = not readonly and create_private(self._sqlite_path)
            self.engine = self._connect(parsed)
            with self.engine.connect() as conn:  # a store that cannot answer fails here
                conn.execute(text("SELECT count(*) FROM sqlite_master" if self._sqlite_path
                                  else "SELECT 1"))
            if not readonly:
                schema.metadata.create_all(self.engine, tables=STORE_TABLES)
                create_missing_indexes(self.engine)  # a store made by an older syncd
        except StoreError:
            self.close()
            if created and self._sqlite_path is not None:
                remove_created(self._sqlite_path)
            raise

    def _connect(self, parsed: URL) -> Engine:
        if self._sqlite_path is not None:
            mode = "ro" if self.readonly else "rwc"
            engine = create_engine(
                f"sqlite:///file:{self._sqlite_path}?mode={mode}&uri=true",
                connect_args={"check_same_thread": False, "timeout": 30},
            )
            readonly = self.readonly

            @event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                if not readonly:
                    cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()

            translate_errors(engine, str(self._sqlite_path), None)
            return engine
        if self._secret is not None:
            parsed = parsed.set(password=self._secret.get_secret_value())
        args: dict[str, Any] = {}
        if self.dialect == "postgresql" and "connect_timeout" not in parsed.query:
            args["connect_timeout"] = CONNECT_TIMEOUT_S
        engine = create_engine(parsed, pool_pre_ping=True, connect_args=args)
        translate_errors(engine, self.url_safe, self._secret)
        return engine

    # -- single instance (syncd.state.locks) -------------------------------------------------
    def lock(self, flow: str) -> None:
        """One run of a flow at a time per store, across processes, threads and hosts: a
        second run of the same flow raises `StoreLocked` naming who runs it. On PostgreSQL the
        lock lives on a session of its own (the daemon's shared one when given as `locks`)."""
        if self.readonly or flow in self._locks:
            return
        if self._sqlite_path is not None:
            self._locks[flow] = FileLock(self._sqlite_path, flow)
        elif self.dialect.startswith("postgres") and self.engine is not None:
            session = self._shared_locks or self._lock_session(RUN)
            try:
                got = session.try_lock(run_key(flow))
                holder = None if got else session.holder(run_key(flow))
            except BaseException:
                if session is not self._shared_locks:
                    session.close()
                raise
            if not got:
                if session is not self._shared_locks:
                    session.close()
                who = holder or "another syncd process"
                raise StoreLocked(f"flow {flow!r} is already running on {who} (state store "
                                  f"{self.url_safe})", holder)
            self._locks[flow] = session

    def _lock_session(self, role: str) -> PgLockSession:
        """A new lock session on this store (the password comes from the store's URL)."""
        return session_for(self.url, role, self._secret)

    def runs_on(self, flow: str) -> str | None:
        """Which instance owns (PostgreSQL: holds the lease of) or is running `flow`, e.g.
        ``syncd daemon HOST:PID``; None when nobody does or the store cannot tell (SQLite)."""
        if self.engine is None or not self.dialect.startswith("postgres"):
            return None
        with self.engine.connect() as conn:
            return holder_of(conn, lease_key(flow)) or holder_of(conn, run_key(flow))

    def instance(self, flow: str) -> str | None:
        """Who this run is, as other instances see it (``syncd run HOST:PID``); PostgreSQL."""
        held = self._locks.get(flow)
        return held.name if isinstance(held, PgLockSession) else None

    def lock_lost(self, flow: str) -> str | None:
        """Why this run no longer holds its flow's lock, or None while it does: checked
        before each apply batch, so an instance that lost its lock stops writing."""
        held = self._locks.get(flow)
        if not isinstance(held, PgLockSession) or held.holds(run_key(flow)):
            return None  # a flock cannot be lost while the process lives
        return (f"the lock of flow {flow!r} on the state store {self.url_safe} was lost (its "
                f"database session {held.name} ended: connection cut or terminated); another "
                f"instance may run the flow now, so nothing more is written by this one")

    def unlock(self, flow: str) -> None:
        held = self._locks.pop(flow, None)
        if isinstance(held, FileLock):
            held.release()
        elif isinstance(held, PgLockSession):
            if held is self._shared_locks:
                held.unlock(run_key(flow))
            else:
                held.close()  # ends the session: PostgreSQL releases its advisory locks

    @property
    def url_safe(self) -> str:
        return safe_url(self.url)

    def close(self) -> None:
        for flow in list(self._locks):
            self.unlock(flow)
        if self.engine is not None:
            self.engine.dispose()

    # -- run journal -----------------------------------------------------------------------
    def start_run(self, flow: str) -> str:
        run_id = uuid.uuid4().hex[:12]
        assert self.engine is not None
        with self.engine.begin() as conn:
            conn.execute(schema.run.insert(), [
                {"id": run_id, "flow": flow, "started_at": now(), "result": "running",
                 # who runs it (PostgreSQL), also known if it never finishes
                 "summary": json.dumps({"instance": who} if (who := self.instance(flow))
                                       else {})}])
        return run_id

    def abandon_runs(self, flow: str) -> int:
        """Runs of `flow` journaled as running although its lock is free: their process was
        killed or lost its lock (another instance, or a crash). Called by the new holder of
        the lock, so the journal and status page stop showing a run that will never end."""
        assert self.engine is not None
        t = schema.run
        with self.engine.begin() as conn:
            return int(conn.execute(update(t).where(and_(
                t.c.flow == flow, t.c.result == "running")).values(
                finished_at=now(), result="aborted", error=(
                    "did not finish: its process died or lost the flow's lock (the next "
                    "run, which found the lock free, closed it)"))).rowcount or 0)

    def finish_run(self, run_id: str, result: str, summary: dict[str, Any],
                   error: str | None = None) -> None:
        assert self.engine is not None
        t = schema.run
        with self.engine.begin() as conn:
            conn.execute(update(t).where(t.c.id == run_id).values(
                finished_at=now(), result=result, summary=json.dumps(summary),
                error=cap_error(error)))

    def log_changes(self, rows: Sequence[dict[str, Any]]) -> None:
        """Journal changes in one executemany, stamped now (a row may bring its own `at`:
        imports and tests of the provisioning log)."""
        if not rows:
            return
        assert self.engine is not None
        ts = now()
        with self.engine.begin() as conn:
            conn.execute(schema.change.insert(),
                         [{**r, "at": r.get("at") or ts, "error": cap_error(r.get("error"))}
                          for r in rows])

    def recent_runs(self, flow: str, limit: int = 5) -> list[dict[str, Any]]:
        if self.engine is None:
            return []
        t = schema.run
        q = select(t).where(t.c.flow == flow).order_by(t.c.started_at.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def history(self, flow: str, source_id: str, limit: int = 10) -> list[dict[str, Any]]:
        """The journal's last changes to one object, newest first (for `syncd explain`)."""
        if self.engine is None:
            return []
        t = schema.change
        q = (select(t.c.run_id, t.c.op, t.c.result, t.c.error, t.c.at, t.c.detail)
             .where(and_(t.c.flow == flow, t.c.source_id == source_id))
             .order_by(t.c.id.desc()).limit(limit))
        with self.engine.connect() as conn:
            return [{**dict(r._mapping), "detail": json.loads(r.detail)}
                    for r in conn.execute(q)]

    def change_counts(self, run_id: str) -> dict[tuple[str, str, str], int]:
        """(kind, op, result) -> count of journaled changes of one run (for metrics)."""
        if self.engine is None:
            return {}
        from sqlalchemy import func

        t = schema.change
        q = select(t.c.kind, t.c.op, t.c.result, func.count()).where(
            t.c.run_id == run_id).group_by(t.c.kind, t.c.op, t.c.result)
        with self.engine.connect() as conn:
            return {(k, o, r): int(n) for k, o, r, n in conn.execute(q)}

    def link_counts(self, flow: str) -> dict[str, dict[str, int]]:
        if self.engine is None:
            return {}
        from sqlalchemy import func

        t = schema.link
        q = select(t.c.kind, t.c.status, func.count()).where(t.c.flow == flow).group_by(
            t.c.kind, t.c.status)
        out: dict[str, dict[str, int]] = {}
        with self.engine.connect() as conn:
            for kind, status, n in conn.execute(q):
                out.setdefault(kind, {})[status] = n
        return out
