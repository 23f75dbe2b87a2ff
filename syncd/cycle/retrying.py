"""Pending retries: failed changes remembered with their source values, and held back.

A change that failed is retried by later cycles with backoff, and quarantined after too many
attempts until its source values change or `syncd release` frees it. This module is both
halves: `record_outcomes` after apply, `hold_retries` when the next read comes in.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from syncd.model import Kind, digest
from syncd.plan.push import Item
from syncd.plan.value import Change, Hold
from syncd.state.records import Pending

if TYPE_CHECKING:
    from syncd.config.flows import Flow
    from syncd.cycle.read import SourceRead
    from syncd.cycle.session import Failure
    from syncd.state.store import Store


def hold_retries(rd: SourceRead, pending: dict[str, Pending], now: datetime,
                 held: list[Hold], kind: Kind) -> None:
    """Apply the backoff and quarantine of earlier failures to this read.

    Quarantined entries are held until their source values change (the admin fixed them) or
    `syncd release` frees them; entries in backoff are held until their next attempt is due;
    due retries that an incremental read did not return are re-planned from the stored item.
    """
    for sid, p in pending.items():
        item = rd.items.get(sid)
        if item is not None and p.quarantined and digest(dict(item.attrs)) != p.item_digest:
            continue  # the source changed since it failed: try again
        if p.quarantined:
            rd.items.pop(sid, None)
            held.append(Hold(kind, sid, p.name, f"quarantined after {p.attempts} attempts "
                             f"({p.error_class}: {p.error}); `syncd release` retries it"))
            continue
        if p.next_at > now:
            rd.items.pop(sid, None)
            rd.gone.discard(sid)
            held.append(Hold(kind, sid, p.name, f"retry {p.attempts + 1} due at "
                             f"{p.next_at:%Y-%m-%d %H:%M:%S}Z after {p.error_class}: {p.error}"))
            continue
        if rd.full or item is not None or sid in rd.gone:
            continue
        if p.attrs is not None:
            rd.items[sid] = Item(sid, p.name, p.attrs, p.members)
        elif p.op in ("deprovision", "delete"):
            rd.gone.add(sid)


def record_outcomes(flow: Flow, store: Store, changes: Iterable[Change], failures: list[Failure],
              items: dict[Kind, dict[str, Item]]) -> None:
    """Failed changes become pending retries; the other `changes` clear theirs."""
    failed = {(f.change.kind, f.change.source_id) for f in failures}
    rows = []
    for f in failures:
        # Fatal and Unreachable say nothing about the object (the peer was down or refused
        # us): no backoff for it, the next run simply plans it again.
        if f.error_class in ("Fatal", "Unreachable") or not f.change.source_id:
            continue
        c = f.change
        item = items.get(c.kind, {}).get(c.source_id)
        rows.append({
            "kind": c.kind, "source_id": c.source_id, "name": c.name, "op": c.op,
            "error_class": f.error_class, "error": f.message,
            "attrs": dict(item.attrs) if item else None,
            "members": item.members if item else None,
            "item_digest": digest(dict(item.attrs)) if item else None,
            "retry_after": f.retry_after})
    store.record_failures(flow.name, rows)
    ok: dict[Kind, list[str]] = {"user": [], "group": []}
    for c in changes:
        if c.source_id and (c.kind, c.source_id) not in failed:
            ok[c.kind].append(c.source_id)
    for kind, ids in ok.items():
        store.clear_pending(flow.name, kind, ids)


def record_holds(flow: Flow, store: Store, held: Iterable[Hold],
                 items: dict[Kind, dict[str, Item]]) -> None:
    """Collisions become pending rows like a `Collision` failure: shown by `syncd status`
    and `syncd explain` between runs, retried with backoff (the other entry may be renamed
    meanwhile), quarantined when nothing changes."""
    rows = []
    for h in held:
        if h.code != "collision":
            continue
        item = items.get(h.kind, {}).get(h.source_id)
        rows.append({
            "kind": h.kind, "source_id": h.source_id, "name": h.name, "op": "create",
            "error_class": "Collision", "error": h.reason,
            "attrs": dict(item.attrs) if item else None,
            "members": item.members if item else None,
            "item_digest": digest(dict(item.attrs)) if item else None, "retry_after": None})
    store.record_failures(flow.name, rows)
