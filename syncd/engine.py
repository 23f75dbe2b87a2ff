"""One sync cycle: read, scope, map, match, plan, check, apply, journal.

This is the imperative shell around the pure planner. Dry run is simply "stop before apply"
(and open the store read-only): the plan shown is the plan a real run would execute.
A full read of users is planned page by page (`syncd.stream`): an initial sync applies each
page while the next is read; every other run checks its whole plan before applying it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from syncd import registry
from syncd.absence import at_stake, confirm, link_name
from syncd.apply import Applier, Failure
from syncd.config import Config, Flow
from syncd.connector import Connector
from syncd.cycle2 import plan_two_way
from syncd.errors import ConnectorError, SafetyRefused
from syncd.log import context as log_context
from syncd.mapping import Mapping
from syncd.model import Kind
from syncd.pending import hold_retries, record_holds, record_outcomes
from syncd.plan import Hold, Plan
from syncd.planner import Item, KindInput, follow_members, plan_flow
from syncd.policy import check
from syncd.read import (
    Candidates,
    SourceRead,
    add_groups_naming,
    candidates,
    claims,
    entering,
    read_source,
)
from syncd.redact import redact
from syncd.store import Link, Store
from syncd.store_state import Cursor
from syncd.stream import Streamed, stream_kind

log = logging.getLogger("syncd.engine")


@dataclass
class FlowResult:
    flow: str
    dry_run: bool
    plan: Plan | None = None
    result: str = "ok"  # ok | failed | refused | aborted
    failures: list[Failure] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    applied: int = 0
    run_id: str | None = None
    duration: float = 0.0
    names: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: How each kind was read this run: "full" or "incremental".
    reads: dict[str, str] = field(default_factory=dict)
    #: Counters the target connector exposes as `stats` (e.g. {"http_429": 3}), for metrics.
    target_stats: dict[str, int] = field(default_factory=dict)


class Connectors:
    """Opens each configured connector once per cycle, shared by the flows that use it."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._open: dict[str, Connector] = {}

    def get(self, name: str) -> Connector:
        if name not in self._open:
            spec = self.config.connectors[name]
            cls = registry.load(spec.type)
            conn = cls(name, spec.config)  # type: ignore[call-arg]
            conn.open()
            self._open[name] = conn
        return self._open[name]

    def close(self) -> None:
        for c in self._open.values():
            try:
                c.close()
            except Exception:  # closing must never hide the run's real outcome
                log.debug("error closing %s", c.name, exc_info=True)
        self._open.clear()


def run(config: Config, *, flows: Sequence[str] | None = None, dry_run: bool = False,
        allow_deletes: bool = False, full: bool = False,
        progress: Callable[[str], None] | None = None,
        stop: threading.Event | None = None) -> list[FlowResult]:
    """Run flows once. Setting `stop` (SIGTERM in the daemon) lets the changes in flight
    finish and be recorded, submits no more, and ends the run as ``aborted``.
    `full` ignores stored cursors: a full read of every source (a reconcile)."""
    names = list(flows) if flows else list(config.flows)
    store = Store(config.state_url, readonly=dry_run)
    connectors = Connectors(config)
    try:
        return [run_flow(config.flows[n], store, connectors, dry_run=dry_run,
                         allow_deletes=allow_deletes, full=full, progress=progress, stop=stop)
                for n in names if stop is None or not stop.is_set()]
    finally:
        connectors.close()
        store.close()


def run_flow(flow: Flow, store: Store, connectors: Connectors, *, dry_run: bool,
             allow_deletes: bool = False, full: bool = False,
             progress: Callable[[str], None] | None = None,
             stop: threading.Event | None = None) -> FlowResult:
    started = time.monotonic()
    res = FlowResult(flow.name, dry_run)
    store.lock(flow.name)  # StoreLocked propagates: the caller reports it
    try:
        res.run_id = None if dry_run else store.start_run(flow.name)
        try:
            with log_context(run_id=res.run_id, flow=flow.name):
                cycle = _cycle_two_way if flow.mode == "two_way" else _cycle
                cycle(flow, store, connectors, res, Options(allow_deletes, full, progress, stop))
        except SafetyRefused as exc:
            res.result, res.refused = "refused", exc.reasons
        except ConnectorError as exc:
            res.result = "aborted"
            res.errors.append(f"{type(exc).__name__}: {exc}")
        except BaseException as exc:  # a bug must not leave the run journaled as "running"
            res.result = "failed"
            res.errors.append(redact(f"internal error: {type(exc).__name__}: {exc}"))
            raise
        finally:
            res.duration = time.monotonic() - started
            if res.run_id is not None:
                summary: dict[str, Any] = res.plan.summary() if res.plan is not None else {}
                error = redact("; ".join(res.errors + res.refused)) or None
                store.finish_run(res.run_id, res.result, {
                    "plan": summary, "applied": res.applied, "failed": len(res.failures),
                    "duration_s": round(res.duration, 3)}, error)
        log.debug("flow %s %s: %s applied, %s failed in %.2fs", flow.name, res.result,
                  res.applied, len(res.failures), res.duration,
                  extra={"run_id": res.run_id, "flow": flow.name})
    finally:
        store.unlock(flow.name)
    return res


