"""Reference attributes remembered between cycles (`tables.ReferenceRow`). A mixin of `Store`.

Why stored: an incremental cycle does not read an entry again unless it changed, so an entry
whose manager was not linked yet would never get its manager once it is; and an entry whose
manager is deprovisioned must lose it although the entry itself did not change. The rows say
which entries name which objects, so both are found by an index lookup, O(changes).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import and_, delete, or_, select

from syncd.model import Kind
from syncd.state import schema
from syncd.state.records import RefRow, now
from syncd.state.tables import Rows

_CHUNK = 500


class ReferencesMixin(Rows):
    def references(self, flow: str, *, source_ids: Iterable[str] | None = None,
                   kind: Kind | None = None, pending: bool = False,
                   naming: Iterable[tuple[Kind, str]] = ()) -> list[RefRow]:
        """Rows of `flow`: of these entries (`source_ids`, with `kind`), or those still
        pending (no target id), or those naming any of these ``(kind, source id)`` objects.
        Several criteria are or-ed."""
        if self.engine is None:
            return []
        t = schema.reference
        conds = []
        if source_ids is not None:
            ids = sorted(set(source_ids))
            for i in range(0, len(ids), _CHUNK):
                c = t.c.source_id.in_(ids[i:i + _CHUNK])
                conds.append(and_(t.c.kind == kind, c) if kind is not None else c)
        if pending:
            conds.append(t.c.target_id.is_(None))
        by_kind: dict[Kind, list[str]] = {}
        for k, sid in naming:
            by_kind.setdefault(k, []).append(sid)
        for k, sids in by_kind.items():
            ids = sorted(set(sids))
            for i in range(0, len(ids), _CHUNK):
                conds.append(and_(t.c.ref_kind == k, t.c.ref_source_id.in_(ids[i:i + _CHUNK])))
        if not conds:
            return []
        out: dict[tuple[str, str, str, str], RefRow] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(conds), 20):
                q = select(t).where(and_(t.c.flow == flow, or_(*conds[i:i + 20])))
                for r in conn.execute(q):
                    out[(r.kind, r.source_id, r.path, r.value)] = RefRow(
                        r.kind, r.source_id, r.path, r.value, r.ref_kind, r.ref_source_id,
                        r.target_id)
        return list(out.values())

    def replace_references(self, flow: str, kind: Kind, source_ids: Iterable[str],
                           rows: Sequence[RefRow]) -> None:
        """The rows of these entries become `rows` (an entry read again names what it names
        now; an entry without a reference value keeps no row)."""
        ids = sorted(set(source_ids) | {r.source_id for r in rows})
        if not ids or self.engine is None:
            return
        t = schema.reference
        ts = now()
        with self.engine.begin() as conn:
            for i in range(0, len(ids), _CHUNK):
                conn.execute(delete(t).where(and_(t.c.flow == flow, t.c.kind == kind,
                                                  t.c.source_id.in_(ids[i:i + _CHUNK]))))
            if rows:
                conn.execute(t.insert(), [
                    {"flow": flow, "kind": r.kind, "source_id": r.source_id, "path": r.path,
                     "value": r.value, "ref_kind": r.ref_kind, "ref_source_id": r.ref_source_id,
                     "target_id": r.target_id, "updated_at": ts} for r in rows])

    def save_references(self, flow: str, rows: Sequence[RefRow]) -> None:
        """Upsert rows (a reference filled, cleared, or its object found)."""
        if not rows:
            return
        self._upsert(schema.reference,
                     ["flow", "kind", "source_id", "path", "value"],
                     [{"flow": flow, "kind": r.kind, "source_id": r.source_id, "path": r.path,
                       "value": r.value, "ref_kind": r.ref_kind,
                       "ref_source_id": r.ref_source_id, "target_id": r.target_id,
                       "updated_at": now()} for r in rows])

    def drop_references(self, flow: str, kind: Kind, source_ids: Iterable[str]) -> None:
        """Entries whose link is gone name nothing any more."""
        self.replace_references(flow, kind, source_ids, [])
