"""Planning one cycle of a ``mode = "two_way"`` flow.

Both connectors are read (incrementally where a cursor exists). Unlinked source entries and
entries gone from the source go through the push planner (match, adopt, create, deprovision);
linked pairs go through the three-way merge of `syncd.plan.merge`; target objects nobody links go
to the source when ``create = "both"``. Apply and bookkeeping are shared with push flows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from syncd.config.flows import Flow, KindFlow
from syncd.connector import Connector
from syncd.cycle.absence import at_stake, confirm, gone, link_name
from syncd.cycle.apply import Applier
from syncd.cycle.catch_up import Written, catch_up, users_by_target, written
from syncd.cycle.commit import check_apply_commit, target_stats
from syncd.cycle.push import _merge_streamed as merge_streamed  # shared tail of streamed reads
from syncd.cycle.read import (
    Candidates,
    SourceRead,
    TargetRead,
    add_groups_naming,
    candidates,
    claims,
    entering,
    read_source,
    read_target,
)
from syncd.cycle.ref_names import SourceNames, target_ids
from syncd.cycle.references import References, follow_references
from syncd.cycle.result import Connectors, FlowResult, Options
from syncd.cycle.setup import for_target, use_cursor
from syncd.cycle.stream import Streamed
from syncd.cycle.two_way_stream import stream_initial, streams
from syncd.cycle.unique import UniqueValues
from syncd.model import Kind
from syncd.plan.merge import ConflictRecord, Rules, TwoWayInput, plan_linked, plan_target_only
from syncd.plan.push import KindInput, follow_members, match_value, plan_kind
from syncd.plan.references import reference_paths
from syncd.plan.value import Change, Hold, Plan
from syncd.state.records import Link
from syncd.state.store import Store

log = logging.getLogger("syncd.twoway")


@dataclass
class TwoWayPlan:
    plan: Plan
    source_reads: dict[Kind, SourceRead]
    target_reads: dict[Kind, TargetRead]
    conflicts: dict[Kind, list[ConflictRecord]]
    evaluated: dict[Kind, set[str]]
    seen: dict[str, int]
    errors: list[str]
    refs: References | None = None
    #: per kind, the paths the merge compares (what an echo must match: `catch_up`)
    paths: dict[Kind, tuple[str, ...]] = field(default_factory=dict)
    #: users of an initial sync, applied while read (`two_way_stream`)
    streamed: Streamed | None = None


def plan_two_way(flow: Flow, store: Store, source: Connector, target: Connector,
                 cursors: dict[tuple[str, Kind], str | None], now: datetime,
                 applier: Applier | None = None) -> TwoWayPlan:
    """With an `applier`, an initial sync of users is applied while it is read
    (`two_way_stream`); everything else is planned here and applied by the caller."""
    changes: list[Change] = []
    held: list[Hold] = []
    notes: list[str] = []
    out = TwoWayPlan(Plan(flow.name, ()), {}, {}, {}, {}, {}, [],
                     References(flow, store, source))
    assert out.refs is not None
    linked_count: dict[str, int] = {}
    user_links: dict[str, Link] = {}
    names = SourceNames(flow, store, source)  # references written back: the source's names
    for kf in flow.kinds:
        use = cursors.get((flow.source, kf.kind))
        if streams(flow, kf, store, applier, use, out.refs.active):
            assert applier is not None
            rules = _rules(flow, kf, source, target, store)
            out.paths[kf.kind] = rules.paths
            st, td, c, n = stream_initial(flow, kf, store, source, target, applier, now,
                                          rules, cursors.get((flow.target, kf.kind)))
            out.streamed = st
            out.source_reads[kf.kind], out.target_reads[kf.kind] = st.read, td
            out.errors += [e for e in (st.read.error, td.error) if e]
            out.seen[kf.kind] = st.read.seen
            out.conflicts[kf.kind], out.evaluated[kf.kind] = [], set()
            linked_count[kf.kind] = 0
            held += st.held
            changes += c
            notes += n
            continue
        rejoin: set[str] = set()
        if kf.kind == "group" and use is not None:  # as in push flows (cycle.push)
            users = out.source_reads.get("user")
            rejoin = entering(users, user_links)
            if (users is not None and users.full) or (
                    rejoin and not hasattr(source, "groups_naming")):
                use = None
        rd = read_source(source, kf, use)
        if rejoin and not rd.full:
            add_groups_naming(source, kf, rejoin, rd)
        if out.refs.active:  # source names -> target ids, as the target holds them
            rd.items = out.refs.resolve(kf.kind, rd.items)
        td = read_target(target, kf.kind, cursors.get((flow.target, kf.kind)))
        if out.refs.active:  # the target's names (LDAP DNs) -> its ids, as links hold them
            target_ids(target, out.refs.paths.get(kf.kind) or {}, td.entries.values())
        out.source_reads[kf.kind], out.target_reads[kf.kind] = rd, td
        out.errors += [e for e in (rd.error, td.error) if e]
        held += rd.held
        if rd.full:
            out.seen[kf.kind] = rd.seen
        rules = _rules(flow, kf, source, target, store)
        out.paths[kf.kind] = rules.paths
        links = _links(flow, store, kf.kind, rd, td, {sid for sid, _ in rules.resolutions}
                       | {sid for sid, _ in rules.open_conflicts})
        linked_count[kf.kind] = store.count_links(flow.name, kf.kind)  # COUNT(*), no ids
        if kf.kind == "user":
            user_links = links
        if rd.full and rd.complete:  # held back (mapping error) is not gone
            read = set(rd.items) | {h.source_id for h in rd.held}
            missed = {sid for sid in links if sid not in read and sid not in rd.gone}
            unseen = at_stake(links, missed, kf.deprovision, flow.delete_after)
            ok, missing = confirm(source, kf.kind, unseen, link_name(links))
            held += missing
            rd.missed = len(missing)
            rd.gone |= (missed - unseen) | ok
        target_gone: set[str] = set(td.gone)
        if td.full and td.complete:  # absence is not proof on the target side either
            by_target = {lk.target_id: lk for lk in links.values() if lk.status == "active"}
            missed = {t for t in by_target if t not in td.entries}
            ok, missing = confirm(target, kf.kind, missed, _by_target_name(by_target),
                                  side="target")
            held += [replace(h, source_id=by_target[h.source_id].source_id) for h in missing]
            td.missed = len(missing)
            target_gone |= ok
        elif td.complete:
            # An incremental target feed may not report deletes (SCIM watermarks): the pairs
            # the source changed are looked up before anything is written to them, so a
            # target object deleted meanwhile gets `reverse_deprovision`, not a 404.
            unread = {lk.target_id for sid, lk in links.items()
                      if sid in rd.items and lk.status == "active"
                      and lk.target_id not in td.entries and lk.target_id not in target_gone}
            if unread:
                target_gone |= gone(target, kf.kind, unread)[0]
        unlinked = {sid: it for sid, it in rd.items.items() if sid not in links}
        gone_links = {sid: lk for sid, lk in links.items() if sid in rd.gone}
        cands = _candidates(target, kf, unlinked, td)
        if unlinked and kf.mapping.unique_rules:
            held += UniqueValues(flow, kf, store, target).assign(
                unlinked, list(unlinked.values()), cands)
        push = KindInput(
            kf.kind, unlinked, gone_links, kf.match, kf.deprovision,
            kf.mapping.on_create_only, cands, rd.complete,
            None, full=False, gone_ids=frozenset(rd.gone),
            claimed={**claims(store, flow.name, kf.kind, cands),
                     **{lk.target_id: lk.source_id for lk in links.values()}},
            lookup_errors=cands.errors, left_scope=rd.left_scope)
        if flow.create == "none":
            push = KindInput(kf.kind, {}, gone_links, complete=rd.complete, full=False,
                             gone_ids=frozenset(rd.gone), deprovision=kf.deprovision,
                             left_scope=rd.left_scope)
        c, h, n = plan_kind(push)
        changes += c
        held += h
        notes += n
        member_ids, inactive = (users_by_target(flow, store, td.entries.values())
                                if kf.kind == "group" else ({}, frozenset()))
        ti = TwoWayInput(
            kf.kind, rules, links,
            {sid: it for sid, it in rd.items.items() if sid in links}, td.entries,
            frozenset(rd.gone), frozenset(target_gone), rd.complete, td.complete,
            kf.deprovision, frozenset(ch.target_id for ch in c if ch.target_id),
            member_ids, inactive,
            _member_universe(flow, store, rd, out.source_reads.get("user"), {
                ch.source_id for ch in changes if ch.kind == "user" and ch.side == "target"
                and ch.op in ("create", "adopt", "update")}) if kf.kind == "group" else None)
        c2, h2, conflicts = plan_linked(ti)
        back = {kf.kind: {p: a for p, (a, _) in rules.reverse.items()}}
        c2, n2 = names.translate(c2, back)
        notes += n2
        changes += c2
        held += h2
        out.conflicts[kf.kind] = conflicts
        # Objects evaluated this cycle: their conflicts not raised again are stale — also
        # those of objects leaving the flow (deleted at the source, or out of its scope).
        out.evaluated[kf.kind] = {ch.source_id for ch in c2} | set(ti.source) | {
            lk.source_id for lk in links.values() if lk.target_id in td.entries} | (
            set(rd.gone) & set(links))
        if td.complete:
            c3, n3 = plan_target_only(ti)
            c3, n4 = names.translate(c3, back)
            changes += c3
            notes += n4
            notes += n3
    notes += out.refs.notes()
    out.plan = Plan(flow.name, Plan.ordered(changes), tuple(held), tuple(notes), linked_count)
    return out


def _by_target_name(by_target: dict[str, Link]) -> Callable[[str], str]:
    """Names for target ids, decoded only for the few a confirmation holds."""
    def name(target_id: str) -> str:
        lk = by_target[target_id]
        return link_name({lk.source_id: lk})(lk.source_id)
    return name


def _links(flow: Flow, store: Store, kind: Kind, rd: SourceRead, td: TargetRead,
           also: set[str]) -> dict[str, Link]:
    if rd.full or td.full:
        return store.links(flow.name, kind)
    links = store.links(flow.name, kind, set(rd.items) | rd.gone | also)
    links.update(store.links(flow.name, kind, set(td.entries) | td.gone, by_target=True))
    return links


def _candidates(target: Connector, kf: KindFlow, unlinked: dict, td: TargetRead
                ) -> Candidates:
    """A full target read already holds every candidate: index it instead of asking."""
    if not unlinked or not kf.match:
        return Candidates()
    if td.full and td.complete:
        index = Candidates()
        for e in td.entries.values():
            for key in kf.match:
                mv = match_value(e.attrs.get(key))
                if mv is not None:
                    index.setdefault((key, mv), []).append(e)
        return index
    return candidates(target, kf.kind, kf.match, list(unlinked.values()))


def _rules(flow: Flow, kf: KindFlow, source: Connector, target: Connector, store: Store
           ) -> Rules:
    unsupported = target.capabilities.unsupported(kf.kind, kf.mapping.paths)
    paths = tuple(p for p in kf.mapping.paths
                  if p not in kf.mapping.on_create_only and p not in unsupported)
    # References are written back as the source's own names (`ref_names.SourceNames`);
    # a source that cannot name an anchor keeps them one-way (the source is their
    # authority): never a target id in a source's DN.
    refs = set() if SourceNames.writable(source) else set(reference_paths(kf.mapping))
    reverse = {p: r for p, r in kf.mapping.reverse().items() if p in paths and p not in refs}
    stored = [c for c in store.conflicts(flow.name) if c["kind"] == kf.kind]
    resolutions = {(c["source_id"], c["path"]): c["resolution"]
                   for c in stored if c["resolved"]}
    held = {(c["source_id"], c["path"]): (c["source_value"], c["target_value"])
            for c in stored if not c["resolved"]}
    # The implicit active=true of users (push semantics) is not merged in two-way flows:
    # not every side has it (LDAP), and disabling on either side is a deprovisioning matter.
    return Rules(paths, reverse, kf.authority, flow.authority, flow.tie_breaker, kf.merge,
                 flow.create, flow.reverse_deprovision, resolutions, held)


def _member_universe(flow: Flow, store: Store, groups: SourceRead,
                     users: SourceRead | None, live: set[str]) -> frozenset[str]:
    """Users a source group can name as members: active links among those its read names,
    plus users read in scope this cycle — but not those whose link is disabled, unless this
    plan provisions them again (`live`). A user syncd disabled on the source after the
    target deleted it is read again whenever it is edited; it has no target object left to
    be a member of, and naming it in a target group writes a deleted id there."""
    named = {m for it in groups.items.values() for m in (it.members or ())}
    if not named:
        return frozenset()
    read = named & set(users.items) if users is not None else set()
    if read - live:
        read -= store.link_ids(flow.name, "user", status="disabled", among=read - live)
    return frozenset(store.link_ids(flow.name, "user", among=named) | read)


def two_way_cycle(flow: Flow, store: Store, connectors: Connectors, res: FlowResult,
                   opts: Options) -> None:
    source = connectors.get(flow.source)
    target = connectors.get(flow.target)
    flow = for_target(flow, target)
    now = datetime.now(UTC)
    cursors: dict[tuple[str, Kind], str | None] = {}
    for kf in flow.kinds:
        for conn in (flow.source, flow.target):
            stored = store.cursor(flow.name, conn, kf.kind)
            cursors[(conn, kf.kind)] = use_cursor(flow, stored, kf.kind, opts, now)
    applier = None if res.dry_run or opts.review else Applier(
        flow, target, store, res.run_id or "", opts.progress, opts.stop, source=source)
    tw = plan_two_way(flow, store, source, target, cursors, now, applier)
    st = tw.streamed
    if st is not None:
        res.names.update(st.names)
        if not merge_streamed(flow, store, res, st):
            res.target_stats = target_stats(target)
            return
    if any(c.kind == "user" and c.source_id and (
            (c.op in ("deprovision", "delete", "create") and c.side == "target")
            or (c.op in ("deprovision", "delete") and c.side == "source"))
            for c in tw.plan.changes):
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
    shown = None
    if st is not None:
        items["user"] = {**st.items, **st.failed}
        if st.counts:  # pages applied while reading: report them
            shown = (replace(tw.plan, changes=Plan.ordered([*st.listed, *tw.plan.changes]))
                     if st.listed is not None else replace(tw.plan, streamed=st.counts))
    check_apply_commit(flow, store, source, target, res, opts, tw.plan, tw.seen, saves, items,
                       shown=shown, applier=applier)
    if tw.refs is not None:
        follow_references(tw.refs, flow, store, target, res, opts, tw.plan.changes)
        if tw.refs.active and res.plan is not None:
            res.ref_names.update(tw.refs.name_values(res.plan.changes))
    # the commit stores no cursor after a transient failure or an abort: neither does this
    clean = res.result != "aborted" and not any(f.retriable for f in res.failures)
    if clean and not res.dry_run and opts.review is None and not (tw.refs and tw.refs.active):
        _after_writes(flow, store, {flow.source: source, flow.target: target}, tw, saves)


def _after_writes(flow: Flow, store: Store, conns: dict[str, Connector], tw: TwoWayPlan,
                  saves: list[tuple[str, Kind, str | None, bool, bool]]) -> None:
    """Move the cursor of each side this cycle wrote past its writes (`catch_up`), where the
    commit stored the read's cursor (a clean apply)."""
    for conn, kind, value, _, ok in saves:
        if not ok or value is None or store.cursor(flow.name, conn, kind).value != value:
            continue
        src, tgt = written(tw.plan, kind)
        tgt = tgt or (kind == "user" and tw.streamed is not None and bool(tw.streamed.counts))
        side = "source" if conn == flow.source else "target"
        if (src if side == "source" else tgt):
            catch_up(flow, store, conns[conn], Written(conn, kind, side, value),
                     tw.paths[kind])

