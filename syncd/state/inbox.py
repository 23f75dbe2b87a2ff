"""The received directory: users and groups that SCIM clients (Entra ID, Okta) provision into
``syncd serve``, kept in the state store, SQLite or PostgreSQL (DESIGN principle 14: inbound
is just another connector, whose directory lives here).

One row per resource (`schema.inbox`): its id, externalId, its name (userName of a user,
displayName of a group) with a lower-cased key for the case-insensitive ``eq`` filters and
the userName uniqueness RFC 7643 asks for, the resource JSON as received (without id, meta,
members or secrets), a version (the ETag) and its place in the directory's change sequence.
Group members are rows of `schema.inbox_member`, so adding one member to a group of 10,000 writes
one row, and ``excludedAttributes=members`` reads none.

Writes are serialised per directory: each one bumps the directory's counter
(`schema.inbox_seq`, an upsert: a row lock on PostgreSQL; on SQLite the transaction is
``BEGIN IMMEDIATE``, the database's write lock before any read) and commits in the same
transaction, so changes commit in sequence order and a reader whose cursor is N has seen
every change up to N. A delete leaves a tombstone (``deleted``, an empty body) with its own
sequence number, which incremental reads report as a delete. On SQLite the writer's
connections run with ``synchronous=FULL``: a change is on disk before the client is
answered.

Concurrent writes are committed together (`syncd.state.group_commit`): one transaction,
each write in a savepoint of its own (a taken userName fails alone), every caller answered
only once the transaction holding its write is committed. The statements of every request are
built once (`_Statements`).

Everything here is dicts and plain values: the SCIM wire format (scim2-models) is the
server's business (`syncd.daemon.inbound`), the reading side is `syncd.state.inbox_source`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Engine,
    String,
    and_,
    bindparam,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from syncd.model import Kind
from syncd.state import schema
from syncd.state.group_commit import GroupCommit
from syncd.state.records import aware, now
from syncd.state.tables import create_missing_indexes

#: Attributes never stored, whatever a peer sends (RFC 7643 §4.1.1: returned "never").
SECRET_ATTRIBUTES = frozenset({"password"})
#: Keys kept outside the body: the columns and the member rows hold them.
_OUTSIDE = frozenset({"id", "meta", "members", "schemas_"})


class InboxNotFound(LookupError):
    pass


class InboxConflict(ValueError):
    """A unique value (a user's userName) is held by another resource."""


class InboxVersionMismatch(ValueError):
    """The stored version is not the one the write was based on (a concurrent change)."""


@dataclass(frozen=True)
class Member:
    value: str
    type: str | None = None
    display: str | None = None


@dataclass(frozen=True)
class Record:
    kind: Kind
    id: str
    external_id: str | None
    name: str
    body: Mapping[str, Any]
    #: None when not read (``excludedAttributes=members``) or not a group.
    members: tuple[Member, ...] | None
    version: int
    seq: int
    deleted: bool
    created: datetime
    modified: datetime


def scrubbed(body: Mapping[str, Any]) -> dict[str, Any]:
    """`body` without the attributes that are never stored (a password a client sends)."""
    return {k: v for k, v in body.items() if k not in SECRET_ATTRIBUTES
            and k.rpartition(":")[2] not in SECRET_ATTRIBUTES}


def name_of(kind: Kind, body: Mapping[str, Any]) -> str:
    value = body.get("userName" if kind == "user" else "displayName")
    return value if isinstance(value, str) else ""


def _tables() -> tuple[Any, Any, Any]:
    return schema.inbox, schema.inbox_member, schema.inbox_seq


class _Statements:
    """The statements of every request, built once: building a SQLAlchemy statement costs
    more than running it (~0.25 ms against ~0.05 ms for a primary-key read on SQLite).
    Parameters: ``dir``, ``of_kind``, ``rid``, ``key``, ``value``, ``gid`` (no column's
    name: an UPDATE reserves those for its SET clause)."""

    def __init__(self, dialect: Any) -> None:
        t, m, s = _tables()
        d, k = bindparam("dir", type_=String), bindparam("of_kind", type_=String)
        self.next_seq = dialect.insert(s).values(directory=d, seq=1).on_conflict_do_update(
            index_elements=["directory"], set_={"seq": s.c.seq + 1}).returning(s.c.seq)
        self.row = select(t).where(t.c.directory == d, t.c.kind == k,
                                   t.c.id == bindparam("rid"))
        self.taken = select(t.c.id).where(t.c.directory == d, t.c.kind == k,
                                          t.c.name_key == bindparam("key"),
                                          t.c.deleted.is_(False))
        self.find = {col: select(t).where(t.c.directory == d, t.c.kind == k,
                                          t.c.deleted.is_(False),
                                          getattr(t.c, col) == bindparam("value"))
                     for col in ("id", "external_id", "name_key")}
        self.insert = insert(t)
        self.replace = update(t).where(
            t.c.directory == d, t.c.kind == k, t.c.id == bindparam("rid")).values(
            external_id=bindparam("external_id"), name=bindparam("name"),
            name_key=bindparam("name_key"), body=bindparam("body"),
            version=bindparam("version"), seq=bindparam("seq"), modified=bindparam("modified"))
        self.members = select(m.c.member_id, m.c.type, m.c.display).where(
            m.c.directory == d, m.c.group_id == bindparam("gid")).order_by(m.c.member_id)


class Inbox:
    """One received directory (`directory`: the name of its ``scim_inbox`` connector) in the
    store whose engine is given (a `syncd.state.store.Store`'s, tables created)."""

    PAGE = 500

    def __init__(self, engine: Engine, directory: str) -> None:
        self.engine = engine
        self.directory = directory
        self._dialect = postgresql if engine.dialect.name.startswith("postgres") else sqlite
        schema.metadata.create_all(engine, tables=list(_tables()))
        create_missing_indexes(engine, _tables())  # a store made by an older syncd
        if engine.dialect.name == "sqlite" and not getattr(engine, "_inbox_durable", False):
            @event.listens_for(engine, "connect")
            def _durable(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA synchronous=FULL")
                cur.close()

            engine._inbox_durable = True  # type: ignore[attr-defined]
            engine.dispose()  # connections opened before run with the listener too
        self.writes = GroupCommit(engine)
        self.sql = _Statements(self._dialect)

    # -- writes ---------------------------------------------------------------------------
    def _next_seq(self, conn: Any) -> int:
        """The next sequence number (on PostgreSQL, the directory's row lock)."""
        return int(conn.execute(self.sql.next_seq, {"dir": self.directory}).scalar_one())

    def _check_unique(self, conn: Any, kind: Kind, key: str, own_id: str | None) -> None:
        if kind != "user" or not key:
            return
        params = {"dir": self.directory, "of_kind": kind, "key": key}
        for (other,) in conn.execute(self.sql.taken, params):
            if other != own_id:
                raise InboxConflict(f"userName is already taken ({other})")

    def create(self, kind: Kind, rid: str, body: Mapping[str, Any],
               members: Sequence[Member] | None = None) -> Record:
        _, m, _ = _tables()
        body = {k: v for k, v in scrubbed(body).items() if k not in _OUTSIDE}
        name = name_of(kind, body)
        unique = _unique(members or ())

        def write(conn: Any) -> Record:
            ts = now()
            seq = self._next_seq(conn)
            self._check_unique(conn, kind, name.lower(), None)
            conn.execute(self.sql.insert, {
                "directory": self.directory, "kind": kind, "id": rid,
                "external_id": body.get("externalId"), "name": name, "name_key": name.lower(),
                "body": json.dumps(body), "version": 1, "seq": seq, "deleted": False,
                "created": ts, "modified": ts})
            if unique:
                conn.execute(insert(m), [self._member_row(rid, x) for x in unique])
            return Record(kind, rid, body.get("externalId"), name, body,
                          tuple(unique) if kind == "group" else None, 1, seq, False, ts, ts)

        return self.writes.run(write)

    def replace(self, kind: Kind, rid: str, body: Mapping[str, Any],
                members: Sequence[Member] | None = None, *,
                expected_version: int | None = None) -> Record:
        """Replace the resource; `members` None leaves a group's members as they are."""
        body = {k: v for k, v in scrubbed(body).items() if k not in _OUTSIDE}
        name = name_of(kind, body)

        def write(conn: Any) -> Record:
            ts = now()
            seq = self._next_seq(conn)
            row = self._row(conn, kind, rid)
            if expected_version is not None and row.version != expected_version:
                raise InboxVersionMismatch(f"version {row.version}, not {expected_version}")
            self._check_unique(conn, kind, name.lower(), rid)
            conn.execute(self.sql.replace, {
                "dir": self.directory, "of_kind": kind, "rid": rid,
                "external_id": body.get("externalId"), "name": name, "name_key": name.lower(),
                "body": json.dumps(body), "version": row.version + 1, "seq": seq,
                "modified": ts})
            if members is not None:
                self._set_members(conn, rid, _unique(members))
            kept = self._members(conn, rid) if kind == "group" else None
            return Record(kind, rid, body.get("externalId"), name, body, kept,
                          row.version + 1, seq, False, aware(row.created) or ts, ts)

        return self.writes.run(write)

    def delete(self, kind: Kind, rid: str, *, expected_version: int | None = None) -> None:
        """Leave a tombstone; a deleted user leaves the groups that had it (each a change)."""
        t, m, _ = _tables()

        def write(conn: Any) -> None:
            ts = now()
            seq = self._next_seq(conn)
            row = self._row(conn, kind, rid)
            if expected_version is not None and row.version != expected_version:
                raise InboxVersionMismatch(f"version {row.version}, not {expected_version}")
            conn.execute(update(t).where(self._key(t, kind, rid)).values(
                deleted=True, body="{}", name_key="", version=row.version + 1, seq=seq,
                modified=ts))
            conn.execute(delete(m).where(and_(m.c.directory == self.directory,
                                              m.c.group_id == rid)))
            holders = [g for (g,) in conn.execute(select(m.c.group_id).where(and_(
                m.c.directory == self.directory, m.c.member_id == rid)))]
            if holders:
                conn.execute(delete(m).where(and_(m.c.directory == self.directory,
                                                  m.c.member_id == rid)))
                conn.execute(update(t).where(and_(
                    t.c.directory == self.directory, t.c.kind == "group",
                    t.c.id.in_(holders))).values(version=t.c.version + 1, seq=seq,
                                                 modified=ts))

        self.writes.run(write)

    def _member_row(self, gid: str, member: Member) -> dict[str, Any]:
        return {"directory": self.directory, "group_id": gid, "member_id": member.value,
                "type": member.type, "display": member.display}

    def _set_members(self, conn: Any, gid: str, members: list[Member]) -> None:
        _, m, _ = _tables()
        have = {x.value: x for x in self._members(conn, gid)}
        want = {x.value: x for x in members}
        gone = [v for v in have if v not in want or want[v] != have[v]]
        if gone:
            conn.execute(delete(m).where(and_(m.c.directory == self.directory,
                                              m.c.group_id == gid, m.c.member_id.in_(gone))))
        new = [x for v, x in want.items() if v not in have or v in gone]
        if new:
            conn.execute(insert(m), [self._member_row(gid, x) for x in new])

    # -- reads ----------------------------------------------------------------------------
    def _key(self, t: Any, kind: Kind, rid: str) -> Any:
        return and_(t.c.directory == self.directory, t.c.kind == kind, t.c.id == rid)

    def _row(self, conn: Any, kind: Kind, rid: str) -> Any:
        row = conn.execute(self.sql.row, {"dir": self.directory, "of_kind": kind,
                                          "rid": rid}).first()
        if row is None or row.deleted:
            raise InboxNotFound(f"{kind} {rid!r} not found")
        return row

    def _members(self, conn: Any, gid: str) -> tuple[Member, ...]:
        rows = conn.execute(self.sql.members, {"dir": self.directory, "gid": gid})
        return tuple(Member(v, ty, d) for v, ty, d in rows)

    def _record(self, conn: Any, row: Any, members: bool) -> Record:
        kind = row.kind
        return Record(kind, row.id, row.external_id, row.name, json.loads(row.body),
                      self._members(conn, row.id) if members and kind == "group"
                      and not row.deleted else None,
                      row.version, row.seq, row.deleted, aware(row.created) or now(),
                      aware(row.modified) or now())

    def get(self, kind: Kind, rid: str, *, members: bool = True) -> Record:
        with self.engine.connect() as conn:
            return self._record(conn, self._row(conn, kind, rid), members)

    def find(self, kind: Kind, column: str, value: str, *, members: bool = True) -> list[Record]:
        """Live resources whose `column` ("id", "external_id", "name_key") equals `value`."""
        q = self.sql.find[column]
        with self.engine.connect() as conn:
            # sorted here, not ORDER BY id: for that SQLite walks the primary key (every
            # resource of the kind) instead of the userName or externalId index
            rows = sorted(conn.execute(q, {"dir": self.directory, "of_kind": kind,
                                           "value": value}), key=lambda r: r.id)
            return [self._record(conn, r, members) for r in rows]

    def all(self, kind: Kind, *, members: bool = True) -> Iterator[list[Record]]:
        """Every live resource of `kind`, in pages (keyset on id: no page repeats or skips a
        resource that exists during the whole walk)."""
        t, _, _ = _tables()
        after = ""
        while True:
            q = select(t).where(and_(t.c.directory == self.directory, t.c.kind == kind,
                                     t.c.deleted.is_(False), t.c.id > after)
                                ).order_by(t.c.id).limit(self.PAGE)
            with self.engine.connect() as conn:
                page = [self._record(conn, r, members) for r in conn.execute(q)]
            if not page:
                return
            yield page
            after = page[-1].id
            if len(page) < self.PAGE:
                return

    def changes(self, kind: Kind, since: int) -> Iterator[list[Record]]:
        """Resources of `kind` (tombstones included) changed after sequence number `since`,
        in sequence order, in pages."""
        t, _, _ = _tables()
        while True:
            q = select(t).where(and_(t.c.directory == self.directory, t.c.kind == kind,
                                     t.c.seq > since)).order_by(t.c.seq).limit(self.PAGE)
            with self.engine.connect() as conn:
                page = [self._record(conn, r, True) for r in conn.execute(q)]
            if not page:
                return
            yield page
            since = page[-1].seq
            if len(page) < self.PAGE:
                return

    def head(self) -> int:
        """The directory's latest sequence number (0: nothing received yet)."""
        _, _, s = _tables()
        with self.engine.connect() as conn:
            got = conn.execute(select(s.c.seq).where(s.c.directory == self.directory)).scalar()
        return int(got or 0)

    def groups_naming(self, member_ids: Iterable[str]) -> list[Record]:
        """Live groups with any of `member_ids` as a direct member."""
        t, m, _ = _tables()
        ids = list(dict.fromkeys(member_ids))
        out: dict[str, Record] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(ids), self.PAGE):
                gq = select(m.c.group_id).where(and_(m.c.directory == self.directory,
                                                     m.c.member_id.in_(ids[i:i + self.PAGE])))
                q = select(t).where(and_(t.c.directory == self.directory, t.c.kind == "group",
                                         t.c.deleted.is_(False), t.c.id.in_(gq)))
                for r in conn.execute(q):
                    out[r.id] = self._record(conn, r, True)
        return [out[k] for k in sorted(out)]

    def count(self, kind: Kind) -> int:
        t, _, _ = _tables()
        q = select(func.count()).select_from(t).where(and_(
            t.c.directory == self.directory, t.c.kind == kind, t.c.deleted.is_(False)))
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())


def _unique(members: Iterable[Member]) -> list[Member]:
    return list({m.value: m for m in members}.values())