@dataclass(frozen=True)
class Options:
    allow_deletes: bool = False
    full: bool = False
    progress: Callable[[str], None] | None = None
    stop: threading.Event | None = None


def fingerprint(flow: Flow, kind: Kind) -> str:
    """What a stored cursor was taken *for*: change the mapping, scope or match keys and
    entries the feed will never send again may now map differently -> read everything."""
    kf = flow.kind(kind)
    text = repr((flow.source, flow.target, flow.mode, kf))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _use_cursor(flow: Flow, stored: Cursor, kind: Kind, opts: Options, now: datetime
                ) -> str | None:
    if opts.full or stored.value is None or stored.fingerprint != fingerprint(flow, kind):
        return None
    if flow.full_reconcile is not None and (
            stored.full_at is None
            or (now - stored.full_at).total_seconds() >= flow.full_reconcile):
        return None
    return stored.value


def for_target(flow: Flow, target: Connector) -> Flow:
    """LDAP attribute names are case-insensitive and its entries come back lower-cased:
    lower-case the flow's canonical names once, so every comparison downstream agrees."""
    if not getattr(target.capabilities, "attribute_names_case_insensitive", False):
        return flow
    kinds = []
    for kf in flow.kinds:
        mapping = Mapping(tuple(replace(r, path=r.path.lower()) for r in kf.mapping.rules))
        kinds.append(replace(
            kf, mapping=mapping, match=tuple(m.lower() for m in kf.match),
            authority={k.lower(): v for k, v in kf.authority.items()},
            merge={k.lower(): v for k, v in kf.merge.items()}))
    return replace(flow, kinds=tuple(kinds))


