"""The state store's tables as SQLModel declarations: the one place their columns are written.

Not imported by a run: importing SQLModel (with SQLAlchemy's ORM it pulls in) and mapping
these 13 classes cost a one-shot ``syncd run`` ~0.3 s of CPU before any work (issue 17),
while the store only ever used each class's ``__table__`` (queries are SQLAlchemy Core).
`scripts/gen_store_schema.py` renders these declarations as SQLAlchemy Core tables into
`syncd.state.schema`, which the store imports; `tests/unit/test_store_schema.py` fails when
the two differ (columns, types, defaults, keys, indexes, the DDL on SQLite and PostgreSQL).
Change a table here, then run ``.venv/bin/python scripts/gen_store_schema.py``.

Who uses which table: `syncd.state.store` and its mixins (links, cursors, pending, run,
change, conflict, reference, fact), `syncd.state.graph` (group_edge), `syncd.state.inbox`
and `syncd.state.inbox_prune` (the received directory).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, func
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


class GroupEdgeRow(SQLModel, table=True):
    """One direct membership in the source: `group` contains `member` (a user or a group)."""

    __tablename__ = "group_edge"
    __table_args__ = (Index("ix_group_edge_member", "flow", "member_kind", "member_id"),)
    flow: str = Field(primary_key=True)
    group_id: str = Field(primary_key=True)
    member_kind: str = Field(primary_key=True)
    member_id: str = Field(primary_key=True)
    updated_at: datetime


class InboxRow(SQLModel, table=True):
    __tablename__ = "inbox"
    __table_args__ = (Index("ix_inbox_name", "directory", "kind", "name_key"),
                      Index("ix_inbox_external", "directory", "kind", "external_id"),
                      Index("ix_inbox_seq", "directory", "seq"))
    directory: str = Field(primary_key=True)
    kind: str = Field(primary_key=True)
    id: str = Field(primary_key=True)
    external_id: str | None = None
    name: str = ""
    name_key: str = ""
    body: str = "{}"
    version: int = 1
    seq: int
    deleted: bool = False
    created: datetime
    modified: datetime


class InboxMemberRow(SQLModel, table=True):
    __tablename__ = "inbox_member"
    __table_args__ = (Index("ix_inbox_member_member", "directory", "member_id"),)
    directory: str = Field(primary_key=True)
    group_id: str = Field(primary_key=True)
    member_id: str = Field(primary_key=True)
    #: "User" or "Group" (nested groups); None when the client did not say.
    type: str | None = None
    display: str | None = None


class InboxSeqRow(SQLModel, table=True):
    __tablename__ = "inbox_seq"
    directory: str = Field(primary_key=True)
    seq: int = 0


class InboxPrunedRow(SQLModel, table=True):
    __tablename__ = "inbox_pruned"
    directory: str = Field(primary_key=True)
    kind: str = Field(primary_key=True)
    #: Every tombstone of this kind at or before this sequence number may be gone.
    seq: int = 0
