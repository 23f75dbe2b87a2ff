"""Two-way flows: the cursor of a side syncd just wrote, taken *after* its writes.

Why: a two-way cycle reads both sides, then writes to them. The cursor each read ended with
predates those writes, so the next cycle read back everything syncd had just written: after an
initial sync of 10,000 users the first incremental cycle listed all 10,000 SCIM users again
(54.8 s, nearly all of it the server answering a `meta.lastModified ge` listing page by page).

Why not simply ask the side for a fresh cursor after the writes: another writer may have
changed an object of that side while syncd was applying. A watermark taken after the writes
would skip that edit for good (until a full reconcile), and a two-way flow must never lose an
edit. A watermark feed cannot tell syncd's writes from someone else's without listing them
(a foreign edit of an object right after syncd wrote it changes no count), so the window is
listed once, here, while syncd still knows exactly what it wrote:

 - after a clean apply (the commit stored the read's cursors), each side syncd wrote in this
   cycle is read once more from the cursor its read ended with;
 - every object that listing returns changed after the read: it is an *echo* only when it
   holds exactly what its link now says both sides agreed on (every merged path per the
   merge's own comparison, and for groups the member set) — `syncd.plan.merge.is_echo`;
   a deleted object is an echo only when syncd deleted it (its link is gone or disabled);
 - all echoes: the listing's own cursor, after the writes, is stored, so the next cycle reads
   only what others changed after it;
 - anything else (a foreign edit, a foreign create or delete, an object the listing could not
   map): the cursor from before the writes stays stored and the next cycle reads the window
   and merges it as it always did (its echoes are suppressed there by the base). Nothing a
   listing shows is ever skipped, so an interleaved edit cannot be lost.

Flows whose references are resolved (names <-> ids) keep the pre-write cursor: their echo
would need the same resolution the cycle does, for little gain.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from syncd.config.flows import Flow, KindFlow
from syncd.connector import Connector
from syncd.cycle.read import read_source
from syncd.cycle.setup import fingerprint
from syncd.errors import Fatal, Retriable
from syncd.model import Batch, Entry, Kind
from syncd.plan.merge import is_echo, members_of
from syncd.plan.value import Change, Plan
from syncd.state.records import Link
from syncd.state.store import Store

log = logging.getLogger("syncd.twoway")


@dataclass(frozen=True)
class Written:
    """A side of a flow syncd wrote objects of `kind` to in this cycle, and the cursor the
    cycle's read of that side ended with (stored by the commit, before the writes)."""

    connector: str
    kind: Kind
    side: str  # "source" | "target"
    cursor: str


def written(plan: Plan, kind: Kind) -> tuple[bool, bool]:
    """(source written, target written) by the changes of `kind` in `plan`."""
    src = tgt = False
    for c in plan.changes:
        if c.kind != kind:
            continue
        s, t = _sides(c)
        src, tgt = src or s, tgt or t
    return src, tgt


def _sides(c: Change) -> tuple[bool, bool]:
    if c.op in ("create", "deprovision", "delete"):
        # a create on the source also sends the target what only the new entry can give
        return (True, c.op == "create") if c.side == "source" else (False, True)
    if c.op == "adopt":
        return bool(c.source_attrs), True
    if c.op == "set_members":
        return bool(c.source_add or c.source_remove), bool(c.add or c.remove)
    return bool(c.source_attrs), bool(c.attrs)


def catch_up(flow: Flow, store: Store, conn: Connector, w: Written,
             paths: tuple[str, ...]) -> bool:
    """Read side `w` from its pre-write cursor; store that read's cursor when everything it
    returned is syncd's own writes. True when the cursor moved past the writes."""
    kf = flow.kind(w.kind)
    assert kf is not None
    if w.side == "target":
        ok, cursor, why = _target(flow, store, conn, kf, w.cursor, paths)
    else:
        ok, cursor, why = _source(flow, store, conn, kf, w.cursor, paths)
    if not ok or cursor is None:
        log.info("%s: %s %ss keep the cursor from before this cycle's writes: %s",
                 flow.name, conn.name, w.kind, why or "no cursor")
        return False
    store.save_cursor(flow.name, conn.name, w.kind, cursor, full=False,
                      fingerprint=fingerprint(flow, w.kind))
    return True