def _cycle(flow: Flow, store: Store, connectors: Connectors, res: FlowResult,
           opts: Options) -> None:
    source = connectors.get(flow.source)
    target = connectors.get(flow.target)
    flow = for_target(flow, target)
    now = datetime.now(UTC)
    inputs: list[KindInput] = []
    held: list[Hold] = []
    seen: dict[str, int] = {}
    cursors: dict[Kind, SourceRead] = {}
    items_by_kind: dict[Kind, dict[str, Item]] = {}
    user_read: SourceRead | None = None
    user_links: dict[str, Link] = {}
    applier = None if res.dry_run else Applier(flow, target, store, res.run_id or "",
                                                opts.progress, opts.stop, source=source)
    streamed: Streamed | None = None
    for kf in flow.kinds:  # users first: groups restrict members to in-scope users
        stored = store.cursor(flow.name, flow.source, kf.kind)
        use = _use_cursor(flow, stored, kf.kind, opts, now)
        for path in sorted(set(kf.mapping.paths) & target.capabilities.unsupported(kf.kind)):
            res.warnings.append(f"{flow.target} does not support {kf.kind} attribute {path!r}: "
                                f"it is not sent")
        if kf.kind == "user" and use is None:
            streamed = stream_kind(flow, kf, store, source, target, applier, now)
            rd = cursors[kf.kind] = streamed.read
            _read_outcome(res, kf.kind, rd, use, seen)
            held += streamed.held
            inputs.append(streamed.tail)
            items_by_kind[kf.kind] = {**streamed.items, **streamed.failed}
            res.names.update(streamed.names)
            if not _merge_streamed(flow, store, res, streamed):
                res.target_stats = _stats(target)
                return
            continue
        rejoin: set[str] = set()
        if kf.kind == "group" and use is not None:
            # Groups are planned against the users read: every user read means every group
            # read, and users (back) in scope rejoin the unchanged groups that name them.
            rejoin = entering(cursors.get("user"), user_links)
            if ("user" in cursors and cursors["user"].full) or (
                    rejoin and not hasattr(source, "groups_naming")):
                use = None
        rd = cursors[kf.kind] = read_source(source, kf, use)
        if rejoin and not rd.full:
            add_groups_naming(source, kf, rejoin, rd)
        _read_outcome(res, kf.kind, rd, use, seen)
        read_ids = set(rd.items) | {h.source_id for h in rd.held}
        pending = store.pending(flow.name, kf.kind)
        kind_held = list(rd.held)
        hold_retries(rd, pending, now, kind_held, kf.kind)
        held += kind_held
        wanted = set(rd.items) | rd.gone
        links = store.links(flow.name, kf.kind, None if rd.full else wanted)
        unconfirmed: set[str] = set()
        if rd.full and rd.complete:  # absence is not proof: confirm before deprovisioning
            unseen = at_stake(links, set(links) - read_ids - rd.gone, kf.deprovision,
                              flow.delete_after)
            ok, missing = confirm(source, kf.kind, unseen, link_name(links))
            unconfirmed = unseen - ok
            rd.missed = len(unconfirmed)
            held += missing
        unlinked = [it for sid, it in rd.items.items() if sid not in links]
        cands = (candidates(target, kf.kind, kf.match, unlinked) if unlinked and kf.match
                 else Candidates())
        claimed = claims(store, flow.name, kf.kind, cands) if not rd.full else {}
        universe = None
        if kf.kind == "group":
            universe = (streamed.universe if streamed is not None
                        else _universe(flow, store, user_read, rd, links))
            users = cursors.get("user")
            if universe is not None and users is not None and not users.trusted:
                # A user read that failed or missed objects proves nobody left: members
                # are only restricted to what is known (read or linked), never emptied.
                universe |= store.link_ids(flow.name, "user")
        inputs.append(KindInput(
            kf.kind, rd.items, links, kf.match, kf.deprovision, kf.mapping.on_create_only,
            cands, rd.complete, universe, full=rd.full, gone_ids=frozenset(rd.gone),
            claimed=claimed,
            linked_count=None if rd.full else store.count_links(flow.name, kf.kind),
            disabled={} if rd.full else store.disabled_links(flow.name, kf.kind),
            delete_after=flow.delete_after, now=now,
            held_ids=frozenset(h.source_id for h in kind_held if h.source_id in read_ids)
            | unconfirmed, lookup_errors=cands.errors))
        items_by_kind[kf.kind] = rd.items
        if kf.kind == "user":
            user_read, user_links = rd, links
            res.names.update({sid: it.name for sid, it in rd.items.items()})
    plan = plan_flow(flow.name, inputs)
    changes = plan.changes
    if streamed is not None and streamed.collected:  # planned while reading, not applied
        changes = Plan.ordered([*streamed.collected, *changes])
    if any(c.kind == "user" and c.op in ("deprovision", "delete") for c in changes):
        changes = Plan.ordered(follow_members(changes, store.links(flow.name, "group")))
    plan = Plan(plan.flow, changes, plan.held + tuple(held), plan.notes, plan.linked)
    shown = plan
    if streamed is not None and streamed.counts:  # pages applied while reading: report them
        shown = (replace(plan, changes=Plan.ordered([*streamed.listed, *plan.changes]))
                 if streamed.listed is not None else replace(plan, streamed=streamed.counts))
    # Groups are planned against the users read: an untrusted user read (failed, missed
    # objects) keeps the groups' cursor too, so their membership is planned again.
    users_ok = "user" not in cursors or cursors["user"].trusted
    saves = [(flow.source, k, rd.cursor, rd.full, rd.trusted and (k == "user" or users_ok))
             for k, rd in cursors.items()]
    _check_apply_commit(flow, store, source, target, res, opts, plan, seen, saves,
                        items_by_kind, shown=shown, applier=applier)


def _stats(target: Connector) -> dict[str, int]:
    """The counters a target exposes as `stats` (e.g. {"http_429": 3}), for metrics."""
    return dict(getattr(target, "stats", {}) or {})


def _read_outcome(res: FlowResult, kind: Kind, rd: SourceRead, use: str | None,
                  seen: dict[str, int]) -> None:
    if rd.error:
        res.result = "failed"
        res.errors.append(rd.error)
    if rd.full and use is not None:
        res.warnings.append(f"{kind}s: the stored cursor was not accepted; "
                            f"this run read everything")
    res.reads[kind] = "full" if rd.full else "incremental"
    if rd.full:
        seen[kind] = rd.seen


def _merge_streamed(flow: Flow, store: Store, res: FlowResult, st: Streamed) -> bool:
    """Account for what a streamed read applied; False when the run must end here."""
    out = st.result
    res.applied += out.applied
    res.failures += out.failures
    record_outcomes(flow, store, st.retried, out.failures, {"user": st.failed})
    if out.fatal is None and not out.stopped:
        return True
    res.plan = Plan(flow.name, tuple(st.listed or ()), tuple(st.held),
                    streamed={} if st.listed is not None else st.counts)
    res.result = "aborted"
    res.errors.append(f"Fatal: {out.fatal}" if out.fatal else
                      "stopped before the plan was fully applied (shutdown requested)")
    return False


