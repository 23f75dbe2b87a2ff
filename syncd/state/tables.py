"""Tables of the state store (SQLModel declarations; queries use SQLAlchemy Core)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Field, SQLModel


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
    #: When the status last changed: the start of the grace period before a hard delete.
    status_at: datetime | None = None
    origin: str = "created"
    updated_at: datetime


class CursorRow(SQLModel, table=True):
    """Per flow (not only per connector): two flows reading one source each keep their own
    position, so one flow's progress never makes the other miss changes."""

    __tablename__ = "cursor"
    flow: str = Field(primary_key=True)
    connector: str = Field(primary_key=True)
    kind: str = Field(primary_key=True)
    value: str | None = None
    #: When the last complete full read of this source and kind happened.
    full_at: datetime | None = None
    #: Digest of what the flow reads and how it maps/scopes it: a config change that the
    #: feed cannot reflect (new scope, new mapping) forces a full read.
    fingerprint: str | None = None
    updated_at: datetime


class PendingRow(SQLModel, table=True):
    """A change that failed: retried with backoff, quarantined after too many attempts.

    `item` keeps the mapped source values, so an incremental run (which will not see the
    entry again unless it changes) can still retry it.
    """

    __tablename__ = "pending"
    flow: str = Field(primary_key=True)
    kind: str = Field(primary_key=True)
    source_id: str = Field(primary_key=True)
    name: str = ""
    op: str
    attempts: int = 0
    next_at: datetime
    error_class: str
    error: str
    quarantined: bool = False
    item: str | None = None
    item_digest: str | None = None
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


class ConflictRow(SQLModel, table=True):
    """A manual conflict: both sides changed an attribute differently since the base."""

    __tablename__ = "conflict"
    flow: str = Field(primary_key=True)
    kind: str = Field(primary_key=True)
    source_id: str = Field(primary_key=True)
    path: str = Field(primary_key=True)
    id: str = Field(index=True)
    name: str = ""
    source_value: str
    target_value: str
    base_value: str
    #: JSON of the operator's choice; applied by the next run, then the row goes.
    resolution: str | None = None
    detected_at: datetime


class Rows:
    """What the store's mixins share: the engine and the one bulk-write primitive (an
    executemany ``insert ... on conflict do update``, the same on SQLite and PostgreSQL)."""

    engine: Engine | None
    dialect: str

    def _upsert(self, table: Any, keys: list[str], rows: list[dict[str, Any]]) -> None:
        assert self.engine is not None
        dialect = postgresql if self.dialect.startswith("postgres") else sqlite
        stmt = dialect.insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=keys,
            set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys})
        with self.engine.begin() as conn:
            conn.execute(stmt, rows)

