"""Links: the persistent pairing of a source entry and a target object, with the base (the
last agreed values). A mixin of `Store`; every read streams or chunks its ids (500 per
query), so a million links cost one page of rows at a time where the caller allows it."""

from __future__ import annotations

import json
from collections.abc import Container, Iterable, Iterator, Sequence

from sqlalchemy import and_, delete, func, select

from syncd.model import Kind, StoredAttrs, canonical_json
from syncd.state import schema
from syncd.state.records import Link, aware, now
from syncd.state.tables import Rows


class LinksMixin(Rows):
    readonly: bool

    def links(self, flow: str, kind: Kind, ids: Iterable[str] | None = None, *,
              by_target: bool = False) -> dict[str, Link]:
        """Links of a flow and kind, keyed by source id; only those with these source ids
        (or target ids, `by_target`) when `ids` is given — incremental cycles touch a few
        links, not the whole table. Bases are decoded lazily (`StoredAttrs`): a reconcile
        that loads every link decodes only those the planner actually looks into."""
        if self.engine is None:
            return {}
        t = schema.link
        base = and_(t.c.flow == flow, t.c.kind == kind)
        col = t.c.target_id if by_target else t.c.source_id
        # Not updated_at: parsing a datetime per row is a measurable share of loading 100k.
        cols = select(t.c.flow, t.c.kind, t.c.source_id, t.c.target_id, t.c.base, t.c.digest,
                      t.c.members, t.c.status, t.c.origin, t.c.status_at)
        if ids is None:
            queries = [cols.where(base)]
        else:
            wanted = sorted(set(ids))
            queries = [cols.where(and_(base, col.in_(wanted[i:i + 500])))
                       for i in range(0, len(wanted), 500)]
        out: dict[str, Link] = {}
        with self.engine.connect() as conn:
            for q in queries:
                for r in conn.execute(q):
                    members = (frozenset(json.loads(r.members)) if r.members is not None
                               else None)
                    out[r.source_id] = Link(
                        r.flow, r.kind, r.source_id, r.target_id, StoredAttrs(r.base or "{}"),
                        r.digest, members, r.status, r.origin, aware(r.status_at),
                    )
        return out

    def link_ids(self, flow: str, kind: Kind, status: str | None = "active",
                 among: Iterable[str] | None = None, *,
                 unseen: Container[str] | None = None) -> set[str]:
        """Source ids of links (cheap: no base decoding); only those in `among` if given,
        only those not in `unseen` if given. `unseen` is tested row by row as the rows
        stream in: after a full read of a million users the links not seen are a few, and
        the million linked ids never sit in memory beside the million seen."""
        if self.engine is None:
            return set()
        t = schema.link
        cond = and_(t.c.flow == flow, t.c.kind == kind)
        if status is not None:
            cond = and_(cond, t.c.status == status)
        if among is None:
            queries = [select(t.c.source_id).where(cond).execution_options(
                stream_results=True, yield_per=10_000)]
        else:
            wanted = sorted(set(among))
            queries = [select(t.c.source_id).where(and_(cond, t.c.source_id.in_(
                wanted[i:i + 500]))) for i in range(0, len(wanted), 500)]
        with self.engine.connect() as conn:
            if unseen is None:
                return {r[0] for q in queries for r in conn.execute(q)}
            return {r[0] for q in queries for r in conn.execute(q) if r[0] not in unseen}

    def link_bases(self, flow: str, kind: Kind, ids: Iterable[str]
                   ) -> Iterator[tuple[str, StoredAttrs]]:
        """(source id, base) of these links, streamed: for naming thousands of members
        without building a `Link` for each."""
        for sid, base in self._columns(flow, kind, ids, "base"):
            yield sid, StoredAttrs(str(base or "{}"))

    def _columns(self, flow: str, kind: Kind, ids: Iterable[str], column: str
                 ) -> Iterator[tuple[str, object]]:
        """(source id, `column`) of these links, 500 ids per query, streamed."""
        if self.engine is None:
            return
        t = schema.link
        cond = and_(t.c.flow == flow, t.c.kind == kind)
        wanted = sorted(set(ids))
        with self.engine.connect() as conn:
            for i in range(0, len(wanted), 500):
                q = select(t.c.source_id, t.c[column]).where(
                    and_(cond, t.c.source_id.in_(wanted[i:i + 500])))
                for r in conn.execute(q):
                    yield r[0], r[1]

    def link_targets(self, flow: str, kind: Kind, ids: Iterable[str]) -> dict[str, str]:
        """Source id -> target id of these links (any status): what resolving group members
        needs, without a `Link` (base, digest, members) for each member."""
        return {sid: str(tid) for sid, tid in self._columns(flow, kind, ids, "target_id")}

    def count_links(self, flow: str, kind: Kind, status: str | None = "active") -> int:
        """How many links (the denominator of the % safety rule): COUNT(*), no rows."""
        if self.engine is None:
            return 0

        t = schema.link
        cond = and_(t.c.flow == flow, t.c.kind == kind)
        if status is not None:
            cond = and_(cond, t.c.status == status)
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(t).where(cond)).scalar()
                       or 0)

    def disabled_links(self, flow: str, kind: Kind) -> dict[str, Link]:
        """Disabled links (candidates for the grace-period hard delete)."""
        ids = self.link_ids(flow, kind, status="disabled")
        return self.links(flow, kind, ids) if ids else {}

    def save_links(self, links: Sequence[Link]) -> None:
        if not links:
            return
        assert self.engine is not None and not self.readonly
        ts = now()
        self._upsert(schema.link, ["flow", "kind", "source_id"], [
            {
                "flow": lk.flow, "kind": lk.kind, "source_id": lk.source_id,
                "target_id": lk.target_id, "base": canonical_json(lk.base), "digest": lk.digest,
                "members": json.dumps(sorted(lk.members)) if lk.members is not None else None,
                "status": lk.status, "origin": lk.origin, "updated_at": ts,
                "status_at": lk.status_at,
            }
            for lk in links
        ])

    def drop_links(self, flow: str, kind: Kind, source_ids: Iterable[str]) -> None:
        ids = list(source_ids)
        if not ids:
            return
        assert self.engine is not None
        t = schema.link
        with self.engine.begin() as conn:
            for i in range(0, len(ids), 500):
                conn.execute(delete(t).where(and_(
                    t.c.flow == flow, t.c.kind == kind, t.c.source_id.in_(ids[i:i + 500]))))