def _cycle_two_way(flow: Flow, store: Store, connectors: Connectors, res: FlowResult,
                   opts: Options) -> None:
    source = connectors.get(flow.source)
    target = connectors.get(flow.target)
    flow = for_target(flow, target)
    now = datetime.now(UTC)
    cursors: dict[tuple[str, Kind], str | None] = {}
    for kf in flow.kinds:
        for conn in (flow.source, flow.target):
            stored = store.cursor(flow.name, conn, kf.kind)
            cursors[(conn, kf.kind)] = _use_cursor(flow, stored, kf.kind, opts, now)
    tw = plan_two_way(flow, store, source, target, cursors, now)
    if any(c.kind == "user" and c.source_id and (
            (c.op in ("deprovision", "delete", "create") and c.side == "target")
            or (c.op == "delete" and c.side == "source")) for c in tw.plan.changes):
        tw.plan = replace(tw.plan, changes=Plan.ordered(follow_members(
            tw.plan.changes, store.links(flow.name, "group"))))
    if tw.errors:
        res.result = "failed"
        res.errors += tw.errors
    for kind, rd in tw.source_reads.items():
        res.reads[kind] = "full" if rd.full else "incremental"
        if kind == "user":
            res.names.update({sid: it.name for sid, it in rd.items.items()})
    saves = [(flow.source, k, rd.cursor, rd.full, rd.trusted) for k, rd in tw.source_reads.items()]
    saves += [(flow.target, k, td.cursor, td.full, td.trusted)
              for k, td in tw.target_reads.items()]
    if not res.dry_run:
        for kind, records in tw.conflicts.items():
            store.save_conflicts(flow.name, records)
            current = {(r.source_id, r.path) for r in records}
            stale = [(c["source_id"], c["path"]) for c in store.conflicts(flow.name)
                     if c["kind"] == kind and c["source_id"] in tw.evaluated[kind]
                     and (c["source_id"], c["path"]) not in current]
            store.clear_conflicts(flow.name, kind, stale)
    items = {k: rd.items for k, rd in tw.source_reads.items()}
    _check_apply_commit(flow, store, source, target, res, opts, tw.plan, tw.seen, saves, items)


def _check_apply_commit(flow: Flow, store: Store, source: Connector, target: Connector,
                        res: FlowResult, opts: Options, plan: Plan, seen: dict[str, int],
                        saves: list[tuple[str, Kind, str | None, bool, bool]],
                        items_by_kind: dict[Kind, dict[str, Item]], *,
                        shown: Plan | None = None, applier: Applier | None = None) -> None:
    """Shared tail: safety check, apply, pending bookkeeping, cursors (only when clean).

    `shown` is the plan reported (a streamed read's changes were applied already and only
    `plan`, what is left, is checked and applied here)."""
    res.plan = shown if shown is not None else plan
    check(plan, flow.safety, seen=seen, allow_deletes=opts.allow_deletes)
    if res.dry_run:
        return
    record_holds(flow, store, res.plan.held, items_by_kind)
    try:
        if plan.changes:
            assert res.run_id is not None
            applier = applier or Applier(flow, target, store, res.run_id, opts.progress,
                                         opts.stop, source=source)
            outcome = applier.apply(plan)
            res.applied += outcome.applied
            res.failures += outcome.failures
            record_outcomes(flow, store, plan.changes, outcome.failures, items_by_kind)
            if outcome.stopped:
                res.result = "aborted"
                res.errors.append("stopped before the plan was fully applied (shutdown "
                                  "requested)")
                return
            if outcome.fatal:
                res.result = "aborted"
                res.errors.append(f"Fatal: {outcome.fatal}")
                return
    finally:
        res.target_stats = _stats(target)
    if res.failures:
        res.result = "failed"
    if any(f.retriable for f in res.failures):
        res.warnings.append("cursors not advanced: some changes failed transiently and will "
                            "be read again")
        return
    for conn, kind, value, full, ok in saves:
        if ok:
            store.save_cursor(flow.name, conn, kind, value, full=full,
                              fingerprint=fingerprint(flow, kind))


def _universe(flow: Flow, store: Store, users: SourceRead | None, groups: SourceRead,
              links: dict[str, Link]) -> frozenset[str] | None:
    """In-scope users, to restrict group members: everything read (full) or the linked
    users plus this read's changes (incremental).

    The planner only ever intersects member sets with the universe, so an incremental run
    computes it among the users its groups can name (members read, members recorded in the
    links) instead of loading every linked user: a quiet cycle costs O(changes).
    """
    if users is None:
        return None
    if users.full:
        return frozenset(users.items)
    named: set[str] = set()
    for sid, it in groups.items.items():
        for ms in (it.members, it.members_added, it.members_removed):
            if ms:
                named.update(ms)
        lk = links.get(sid)
        if lk is not None and lk.members:
            named.update(lk.members)
    if not named:
        return frozenset()
    linked = store.link_ids(flow.name, "user", among=named)
    return frozenset((linked | (named & set(users.items))) - users.gone)
