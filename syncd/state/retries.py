"""Pending retries: a failed change becomes a row with exponential backoff and is
quarantined after `MAX_ATTEMPTS`, visible in `syncd status`, until its source entry changes
or an operator releases it. A mixin of `Store`; the cycle's side is `syncd.cycle.retrying`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, delete, select

from syncd.model import Kind, attrs_from_json, canonical_json
from syncd.state import records, schema
from syncd.state.records import Pending, aware, backoff, cap_error, now
from syncd.state.tables import Rows


class RetriesMixin(Rows):
    def pending(self, flow: str, kind: Kind | None = None) -> dict[str, Pending]:
        if self.engine is None:
            return {}
        t = schema.pending
        cond = t.c.flow == flow if kind is None else and_(t.c.flow == flow, t.c.kind == kind)
        out: dict[str, Pending] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(select(t).where(cond)):
                item = json.loads(r.item) if r.item else None
                attrs = attrs_from_json(json.dumps(item["attrs"])) if item else None
                members = (frozenset(item["members"]) if item and item.get("members")
                           is not None else None)
                next_at = aware(r.next_at)
                assert next_at is not None
                out[r.source_id] = Pending(
                    r.flow, r.kind, r.source_id, r.name, r.op, r.attempts, next_at,
                    r.error_class, r.error, bool(r.quarantined), attrs, members, r.item_digest)
        return out

    def record_failures(self, flow: str, failures: Sequence[dict[str, Any]]) -> None:
        """`failures`: dicts with kind, source_id, name, op, error_class, error, attrs,
        members, item_digest, retry_after. Attempts accumulate across runs."""
        if not failures:
            return
        known = self.pending(flow)
        ts = now()
        rows = []
        for f in failures:
            prev = known.get(f["source_id"])
            attempts = (prev.attempts if prev else 0) + 1
            item = None
            if f.get("attrs") is not None:
                members = f.get("members")
                item = json.dumps({"attrs": json.loads(canonical_json(f["attrs"])),
                                   "members": sorted(members) if members is not None else None})
            rows.append({
                "flow": flow, "kind": f["kind"], "source_id": f["source_id"],
                "name": f.get("name", ""), "op": f["op"], "attempts": attempts,
                "next_at": ts + timedelta(seconds=backoff(attempts, f.get("retry_after"))),
                "error_class": f["error_class"], "error": cap_error(f["error"]),
                "quarantined": attempts >= records.MAX_ATTEMPTS, "item": item,
                "item_digest": f.get("item_digest"), "updated_at": ts})
        self._upsert(schema.pending, ["flow", "kind", "source_id"], rows)

    def clear_pending(self, flow: str, kind: Kind, source_ids: Sequence[str]) -> None:
        if not source_ids or self.engine is None:
            return
        t = schema.pending
        ids = list(source_ids)
        with self.engine.begin() as conn:
            for i in range(0, len(ids), 500):
                conn.execute(delete(t).where(and_(
                    t.c.flow == flow, t.c.kind == kind, t.c.source_id.in_(ids[i:i + 500]))))

    def release(self, flow: str, source_id: str | None = None) -> int:
        """Let quarantined changes be retried on the next run; returns how many."""
        assert self.engine is not None
        t = schema.pending
        cond = and_(t.c.flow == flow, t.c.quarantined.is_(True))
        if source_id is not None:
            cond = and_(cond, (t.c.source_id == source_id) | (t.c.name == source_id))
        with self.engine.begin() as conn:
            return int(conn.execute(t.update().where(cond).values(
                quarantined=False, attempts=0, next_at=now())).rowcount or 0)

    def pending_counts(self, flow: str) -> dict[str, int]:
        """{"pending": n, "quarantined": m} for status and metrics."""
        rows = self.pending(flow).values()
        q = sum(1 for p in rows if p.quarantined)
        return {"pending": len(rows) - q, "quarantined": q}
