"""Cursors and pending retries: the store's memory of where each flow is and what failed.

A mixin of `syncd.store.Store` (kept apart to keep modules small). Cursors are saved only
after a flow applied cleanly; a failed change becomes a pending row with exponential backoff
and is quarantined after `MAX_ATTEMPTS`, visible in `syncd status`, until its source entry
changes or an operator releases it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from syncd.model import Kind, Value, attrs_from_json, canonical_json
from syncd.redact import redact
from syncd.tables import ConflictRow, CursorRow, PendingRow

MAX_ATTEMPTS = 5
BACKOFF_BASE = 60.0  # seconds: 1 min, 2, 4, 8 … capped
BACKOFF_CAP = 6 * 3600.0
#: Longest error text the store keeps (pending rows, journal changes, runs): a peer that
#: answers with a megabyte of HTML must not bloat the store or `syncd status`.
MAX_ERROR_CHARS = 2000


def cap_error(error: str | None, limit: int = MAX_ERROR_CHARS) -> str | None:
    """`error` without secrets (`syncd.redact`: the store is one of its choke points), cut
    to `limit` characters, saying that it was cut and how long it was."""
    if error is None:
        return None
    error = redact(error, limit=None)
    if len(error) <= limit:
        return error
    mark = f" … [truncated, {len(error)} characters]"
    return error[:max(0, limit - len(mark))] + mark


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(ts: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    return ts.replace(tzinfo=UTC) if ts is not None and ts.tzinfo is None else ts


def backoff(attempts: int, retry_after: float | None = None) -> float:
    delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempts - 1))
    return max(delay, retry_after or 0.0)


@dataclass(frozen=True)
class Pending:
    flow: str
    kind: Kind
    source_id: str
    name: str
    op: str
    attempts: int
    next_at: datetime
    error_class: str
    error: str
    quarantined: bool
    #: The mapped source values when the change failed (for incremental retries).
    attrs: dict[str, Value] | None
    members: frozenset[str] | None
    item_digest: str | None


@dataclass(frozen=True)
class Cursor:
    value: str | None
    full_at: datetime | None
    fingerprint: str | None = None


class StateMixin:
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

    # -- cursors ---------------------------------------------------------------------------
    def cursor(self, flow: str, connector: str, kind: Kind) -> Cursor:
        if self.engine is None:
            return Cursor(None, None)
        t = CursorRow.__table__  # type: ignore[attr-defined]
        q = select(t.c.value, t.c.full_at, t.c.fingerprint).where(and_(
            t.c.flow == flow, t.c.connector == connector, t.c.kind == kind))
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        if row is None:
            return Cursor(None, None)
        return Cursor(row.value, _aware(row.full_at), row.fingerprint)

    def save_cursor(self, flow: str, connector: str, kind: Kind, value: str | None,
                    *, full: bool, fingerprint: str | None = None) -> None:
        previous = self.cursor(flow, connector, kind)
        ts = _now()
        self._upsert(CursorRow.__table__, ["flow", "connector", "kind"], [{  # type: ignore[attr-defined]
            "flow": flow, "connector": connector, "kind": kind, "value": value,
            "full_at": ts if full else previous.full_at, "updated_at": ts,
            "fingerprint": fingerprint if full else previous.fingerprint}])

    def cursor_age(self, flow: str) -> float | None:
        """Seconds since the flow's oldest cursor moved (None: no cursor yet)."""
        if self.engine is None:
            return None
        t = CursorRow.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            oldest = conn.execute(select(func.min(t.c.updated_at)).where(
                t.c.flow == flow)).scalar()
        oldest = _aware(oldest)
        return None if oldest is None else (_now() - oldest).total_seconds()

    # -- pending retries -------------------------------------------------------------------
    def pending(self, flow: str, kind: Kind | None = None) -> dict[str, Pending]:
        if self.engine is None:
            return {}
        t = PendingRow.__table__  # type: ignore[attr-defined]
        cond = t.c.flow == flow if kind is None else and_(t.c.flow == flow, t.c.kind == kind)
        out: dict[str, Pending] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(select(t).where(cond)):
                item = json.loads(r.item) if r.item else None
                attrs = attrs_from_json(json.dumps(item["attrs"])) if item else None
                members = (frozenset(item["members"]) if item and item.get("members")
                           is not None else None)
                next_at = _aware(r.next_at)
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
        ts = _now()
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
                "quarantined": attempts >= MAX_ATTEMPTS, "item": item,
                "item_digest": f.get("item_digest"), "updated_at": ts})
        self._upsert(PendingRow.__table__, ["flow", "kind", "source_id"], rows)  # type: ignore[attr-defined]

    def clear_pending(self, flow: str, kind: Kind, source_ids: Sequence[str]) -> None:
        if not source_ids or self.engine is None:
            return
        t = PendingRow.__table__  # type: ignore[attr-defined]
        ids = list(source_ids)
        with self.engine.begin() as conn:
            for i in range(0, len(ids), 500):
                conn.execute(delete(t).where(and_(
                    t.c.flow == flow, t.c.kind == kind, t.c.source_id.in_(ids[i:i + 500]))))

    def release(self, flow: str, source_id: str | None = None) -> int:
        """Let quarantined changes be retried on the next run; returns how many."""
        assert self.engine is not None
        t = PendingRow.__table__  # type: ignore[attr-defined]
        cond = and_(t.c.flow == flow, t.c.quarantined.is_(True))
        if source_id is not None:
            cond = and_(cond, (t.c.source_id == source_id) | (t.c.name == source_id))
        with self.engine.begin() as conn:
            return int(conn.execute(t.update().where(cond).values(
                quarantined=False, attempts=0, next_at=_now())).rowcount or 0)

    def pending_counts(self, flow: str) -> dict[str, int]:
        """{"pending": n, "quarantined": m} for status and metrics."""
        rows = self.pending(flow).values()
        q = sum(1 for p in rows if p.quarantined)
        return {"pending": len(rows) - q, "quarantined": q}

    # -- conflicts (two-way, manual authority) ---------------------------------------------
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
                "detected_at": _now()})
        self._upsert(ConflictRow.__table__, ["flow", "kind", "source_id", "path"], rows)  # type: ignore[attr-defined]

    def conflicts(self, flow: str | None = None) -> list[dict[str, Any]]:
        if self.engine is None:
            return []
        t = ConflictRow.__table__  # type: ignore[attr-defined]
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
        t = ConflictRow.__table__  # type: ignore[attr-defined]
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
        t = ConflictRow.__table__  # type: ignore[attr-defined]
        with self.engine.begin() as conn:
            for sid, path in keys:
                conn.execute(delete(t).where(and_(t.c.flow == flow, t.c.kind == kind,
                                                  t.c.source_id == sid, t.c.path == path)))


def _j(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def _v(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v
