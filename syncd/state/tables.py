"""Tables of the state store (SQLModel declarations; queries use SQLAlchemy Core)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Index, func
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
    """One run of one flow. Indexes: the journal's runs by flow and time (`syncd log`, the
    last run per flow that pruning keeps) and by result (the runs that did not end ok)."""

    __tablename__ = "run"
    __table_args__ = (Index("ix_run_flow_started_at", "flow", "started_at"),)
    id: str = Field(primary_key=True)
    flow: str = Field(index=True)
    started_at: datetime = Field(index=True)
    finished_at: datetime | None = None
    result: str = Field(default="running", index=True)
    summary: str = "{}"
    error: str | None = None


class ChangeRow(SQLModel, table=True):
    """One applied (or failed) change: the provisioning log. `syncd log` reads it newest
    first, filtered by flow, op or result (each indexed with the time, so the newest N are
    an index walk), by run, by object (source id, target id, or the name without regard to
    ASCII case: ``ix_change_name_lower``) or by time."""

    __tablename__ = "change"
    __table_args__ = (Index("ix_change_flow_at", "flow", "at"),
                      Index("ix_change_op_at", "op", "at"),
                      Index("ix_change_result_at", "result", "at"))
    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(index=True)
    flow: str
    kind: str
    op: str
    source_id: str | None = Field(default=None, index=True)
    target_id: str | None = Field(default=None, index=True)
    name: str = ""
    detail: str = "{}"
    result: str
    error: str | None = None
    at: datetime = Field(index=True)


Index("ix_change_name_lower", func.lower(ChangeRow.__table__.c.name))  # type: ignore[attr-defined]


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


class ReferenceRow(SQLModel, table=True):
    """One value of a reference attribute (``reference = "user"``): which object an entry's
    attribute names, and the target id written for it (None: pending, the referenced object
    is not linked). Kept so a cycle that does not read the entry again (incremental) still
    fills the reference once the referenced object is linked, and clears it once that object
    is deprovisioned: the index on the referenced source id finds the entries naming it."""

    __tablename__ = "reference"
    __table_args__ = (Index("ix_reference_ref", "flow", "ref_kind", "ref_source_id"),)
    flow: str = Field(primary_key=True)
    kind: str = Field(primary_key=True)
    source_id: str = Field(primary_key=True)
    path: str = Field(primary_key=True)
    #: The source's own spelling of the referenced object (an LDAP DN, a Graph or SCIM id).
    value: str = Field(primary_key=True)
    ref_kind: str
    #: The referenced object's source anchor; None while the spelling names no object.
    ref_source_id: str | None = None
    #: The target id the entry's attribute holds for it; None: pending.
    target_id: str | None = None
    updated_at: datetime


class FactRow(SQLModel, table=True):
    """What `syncd check` learned about a connector's server, shown by `syncd status`."""

    __tablename__ = "fact"
    connector: str = Field(primary_key=True)
    checked_at: datetime
    #: JSON object of the connector's probe (no secrets: probes report capabilities).
    facts: str


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



def create_missing_indexes(engine: Engine) -> list[str]:
    """Create the declared indexes a store lacks; their names. `create_all` creates a table
    with its indexes but never adds an index to a table that exists, so a store made by an
    older syncd would otherwise query a million journal rows without them. The catalog is
    read first (no lock on the tables when nothing is missing, as on every open but the
    first); ``CREATE INDEX IF NOT EXISTS`` keeps two processes opening at once harmless."""
    from sqlalchemy import text
    from sqlalchemy.schema import CreateIndex

    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            q = "SELECT name FROM sqlite_master WHERE type = 'index'"
        else:
            q = "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
        have = {r[0] for r in conn.execute(text(q))}
    missing = [ix for t in SQLModel.metadata.sorted_tables for ix in t.indexes
               if ix.name not in have]
    if missing:
        with engine.begin() as conn:
            for ix in missing:
                conn.execute(CreateIndex(ix, if_not_exists=True))
    return [str(ix.name) for ix in missing]
