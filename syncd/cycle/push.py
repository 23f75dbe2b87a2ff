"""One push cycle (source -> target): read each kind (users first: groups restrict their
members to users in scope), confirm absences, find match candidates, plan, then the shared
check/apply/commit tail. A full read of users is planned page by page (`stream`): an initial
sync applies each page while the next is read."""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import replace
from datetime import UTC, datetime

from syncd.config.flows import Flow
from syncd.cycle.absence import at_stake, confirm, link_name
from syncd.cycle.apply import Applier
from syncd.cycle.commit import check_apply_commit, target_stats
from syncd.cycle.membership import with_membership
from syncd.cycle.nesting import flatten_read
from syncd.cycle.read import (
    Candidates,
    SourceRead,
    add_groups_naming,
    candidates,
    claims,
    entering,
    read_source,
)
from syncd.cycle.ref_names import target_ids
from syncd.cycle.references import References, follow_references
from syncd.cycle.result import Connectors, FlowResult, Options
from syncd.cycle.retrying import hold_retries, record_outcomes
from syncd.cycle.setup import for_target, use_cursor
from syncd.cycle.stream import Streamed, stream_kind
from syncd.cycle.unique import UniqueValues
from syncd.model import Kind
from syncd.plan.push import Item, KindInput, follow_members, plan_flow
from syncd.plan.value import Hold, Plan
from syncd.state.records import Link
from syncd.state.store import Store


def push_cycle(flow: Flow, store: Store, connectors: Connectors, res: FlowResult,
           opts: Options) -> None:
    source = connectors.get(flow.source)
    target = connectors.get(flow.target)
    flow = with_membership(for_target(flow, target), source)  # member_of: this cycle's set
    now = datetime.now(UTC)
    inputs: list[KindInput] = []
    held: list[Hold] = []
    seen: dict[str, int] = {}
    cursors: dict[Kind, SourceRead] = {}
    items_by_kind: dict[Kind, dict[str, Item]] = {}
    user_read: SourceRead | None = None
    user_links: dict[str, Link] = {}
    applier = None if res.dry_run or opts.review else Applier(flow, target, store, res.run_id or "",
                                                opts.progress, opts.stop, source=source)
    streamed: Streamed | None = None
    refs = References(flow, store, source)
    for kf in flow.kinds:  # users first: groups restrict members to in-scope users
        stored = store.cursor(flow.name, flow.source, kf.kind)
        use = use_cursor(flow, stored, kf.kind, opts, now)
        for path in sorted(target.capabilities.unsupported(kf.kind, kf.mapping.paths)):
            res.warnings.append(f"{flow.target} does not support {kf.kind} attribute {path!r}: "
                                f"it is not sent")
        if kf.kind == "user" and use is None:
            streamed = stream_kind(flow, kf, store, source, target, applier, now,
                                   refs.resolve if refs.active else None)
            rd = cursors[kf.kind] = streamed.read
            _read_outcome(res, kf.kind, rd, use, seen)
            held += streamed.held
            inputs.append(streamed.tail)
            items_by_kind[kf.kind] = {**streamed.items, **streamed.failed}
            res.names.update(streamed.names)
            if not _merge_streamed(flow, store, res, streamed):
                res.target_stats = target_stats(target)
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
        flatten_read(flow, kf, store, source, rd)  # nested = "flatten" (cycle.nesting)
        if refs.active:
            rd.items = refs.resolve(kf.kind, rd.items)
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
        if refs.active:  # the target's reference names (LDAP DNs) -> ids, as planned
            target_ids(target, refs.paths.get(kf.kind) or {}, (e for es in cands.values()
                                                                for e in es))
        claimed = claims(store, flow.name, kf.kind, cands) if not rd.full else {}
        if unlinked and kf.mapping.unique_rules:  # before planning: creates carry the value
            chosen = UniqueValues(flow, kf, store, target).assign(rd.items, unlinked, cands)
            kind_held += chosen
            held += chosen
        universe: AbstractSet[str] | None = None
        if kf.kind == "group":
            universe = (streamed.universe if streamed is not None
                        else _universe(flow, store, user_read, rd, links))
            users = cursors.get("user")
            if universe is not None and users is not None and not users.trusted:
                # A user read that failed or missed objects proves nobody left: members
                # are only restricted to what is known (read or linked), never emptied.
                universe = universe | store.link_ids(flow.name, "user")
        inputs.append(KindInput(
            kf.kind, rd.items, links, kf.match, kf.deprovision, kf.mapping.on_create_only,
            cands, rd.complete, universe, full=rd.full, gone_ids=frozenset(rd.gone),
            claimed=claimed,
            linked_count=None if rd.full else store.count_links(flow.name, kf.kind),
            disabled={} if rd.full else store.disabled_links(flow.name, kf.kind),
            delete_after=flow.delete_after, now=now,
            held_ids=frozenset(h.source_id for h in kind_held if h.source_id in read_ids)
            | unconfirmed, lookup_errors=cands.errors, left_scope=rd.left_scope,
            notes=tuple(rd.notes)))
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
    plan = Plan(plan.flow, changes, plan.held + tuple(held),
                plan.notes + tuple(refs.notes()), plan.linked)
    shown = plan
    if streamed is not None and streamed.counts:  # pages applied while reading: report them
        shown = (replace(plan, changes=Plan.ordered([*streamed.listed, *plan.changes]))
                 if streamed.listed is not None else replace(plan, streamed=streamed.counts))
    # Groups are planned against the users read: an untrusted user read (failed, missed
    # objects) keeps the groups' cursor too, so their membership is planned again.
    users_ok = "user" not in cursors or cursors["user"].trusted
    saves = [(flow.source, k, rd.cursor, rd.full, rd.trusted and (k == "user" or users_ok))
             for k, rd in cursors.items()]
    check_apply_commit(flow, store, source, target, res, opts, plan, seen, saves,
                        items_by_kind, shown=shown, applier=applier)
    follow_references(refs, flow, store, target, res, opts, plan.changes)
    if refs.active and res.plan is not None:
        res.ref_names.update(refs.name_values(res.plan.changes))


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
