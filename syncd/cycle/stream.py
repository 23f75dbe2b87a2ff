"""Full reads of push flows, page by page: each page of users is planned while the next one
is read and, on an initial sync, applied at once.

Why: an initial sync or a reconcile of 100k users used to hold every mapped entry, every link
and every planned change at once (~370 MB) and wrote nothing before the whole directory had
been read. Here memory is one page, the planned changes and the ids seen so far.

What is decided page by page needs only the page: create, adopt (match candidates, claims
checked against the store), update, re-enable. What needs the whole read waits for its end:
deprovisioning (links whose entry was not seen), grace-period deletes and the groups (their
members are restricted to the users in scope).

When a page's changes are applied depends on what the safety check could refuse:

- **no links yet** (an initial sync): nothing can be deprovisioned, so the check cannot refuse
  anything; each page is applied while the next is read — the target is written while the
  source is still read, and a plan of 100k creates never exists in memory;
- **links exist** (a reconcile): the page's changes are collected and the whole plan is
  checked before anything is applied, as always. A wrong filter or base DN that would
  deprovision half the directory is refused *with* the creates and updates it brought.

A dry run plans exactly the same way and collects: the plan it shows is the plan a real run
checks (and, on an initial sync, applies page by page).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime

from syncd.config.flows import Flow, KindFlow
from syncd.connector import Connector
from syncd.cycle.absence import at_stake, confirm, link_name
from syncd.cycle.apply import Applier
from syncd.cycle.read import (
    FIND_LIMIT,
    Candidates,
    PagedRead,
    SourceRead,
    claims,
    found,
    target_index,
)
from syncd.cycle.retrying import hold_retries
from syncd.cycle.session import ApplyResult
from syncd.cycle.unique import UniqueValues
from syncd.cycle.write_back import _Outcome
from syncd.model import Kind
from syncd.plan.push import Item, KindInput, match_value, plan_page
from syncd.plan.value import Change, Hold
from syncd.spill import SpillMap
from syncd.state.records import Pending
from syncd.state.store import Store

log = logging.getLogger("syncd.cycle.stream")
#: Resolves the reference attributes of a page's items (`syncd.cycle.references`).
Resolve = Callable[[Kind, Mapping[str, Item]], dict[str, Item]]

#: Source entries planned together; the store is asked for these entries' links at once.
PAGE = 2000
#: Changes shown in the run's output; past this only their counts are kept (journal has all).
LIST_MAX = 500
#: Source names kept for rendering member changes; past this, the members the output shows
#: are named from their links (`commit.name_members`), else by id. Kept for every entry, a
#: million names cost ~190 MB.
NAMES_MAX = 5000

@dataclass
class Streamed:
    """What a streamed read left for the rest of the cycle."""

    #: The read's outcome (cursor, complete, seen, error); its items are not kept.
    read: SourceRead
    #: What is left to plan for this kind once everything was read: deprovisioning.
    tail: KindInput
    #: Source ids read and in scope (held ones included): group members are restricted to them.
    #: The read's own set, not a copy (a million ids are ~120 MB).
    universe: AbstractSet[str]
    result: ApplyResult
    #: The changes applied, while few enough to list; None past `LIST_MAX`.
    listed: list[Change] | None
    counts: dict[str, dict[str, int]]
    held: list[Hold]
    names: dict[str, str]
    #: Items of failed changes (pending retries keep their values).
    failed: dict[str, Item] = field(default_factory=dict)
    #: Applied changes of entries that had a pending retry (cleared when they succeeded).
    retried: list[Change] = field(default_factory=list)
    #: Planned, not applied (links existed): they join the plan that is checked and applied.
    collected: list[Change] = field(default_factory=list)
    #: The items of the collected changes (pending retries keep their values).
    items: dict[str, Item] = field(default_factory=dict)


class _Stream:
    def __init__(self, flow: Flow, kf: KindFlow, store: Store, target: Connector,
                 applier: Applier | None, pending: dict[str, Pending], apply_now: bool
                 ) -> None:
        self.flow, self.kf, self.kind, self.apply_now = flow, kf, kf.kind, apply_now
        self.store, self.target, self.applier, self.pending = store, target, applier, pending
        self.seen: set[str] = set()
        self.out_of_scope: set[str] = set()
        self.left_scope: dict[str, str] = {}  # of those, the scope condition each fails
        self.claimed: dict[str, str] = {}  # target ids adopted earlier in this read
        self.planned = SpillMap[int]()  # identifiers taken earlier in this read
        self.index: Candidates | None = None
        self.in_flight: dict[str, Item] = {}
        self.failed: dict[str, Item] = {}
        self.retried: list[Change] = []
        self.listed: list[Change] | None = []
        self.counts: dict[str, dict[str, int]] = {}
        self.held: list[Hold] = []
        self.names: dict[str, str] = {}
        self.creates: list[Change] = []  # a bulk request being filled (`Applier.tasks`)
        self.collected: list[Change] = []
        self.items: dict[str, Item] = {}
        self.resolve: Resolve | None = None
        self.unique = UniqueValues(flow, kf, store, target)  # values given across pages

    def take(self, page: SourceRead, now: datetime) -> None:
        """Note what a page read (seen, held) and hold back its entries in retry backoff."""
        self.seen |= set(page.items) | {h.source_id for h in page.held}
        self.out_of_scope |= page.gone  # read, and the flow's scope excludes it: proven
        self.left_scope.update(page.left_scope)
        self.held += page.held
        mine = {s: p for s, p in self.pending.items() if s in page.items}
        hold_retries(page, mine, now, self.held, self.kind)

    def page(self, page: SourceRead) -> list[list[Change]]:
        """Plan one page; the tasks to submit for it."""
        if self.resolve is not None:  # reference attributes hold target ids (cycle.references)
            page.items = self.resolve(self.kind, page.items)
        links = self.store.links(self.flow.name, self.kind, page.items) if page.items else {}
        unlinked = [it for sid, it in page.items.items() if sid not in links]
        cands = self._candidates(unlinked) if unlinked and self.kf.match else Candidates()
        if unlinked and self.unique.active:
            self.held += self.unique.assign(page.items, unlinked, cands)
        ki = KindInput(self.kind, page.items, links, self.kf.match, self.kf.deprovision,
                       self.kf.mapping.on_create_only, cands, full=False,
                       claimed={**self.claimed, **self._claims(cands, unlinked)},
                       planned=self.planned, lookup_errors=cands.errors)
        changes, held, _, planned = plan_page(ki)
        self.held += held
        self.planned.update(planned.items())  # what this page's creates and adoptions take
        for sid, it in page.items.items():
            if len(self.names) < NAMES_MAX:
                self.names[sid] = it.name
        for c in changes:
            if c.op == "adopt" and c.target_id:
                self.claimed[c.target_id] = c.source_id
        if not self.apply_now:
            self.collected += changes
            self.items.update((c.source_id, page.items[c.source_id]) for c in changes)
            return []
        assert self.applier is not None
        for c in changes:
            self.in_flight[c.source_id] = page.items[c.source_id]
            ops = self.counts.setdefault(c.kind, {})
            ops[c.op] = ops.get(c.op, 0) + 1
            if c.source_id in links:
                self.applier.links[self.kind][c.source_id] = links[c.source_id]
        if self.listed is not None:
            self.listed += changes
            if len(self.listed) > LIST_MAX:
                self.listed = None
        return self.applier.tasks(changes, carry=self.creates)

    def done(self, out: _Outcome) -> None:
        assert self.applier is not None
        sid = out.change.source_id
        item = self.in_flight.pop(sid, None)
        if out.error is not None and item is not None:
            self.failed[sid] = item
        if sid in self.pending:
            self.retried.append(out.change)
        self.applier.links[self.kind].pop(sid, None)

    def _candidates(self, unlinked: list[Item]) -> Candidates:
        """Many unlinked entries (an initial sync): list the target once for the whole read;
        a few: one `find` each, as an incremental cycle would."""
        if self.index is None and len(unlinked) > FIND_LIMIT:
            self.index = target_index(self.target, self.kind, self.kf.match)
            if not self.index.complete:
                log.warning("%s: the target's listing of %ss was incomplete: looking each "
                            "unlinked entry up instead", self.target.name, self.kind)
        if self.index is not None and self.index.complete:
            return self.index
        return found(self.target, self.kind, self.kf.match, unlinked)

    def _claims(self, cands: Candidates, unlinked: list[Item]) -> dict[str, str]:
        """Target ids among this page's candidates that some link (outside the page)
        already owns: never adopted twice."""
        mine = Candidates()
        for it in unlinked:
            for key in self.kf.match:
                mv = match_value(it.attrs.get(key))
                if mv is not None and (key, mv) in cands:
                    mine[(key, mv)] = cands[(key, mv)]
        return claims(self.store, self.flow.name, self.kind, mine)


def stream_kind(flow: Flow, kf: KindFlow, store: Store, source: Connector, target: Connector,
                applier: Applier | None, now: datetime, resolve: Resolve | None = None
                ) -> Streamed:
    """Read `kf.kind` in full from `source`, planning page by page; with an `applier` (not a
    dry run) and no links of this kind yet, each page is applied at once (module docstring).

    A run halted mid-read (Fatal error, stop request) leaves the read marked incomplete, so
    nothing unseen can be taken for gone.
    """
    kind = kf.kind
    linked_count = store.count_links(flow.name, kind)  # before this read adds any
    apply_now = applier is not None and store.count_links(flow.name, kind, status=None) == 0
    pending = store.pending(flow.name, kind)
    st = _Stream(flow, kf, store, target, applier, pending, apply_now)
    st.resolve = resolve
    reader = PagedRead(source, kf, None, PAGE)
    result = ApplyResult()
    if applier is None or not apply_now:  # collected: checked (or shown) as a whole first
        for page in reader.pages():
            st.take(page, now)
            st.page(page)
    else:
        applier.links = {"user": {}, "group": {}}
        with applier.session() as run:
            run.on_done = st.done
            for page in reader.pages():
                st.take(page, now)
                if not all(run.submit(task) for task in st.page(page)):
                    break
            else:
                all(run.submit(task) for task in applier.tasks(st.creates))
        result = run.result
    out = reader.outcome
    if result.fatal is not None or result.stopped:
        out.complete = False
    gone = store.link_ids(flow.name, kind, status=None, unseen=st.seen)
    if out.complete:  # absence is not proof: what the listing missed is confirmed first
        missed = store.links(flow.name, kind, gone - st.out_of_scope)
        unseen = at_stake(missed, missed, kf.deprovision, flow.delete_after)
        ok, missing = confirm(source, kind, unseen, link_name(missed))
        st.held += missing
        out.missed = len(missing)
        gone -= unseen - ok
    disabled = {s: lk for s, lk in store.disabled_links(flow.name, kind).items()
                if s in gone}
    tail = KindInput(kind, {}, store.links(flow.name, kind, gone) if gone else {},
                     deprovision=kf.deprovision, complete=out.complete, full=True,
                     linked_count=linked_count, disabled=disabled,
                     delete_after=flow.delete_after, now=now,
                     left_scope={s: st.left_scope[s] for s in gone if s in st.left_scope})
    log.debug("%s: read %d entries in pages, %d changes applied, %d collected, %d not seen",
              kind, out.seen, sum(sum(v.values()) for v in st.counts.values()),
              len(st.collected), len(gone))
    return Streamed(out, tail, st.seen, result, st.listed, st.counts, st.held,
                    st.names, st.failed, st.retried, st.collected, st.items)
