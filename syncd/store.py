"""The state store: links (with their base), cursors and the run journal.

SQLModel declares the tables; reads and the hot writes go through SQLAlchemy Core
(`insert ... on conflict do update` executemany), because per-object ORM sessions are ~10x
slower at 100k rows (PEERS.md). SQLite runs in WAL mode; PostgreSQL works with the same code.

Dry runs open the store read-only and never create it: "nothing is written anywhere".
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, and_, create_engine, delete, event, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlmodel import Field, SQLModel

from syncd.errors import ConfigError, StoreLocked
from syncd.model import Attrs, Kind, attrs_from_json, canonical_json


class LinkRow(SQLModel, table=True):
    __tablename__ = "link"
    flow: str = Field(primary_key=True)
    kind: str = Field(primary_key=True)
    source_id: str = Field(primary_key=True)
    target_id: str = Field(index=True)
    base: str
    digest: str
    members: str | None = None
    status: str = "active"
    origin: str = "created"
    updated_at: datetime


class CursorRow(SQLModel, table=True):
    __tablename__ = "cursor"
    connector: str = Field(primary_key=True)
    kind: str = Field(primary_key=True)
    value: str
    updated_at: datetime


class RunRow(SQLModel, table=True):
    __tablename__ = "run"
    id: str = Field(primary_key=True)
    flow: str = Field(index=True)
    started_at: datetime
    finished_at: datetime | None = None
    result: str = "running"
    summary: str = "{}"
    error: str | None = None


class ChangeRow(SQLModel, table=True):
    __tablename__ = "change"
    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(index=True)
    flow: str
    kind: str
    op: str
    source_id: str | None = Field(default=None, index=True)
    target_id: str | None = None
    name: str = ""
    detail: str = "{}"
    result: str
    error: str | None = None
    at: datetime


@dataclass(frozen=True)
class Link:
    """A source ref paired with a target ref, plus the last agreed values (the base)."""

    flow: str
    kind: Kind
    source_id: str
    target_id: str
    base: Attrs
    digest: str
    members: frozenset[str] | None = None
    status: str = "active"
    origin: str = "created"


def now() -> datetime:
    return datetime.now(UTC)


class Store:
    def __init__(self, url: str, *, readonly: bool = False) -> None:
        self.url = url
        self.readonly = readonly
        self._lock_fd: int | None = None
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        self._sqlite_path: Path | None = None
        if self.dialect == "sqlite" and parsed.database and parsed.database != ":memory:":
            self._sqlite_path = Path(parsed.database)
        self.engine: Engine | None = None
        if readonly and self._sqlite_path is not None and not self._sqlite_path.exists():
            return  # nothing stored yet: a dry run sees an empty store and creates nothing
        self.engine = self._connect(url)
        if not readonly:
            SQLModel.metadata.create_all(self.engine)

    def _connect(self, url: str) -> Engine:
        if self._sqlite_path is not None:
            if not self.readonly:
                self._sqlite_path.parent.mkdir(parents=True, exist_ok=True)
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

            return engine
        try:
            return create_engine(url, pool_pre_ping=True)
        except Exception as exc:  # bad URL or missing driver: a config problem
            raise ConfigError(f"state.url cannot be used: {exc}") from None

    # -- single instance -------------------------------------------------------------------
    def lock(self) -> None:
        """One writer per store; a second `syncd run` exits with a clear message."""
        if self._sqlite_path is None or self.readonly:
            return
        path = self._sqlite_path.with_name(self._sqlite_path.name + ".lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreLocked(
                f"another syncd process is using the state store {self._sqlite_path}"
            ) from None
        self._lock_fd = fd

    def close(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None
        if self.engine is not None:
            self.engine.dispose()

    # -- links -----------------------------------------------------------------------------
    def links(self, flow: str, kind: Kind) -> dict[str, Link]:
        if self.engine is None:
            return {}
        t = LinkRow.__table__  # type: ignore[attr-defined]
        q = select(t).where(and_(t.c.flow == flow, t.c.kind == kind))
        out: dict[str, Link] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(q):
                members = frozenset(json.loads(r.members)) if r.members is not None else None
                out[r.source_id] = Link(
                    r.flow, r.kind, r.source_id, r.target_id, attrs_from_json(r.base),
                    r.digest, members, r.status, r.origin,
                )
        return out

    def save_links(self, links: Sequence[Link]) -> None:
        if not links:
            return
        assert self.engine is not None and not self.readonly
        t = LinkRow.__table__  # type: ignore[attr-defined]
        ts = now()
        rows = [
            {
                "flow": lk.flow, "kind": lk.kind, "source_id": lk.source_id,
                "target_id": lk.target_id, "base": canonical_json(lk.base), "digest": lk.digest,
                "members": json.dumps(sorted(lk.members)) if lk.members is not None else None,
                "status": lk.status, "origin": lk.origin, "updated_at": ts,
            }
            for lk in links
        ]
        dialect = postgresql if self.dialect.startswith("postgres") else sqlite
        stmt = dialect.insert(t)
        stmt = stmt.on_conflict_do_update(
            index_elements=["flow", "kind", "source_id"],
            set_={c: stmt.excluded[c] for c in
                  ("target_id", "base", "digest", "members", "status", "origin", "updated_at")},
        )
        with self.engine.begin() as conn:
            conn.execute(stmt, rows)

    def drop_links(self, flow: str, kind: Kind, source_ids: Iterable[str]) -> None:
        ids = list(source_ids)
        if not ids:
            return
        assert self.engine is not None
        t = LinkRow.__table__  # type: ignore[attr-defined]
        with self.engine.begin() as conn:
            for i in range(0, len(ids), 500):
                conn.execute(delete(t).where(and_(
                    t.c.flow == flow, t.c.kind == kind, t.c.source_id.in_(ids[i:i + 500]))))

    # -- run journal -----------------------------------------------------------------------
    def start_run(self, flow: str) -> str:
        run_id = uuid.uuid4().hex[:12]
        assert self.engine is not None
        with self.engine.begin() as conn:
            conn.execute(RunRow.__table__.insert(), [  # type: ignore[attr-defined]
                {"id": run_id, "flow": flow, "started_at": now(), "result": "running",
                 "summary": "{}"}])
        return run_id

    def finish_run(self, run_id: str, result: str, summary: dict[str, Any],
                   error: str | None = None) -> None:
        assert self.engine is not None
        t = RunRow.__table__  # type: ignore[attr-defined]
        with self.engine.begin() as conn:
            conn.execute(update(t).where(t.c.id == run_id).values(
                finished_at=now(), result=result, summary=json.dumps(summary), error=error))

    def log_changes(self, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        assert self.engine is not None
        ts = now()
        with self.engine.begin() as conn:
            conn.execute(ChangeRow.__table__.insert(),  # type: ignore[attr-defined]
                         [{**r, "at": ts} for r in rows])

    def recent_runs(self, flow: str, limit: int = 5) -> list[dict[str, Any]]:
        if self.engine is None:
            return []
        t = RunRow.__table__  # type: ignore[attr-defined]
        q = select(t).where(t.c.flow == flow).order_by(t.c.started_at.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def link_counts(self, flow: str) -> dict[str, dict[str, int]]:
        if self.engine is None:
            return {}
        from sqlalchemy import func

        t = LinkRow.__table__  # type: ignore[attr-defined]
        q = select(t.c.kind, t.c.status, func.count()).where(t.c.flow == flow).group_by(
            t.c.kind, t.c.status)
        out: dict[str, dict[str, int]] = {}
        with self.engine.connect() as conn:
            for kind, status, n in conn.execute(q):
                out.setdefault(kind, {})[status] = n
        return out
