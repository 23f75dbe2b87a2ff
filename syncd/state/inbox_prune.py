"""Pruning the received directory's tombstones (`syncd.state.inbox`).

A delete leaves a tombstone so that incremental reads (``seq:N`` cursors) report it. Once
every flow reading the directory has read past it (its cursor is at or after the
tombstone's sequence number) and it is older than ``[serve] tombstones_keep``, nobody needs
it: it is deleted (`prune_tombstones`, the daemon's daily prune job).

What guards a reader that was not counted (a flow added back to the config with an old
cursor, a flow whose config changed): the highest sequence number pruned per directory and
kind is kept (`schema.inbox_pruned`); the ``scim_inbox`` source reads a cursor older than
that in full (`pruned_upto`), like a Graph delta token that expired, and a full read confirms
what is gone by direct lookup. Never a missed delete, at worst one full read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from syncd.model import Kind
from syncd.state import schema


def _tables() -> tuple[Any, Any]:
    return schema.inbox, schema.inbox_pruned


def _create(engine: Engine) -> None:
    schema.metadata.create_all(engine, tables=list(_tables()))


def pruned_upto(engine: Engine, directory: str, kind: Kind) -> int:
    """The highest sequence number of a pruned tombstone of `kind` (0: none pruned)."""
    _create(engine)
    _, p = _tables()
    with engine.connect() as conn:
        got = conn.execute(select(p.c.seq).where(and_(p.c.directory == directory,
                                                      p.c.kind == kind))).scalar()
    return int(got or 0)


def prune_tombstones(engine: Engine, directory: str, kind: Kind, *, upto: int,
                     older_than: datetime) -> int:
    """Delete the tombstones of `kind` with a sequence number at most `upto`, deleted before
    `older_than`; record the highest pruned. Returns how many went. One transaction."""
    _create(engine)
    t, p = _tables()
    doomed = and_(t.c.directory == directory, t.c.kind == kind, t.c.deleted.is_(True),
                  t.c.seq <= upto, t.c.modified < older_than)
    dialect = postgresql if engine.dialect.name.startswith("postgres") else sqlite
    with engine.begin() as conn:
        top = conn.execute(select(func.max(t.c.seq)).where(doomed)).scalar()
        if top is None:
            return 0
        gone = conn.execute(delete(t).where(doomed)).rowcount
        stmt = dialect.insert(p).values(directory=directory, kind=kind, seq=int(top))
        conn.execute(stmt.on_conflict_do_update(
            index_elements=["directory", "kind"],
            set_={"seq": func.max(p.c.seq, stmt.excluded.seq)
                  if engine.dialect.name == "sqlite" else func.greatest(p.c.seq,
                                                                        stmt.excluded.seq)}))
    return int(gone)
