"""The source's direct group graph, remembered per flow (`schema.group_edge`).

Why stored: with nested groups flattened (or a membership scope), an incremental cycle reads
only the groups that changed, yet the flattened membership of every group containing them
(directly or nested) changes too. The rows say which group contains which user and group, so
the ancestors of a changed group are found by an index lookup (the reverse edges) and their
members recomputed from the remembered edges -- O(changes and what they reach), not a full
read. Incremental equals full: the edges are what a full read would have seen.

Per flow, like cursors: two flows reading one source keep their own picture. Edges describe
the source (not what was agreed with a target), so they are written as soon as a read sees
them; a run that then fails reads the same changes again (its cursor did not move) and
reaches the same ancestors.

Rows: ``(flow, group, "user"|"group", member)``; one marker row ``(flow, "", "complete", "")``
says a complete full read established the graph (without it, an incremental read cannot
know the groups it did not read and a full read is needed). The table is created on first
use, so stores made before it need nothing; a read-only store (dry run) without the table
reads as empty. Functions of a `Store` (its ``engine``), not a mixin: the store's class stays
as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Engine, and_, delete, inspect, select

from syncd.state import schema
from syncd.state.records import now

_CHUNK = 500
#: A group's direct members: (users, groups).
Direct = tuple[frozenset[str], frozenset[str]]


_T = schema.group_edge
_ready: dict[int, bool] = {}


def _engine(store: Any, write: bool = False) -> Engine | None:
    engine: Engine | None = store.engine
    if engine is None:
        return None
    key = id(engine)
    if not _ready.get(key):
        if write or not getattr(store, "readonly", False):
            _T.create(engine, checkfirst=True)
            _ready[key] = True
        elif not inspect(engine).has_table(_T.name):
            return None
        else:
            _ready[key] = True
    return engine


def established(store: Any, flow: str) -> bool:
    """True once a complete full read stored the whole graph of `flow`."""
    engine = _engine(store)
    if engine is None:
        return False
    q = select(_T.c.flow).where(and_(_T.c.flow == flow, _T.c.group_id == "",
                                     _T.c.member_kind == "complete")).limit(1)
    with engine.connect() as conn:
        return conn.execute(q).first() is not None


def edges(store: Any, flow: str, groups: Iterable[str]) -> dict[str, Direct]:
    """The remembered direct members of these groups (a group without rows: none known)."""
    engine = _engine(store)
    ids = sorted(set(groups) - {""})
    out: dict[str, tuple[set[str], set[str]]] = {}
    if engine is None or not ids:
        return {}
    with engine.connect() as conn:
        for i in range(0, len(ids), _CHUNK):
            q = select(_T.c.group_id, _T.c.member_kind, _T.c.member_id).where(and_(
                _T.c.flow == flow, _T.c.group_id.in_(ids[i:i + _CHUNK])))
            for g, kind, member in conn.execute(q):
                users, subgroups = out.setdefault(g, (set(), set()))
                (users if kind == "user" else subgroups).add(member)
    return {g: (frozenset(u), frozenset(s)) for g, (u, s) in out.items()}


def parents(store: Any, flow: str, members: Iterable[str], kind: str = "group"
            ) -> dict[str, set[str]]:
    """member -> the groups that contain it directly (the reverse edges, by index)."""
    engine = _engine(store)
    ids = sorted(set(members))
    out: dict[str, set[str]] = {}
    if engine is None or not ids:
        return out
    with engine.connect() as conn:
        for i in range(0, len(ids), _CHUNK):
            q = select(_T.c.member_id, _T.c.group_id).where(and_(
                _T.c.flow == flow, _T.c.member_kind == kind,
                _T.c.member_id.in_(ids[i:i + _CHUNK])))
            for member, g in conn.execute(q):
                out.setdefault(member, set()).add(g)
    return out


def whole(store: Any, flow: str) -> dict[str, Direct]:
    """Every remembered group's direct members (a membership scope's full recompute)."""
    engine = _engine(store)
    if engine is None:
        return {}
    out: dict[str, tuple[set[str], set[str]]] = {}
    q = select(_T.c.group_id, _T.c.member_kind, _T.c.member_id).where(
        and_(_T.c.flow == flow, _T.c.group_id != ""))
    with engine.connect() as conn:
        for g, kind, member in conn.execute(q):
            users, subgroups = out.setdefault(g, (set(), set()))
            (users if kind == "user" else subgroups).add(member)
    return {g: (frozenset(u), frozenset(s)) for g, (u, s) in out.items()}


def save(store: Any, flow: str, read: Mapping[str, Direct], gone: Iterable[str] = (),
         *, complete_full: bool = False) -> None:
    """Remember what a read saw: the read groups' edges replace their old ones, `gone`
    groups (deleted at the source) lose theirs. A complete full read replaces the whole
    graph and marks it established; an incomplete one only adds what it saw (a group it
    did not see is not proof of anything)."""
    if getattr(store, "readonly", False):
        return
    engine = _engine(store, write=True)
    if engine is None:
        return
    ts = now()
    ids = sorted(set(read) | set(gone))
    with engine.begin() as conn:
        if complete_full:
            conn.execute(delete(_T).where(_T.c.flow == flow))
        else:
            for i in range(0, len(ids), _CHUNK):
                conn.execute(delete(_T).where(and_(_T.c.flow == flow,
                                                   _T.c.group_id.in_(ids[i:i + _CHUNK]))))
        rows = [{"flow": flow, "group_id": g, "member_kind": kind, "member_id": m,
                 "updated_at": ts}
                for g, (users, groups) in read.items()
                for kind, ms in (("user", users), ("group", groups)) for m in ms]
        if complete_full:
            rows.append({"flow": flow, "group_id": "", "member_kind": "complete",
                         "member_id": "", "updated_at": ts})
        for i in range(0, len(rows), 5000):
            conn.execute(_T.insert(), rows[i:i + 5000])


def forget(store: Any, flow: str) -> None:
    """Drop `flow`'s graph (its nesting was switched off: a later switch on reads in full)."""
    if getattr(store, "readonly", False) or store.engine is None:
        return
    engine = _engine(store, write=True)
    assert engine is not None
    with engine.begin() as conn:
        conn.execute(delete(_T).where(_T.c.flow == flow))