Verdict = tuple[bool, str | None, str]


def _target(flow: Flow, store: Store, target: Connector, kf: KindFlow, cursor: str,
            paths: tuple[str, ...]) -> Verdict:
    """Batch by batch, never the whole window at once (after an initial sync it is every
    object the sync created), and stopping at the first object that is not an echo."""
    last: str | None = None
    try:
        for batch in target.read(kf.kind, cursor, None):
            if batch.full or not batch.complete:
                return False, None, "the listing was not a complete incremental one"
            last = batch.cursor or last
            why = _target_batch(flow, store, kf, batch, paths)
            if why:
                return False, None, why
    except (Fatal, Retriable) as exc:
        return False, None, f"reading {kf.kind}s from {target.name} failed: {exc}"
    return True, last, ""


def _target_batch(flow: Flow, store: Store, kf: KindFlow, batch: Batch,
                  paths: tuple[str, ...]) -> str:
    """Why this batch holds something syncd did not write ("" when all are echoes)."""
    ids = {e.external_id for e in batch.entries} | set(batch.deleted)
    links = {lk.target_id: lk for lk in store.links(flow.name, kf.kind, ids,
                                                     by_target=True).values()}
    for tid in batch.deleted:
        if _active(links.get(tid)):
            return f"{kf.kind} {tid} was deleted by another writer"
    users, inactive = (users_by_target(flow, store, batch.entries) if kf.kind == "group"
                       else ({}, frozenset()))
    for e in batch.entries:
        lk = links.get(e.external_id)
        if lk is None:
            return f"{kf.kind} {e.name or e.external_id} is not linked"
        members = None
        if e.members is not None:  # as the merge counts them; an unknown id is a change
            members = members_of(e.members, users, inactive, lk.members or frozenset()) | {
                "?" + m for m in e.members if m not in users}
        if not is_echo(paths, lk.base, e.attrs, lk.members, members):
            return f"{kf.kind} {e.name or e.external_id} changed since syncd wrote it"
    return ""


def _source(flow: Flow, store: Store, source: Connector, kf: KindFlow, cursor: str,
            paths: tuple[str, ...]) -> Verdict:
    rd = read_source(source, kf, cursor)
    if not rd.trusted or rd.full:
        return False, None, rd.error or "the listing was not an incremental one"
    if rd.held:
        return False, None, f"{len(rd.held)} {kf.kind}s could not be mapped"
    links = store.links(flow.name, kf.kind, set(rd.items) | rd.gone)
    for sid in rd.gone:
        if _active(links.get(sid)):
            return False, None, f"{kf.kind} {sid} left the source or its scope"
    for sid, it in rd.items.items():
        lk = links.get(sid)
        if lk is None:
            return False, None, f"{kf.kind} {it.name} is not linked"
        if it.members is None and (it.members_added or it.members_removed):
            return False, None, f"{kf.kind} {it.name}: member changes only"
        if not is_echo(paths, lk.base, it.attrs, lk.members, it.members, target=False):
            return False, None, f"{kf.kind} {it.name} changed since syncd wrote it"
    return True, rd.cursor, ""


def _active(lk: Link | None) -> bool:
    return lk is not None and lk.status == "active"


def users_by_target(flow: Flow, store: Store, entries: Iterable[Entry]
                    ) -> tuple[dict[str, str], frozenset[str]]:
    """Target user id -> source user id, for the members these target groups name; and the
    source ids among them whose link is not active (`syncd.plan.merge.members_of`)."""
    ids = {m for e in entries for m in (e.members or ())}
    if not ids:
        return {}, frozenset()
    links = store.links(flow.name, "user", ids, by_target=True).values()
    return ({lk.target_id: lk.source_id for lk in links},
            frozenset(lk.source_id for lk in links if lk.status != "active"))
