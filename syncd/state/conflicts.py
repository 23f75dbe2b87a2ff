"""Conflicts of two-way flows under ``manual`` authority: held, listed by `syncd conflicts`,
resolved by an operator; the next cycle applies the resolution. A mixin of `Store`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, delete, select

from syncd.model import Kind, Value
from syncd.state import schema
from syncd.state.records import now
from syncd.state.tables import Rows


class ConflictsMixin(Rows):
    def save_conflicts(self, flow: str, records: Sequence[Any]) -> None:
        """Upsert detected conflicts; an operator's pending resolution is kept."""
        if not records:
            return
        existing = {(c["kind"], c["source_id"], c["path"]): c for c in self.conflicts(flow)}
        rows = []
        for r in records:
            key = (r.kind, r.source_id, r.path)
            cid = hashlib.blake2b(f"{flow}\0{r.kind}\0{r.source_id}\0{r.path}".encode(),
                                  digest_size=4).hexdigest()
            prev = existing.get(key)
            rows.append({
                "flow": flow, "kind": r.kind, "source_id": r.source_id, "path": r.path,
                "id": cid, "name": r.name, "source_value": json.dumps(_j(r.source_value)),
                "target_value": json.dumps(_j(r.target_value)),
                "base_value": json.dumps(_j(r.base_value)),
                "resolution": json.dumps(_j(prev["resolution"]))
                if prev and prev["resolution"] is not None else None,
                "detected_at": now()})
        self._upsert(schema.conflict, ["flow", "kind", "source_id", "path"], rows)

    def conflicts(self, flow: str | None = None) -> list[dict[str, Any]]:
        if self.engine is None:
            return []
        t = schema.conflict
        q = select(t) if flow is None else select(t).where(t.c.flow == flow)
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(q.order_by(t.c.detected_at))]
        for r in rows:
            for k in ("source_value", "target_value", "base_value"):
                r[k] = _v(json.loads(r[k]))
            # Resolved is "a resolution was stored", not "it is not None": an operator may
            # settle a conflict on an empty value (JSON null), and that must be applied too.
            r["resolved"] = r["resolution"] is not None
            r["resolution"] = (_v(json.loads(r["resolution"])) if r["resolution"] is not None
                               else None)
        return rows

    def resolve_conflict(self, conflict_id: str, value: Value) -> dict[str, Any] | None:
        assert self.engine is not None
        t = schema.conflict
        with self.engine.begin() as conn:
            n = conn.execute(t.update().where(t.c.id == conflict_id).values(
                resolution=json.dumps(_j(value)))).rowcount
        if not n:
            return None
        return next(c for c in self.conflicts() if c["id"] == conflict_id)

    def clear_conflicts(self, flow: str, kind: Kind, keys: Sequence[tuple[str, str]]) -> None:
        """Drop conflicts (source_id, path) that were settled or no longer exist."""
        if not keys or self.engine is None:
            return
        t = schema.conflict
        with self.engine.begin() as conn:
            for sid, path in keys:
                conn.execute(delete(t).where(and_(t.c.flow == flow, t.c.kind == kind,
                                                  t.c.source_id == sid, t.c.path == path)))


def _j(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def _v(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v
