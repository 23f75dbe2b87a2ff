"""One object, end to end: `syncd explain` and `syncd run --only`.

Locates an object by name or anchor (the link table first, then the source through the
mapping's first match key, written back to its source attribute), then shows every stage a
cycle would take it through — the raw values the mapping and scope use (only those: never
password hashes or whatever else the bind account may read), mapped values per rule,
scope, the target object,
the link and its base, the plan for it and why — plus its recent history from the journal.
`run_one` applies that one-object plan right away (Entra's "provision on demand", in seconds),
through the same planner, safety check and apply as a full cycle; cursors do not move.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from syncd.config.flows import Config, Flow, KindFlow
from syncd.connector import Connector
from syncd.cycle.commit import check_apply_commit
from syncd.cycle.membership import with_membership
from syncd.cycle.read import claims
from syncd.cycle.ref_names import target_ids
from syncd.cycle.references import References
from syncd.cycle.render import shown
from syncd.cycle.result import Connectors, FlowResult, Options
from syncd.cycle.setup import for_target
from syncd.errors import SyncdError
from syncd.mapping.conditions import ConditionError
from syncd.mapping.rules import MappingError
from syncd.model import Entry, Kind, Value
from syncd.plan.push import Item, KindInput, plan_flow
from syncd.plan.value import Hold, Plan
from syncd.redact import mask_attributes, mask_value
from syncd.state.records import Link
from syncd.state.store import Store


@dataclass
class Located:
    kind: Kind
    kf: KindFlow
    source: Entry | None = None
    link: Link | None = None
    item: Item | None = None
    in_scope: bool = False
    #: Why it is out of scope: the condition it fails.
    out_of_scope: str | None = None
    mapping_error: str | None = None
    target: list[Entry] = field(default_factory=list)


def _find_link(store: Store, flow: Flow, kind: Kind, who: str) -> Link | None:
    links = store.links(flow.name, kind, [who])
    if links:
        return next(iter(links.values()))
    by_target = store.links(flow.name, kind, [who], by_target=True)
    if by_target:
        return next(iter(by_target.values()))
    for lk in store.links(flow.name, kind).values():
        if who.casefold() in {str(lk.base.get(k, "")).casefold()
                              for k in ("userName", "username", "userPrincipalName",
                                        "displayName", "displayname", "uid")}:
            return lk
    return None


def used_attributes(kf: KindFlow) -> list[str]:
    """The source attributes the flow's mapping and scope read: all a cycle fetches, and
    all explain fetches and shows (never "everything the entry has": a bind account that
    may read password hashes must not put them on a terminal or into a ticket)."""
    return sorted(kf.mapping.source_attributes() | kf.scope.source_attributes())


def _find(source: Connector, kind: Kind, attr: str, value: str,
          attributes: list[str]) -> list[Entry]:
    """`source.find`, limited to `attributes` where the connector's find takes them (an
    optional parameter: the protocol's find has none)."""
    try:
        takes = "attributes" in inspect.signature(source.find).parameters
    except (TypeError, ValueError):
        takes = False
    if takes:
        return list(source.find(kind, attr, value, attributes=attributes))  # type: ignore[call-arg]
    return source.find(kind, attr, value)


def _find_source(source: Connector, kf: KindFlow, who: str, link: Link | None,
                 anchor: str | None = None) -> Entry | None:
    """The source entry `who` names: through the match keys (written back to their source
    attributes), then — for an object never synced, known only by a held row's anchor, or
    named by its anchor or DN — by the connector's anchor attribute and the DN's first RDN."""
    reverse = kf.mapping.reverse()
    keys = [reverse[m][0] for m in kf.match if m in reverse]
    values = [who]
    if link is not None:
        values += [str(link.base[m]) for m in kf.match if link.base.get(m)]
    wanted = link.source_id if link is not None else anchor
    for attr in keys:
        for value in values:
            for e in _find(source, kf.kind, attr, value, used_attributes(kf)):
                if wanted is None or e.external_id == wanted:
                    return e
    return _by_anchor_or_dn(source, kf, who, wanted)


def _by_anchor_or_dn(source: Connector, kf: KindFlow, who: str, wanted: str | None
                     ) -> Entry | None:
    anchor_attr = getattr(getattr(source, "config", None), "anchor", None)
    tries: list[tuple[str, str]] = []
    if isinstance(anchor_attr, str):
        tries += [(anchor_attr, v) for v in dict.fromkeys(x for x in (wanted, who) if x)]
    rdn = who.split(",", 1)[0] if "=" in who and "," in who else ""
    if "=" in rdn:  # a DN: look its first RDN up, keep the entry whose DN it is
        tries.append(tuple(rdn.split("=", 1)))  # type: ignore[arg-type]
    for attr, value in tries:
        try:
            found = _find(source, kf.kind, attr.strip(), value.strip(), used_attributes(kf))
        except SyncdError:
            continue  # not an attribute this source can be searched by
        for e in found:
            if e.external_id in (wanted, who) or (e.name or "").casefold() == who.casefold():
                return e
    return None


def _held_anchor(store: Store, flow: Flow, kind: Kind, who: str) -> str | None:
    """A held or quarantined object that was never linked: its pending row names it."""
    for sid, p in store.pending(flow.name, kind).items():
        if who in (sid, p.name) or who.casefold() == p.name.casefold():
            return sid
    return None


def locate(flow: Flow, store: Store, source: Connector, target: Connector, who: str
           ) -> Located | None:
    for kf in flow.kinds:
        link = _find_link(store, flow, kf.kind, who)
        held = None if link is not None else _held_anchor(store, flow, kf.kind, who)
        entry = _find_source(source, kf, who, link, held)
        if entry is None and link is None:
            continue
        loc = Located(kf.kind, kf, entry, link)
        if entry is not None:
            try:
                loc.out_of_scope = kf.scope.failing(entry.raw)
            except ConditionError as exc:
                loc.out_of_scope = f"the scope cannot decide ({exc}): the entry is held"
            if loc.out_of_scope is None and kf.members_in is not None and \
                    entry.external_id not in kf.members_in:  # member_of, as a cycle decides
                loc.out_of_scope = kf.member_why
            loc.in_scope = loc.out_of_scope is None
            try:
                attrs: dict[str, Value] = kf.mapping.map(entry.raw)
                loc.mapping_error = kf.mapping.empty_identifier(kf.kind, attrs)
                if kf.kind == "user" and "active" not in kf.mapping.paths:
                    attrs["active"] = True
                loc.item = Item(entry.external_id, str(attrs.get(kf.match[0]) if kf.match
                                                       else entry.name) or entry.name,
                                attrs, entry.members, entry.members_added,
                                entry.members_removed, entry.modified)
            except MappingError as exc:
                loc.mapping_error = str(exc)
        key = kf.match[0] if kf.match else None
        value = (loc.item.attrs.get(key) if loc.item and key else None) or (
            link.base.get(key) if link and key else None)
        if key and value:
            loc.target = target.find(kf.kind, key, str(value))
        return loc
    return None


def resolve_references(flow: Flow, store: Store, source: Connector, target: Connector,
                       loc: Located) -> tuple[References, list[str]]:
    """As a cycle does before planning: the item's reference values (a manager's DN) become
    target ids through the source and the links, and the target object's values (as the
    target spells them) target ids too; otherwise the plan would show a bogus update of a
    DN against an id, and `run_one` would write a DN where an id belongs. Returns what is
    waiting ("pending until X is linked")."""
    refs = References(flow, store, source)
    if not refs.active:
        return refs, []
    if loc.item is not None:
        sid = loc.item.source_id
        loc.item = refs.resolve(loc.kind, {sid: loc.item})[sid]
    target_ids(target, refs.paths.get(loc.kind) or {}, loc.target)
    return refs, refs.notes()


def plan_one(flow: Flow, loc: Located, now: datetime, store: Store | None = None) -> Plan:
    kf = loc.kf
    sid = (loc.source.external_id if loc.source else loc.link.source_id  # type: ignore[union-attr]
           )
    items = {sid: loc.item} if loc.item is not None and loc.in_scope else {}
    links = {sid: loc.link} if loc.link is not None else {}
    cands = {}
    if loc.item is not None and loc.link is None:
        for key in kf.match:
            v = loc.item.attrs.get(key)
            if v:
                cands[(key, str(v).casefold())] = [
                    e for e in loc.target if str(e.attrs.get(key, "")).casefold()
                    == str(v).casefold()]
    gone = frozenset({sid}) if not items and links else frozenset()
    universe = None
    if kf.kind == "group" and store is not None and loc.item is not None:
        # As in a quiet cycle: members are restricted to the users the flow links; users
        # not linked yet are added by the run that creates them.
        named = set(loc.item.members or ()) | set(loc.link.members or () if loc.link else ())
        universe = frozenset(store.link_ids(flow.name, "user", among=named)) if named else (
            frozenset())
    # Candidates another entry owns are collisions, exactly as in a run (ownership).
    claimed = claims(store, flow.name, kf.kind, cands) if store is not None and cands else {}
    ki = KindInput(kf.kind, items, links, kf.match, kf.deprovision, kf.mapping.on_create_only,
                   cands, True, universe, full=False, gone_ids=gone,
                   delete_after=flow.delete_after, now=now, claimed=claimed,
                   left_scope={sid: loc.out_of_scope} if loc.out_of_scope else {},
                   disabled={sid: loc.link} if loc.link is not None
                   and loc.link.status != "active" else {})
    plan = plan_flow(flow.name, [ki])
    held = plan.held
    if loc.mapping_error:
        held += (Hold(kf.kind, sid, loc.source.name if loc.source else sid,
                      loc.mapping_error),)
    return Plan(plan.flow, plan.changes, held, plan.notes, plan.linked)


def explain(config: Config, flow_name: str, who: str) -> dict[str, Any]:
    flow = config.flows[flow_name]
    store = Store(config.state_url, readonly=True)
    conns = Connectors(config)
    try:
        source, target = conns.get(flow.source), conns.get(flow.target)
        flow = with_membership(for_target(flow, target), source)
        loc = locate(flow, store, source, target, who)
        if loc is None:
            raise SyncdError(f"{who!r}: not found in {flow.source} (match keys "
                             f"{', '.join(flow.kinds[0].match)}) nor among linked objects")
        refs, waiting_refs = resolve_references(flow, store, source, target, loc)
        plan = plan_one(flow, loc, datetime.now(UTC), store)
        sid = loc.source.external_id if loc.source else loc.link.source_id  # type: ignore[union-attr]
        waiting = store.pending(flow.name, loc.kind)
        pending = waiting.get(sid)
        # Other source entries held under the same name (a collision is two entries with
        # one identity): shown with this one, since a name cannot tell them apart.
        others = [{"source_id": o, "op": p.op, "error_class": p.error_class, "error": p.error,
                   "quarantined": p.quarantined}
                  for o, p in sorted(waiting.items()) if o != sid and who in (o, p.name)]
        return {
            "flow": flow.name, "kind": loc.kind, "source_id": sid,
            "source": None if loc.source is None else {
                "name": loc.source.name, "raw": _shown(loc.kf, loc.source.raw)},
            "in_scope": loc.in_scope, "out_of_scope": loc.out_of_scope,
            "mapping": {p: {"rule": e.rule, "result": mask_value(p, _j(e.result)),
                            "managed": e.managed,
                            "error": e.error}
                        for p, e in (loc.kf.mapping.explain(loc.source.raw).items()
                                     if loc.source else ())},
            "target": [{"id": e.external_id,
                        "attrs": mask_attributes({k: _j(v) for k, v in e.attrs.items()})}
                       for e in loc.target],
            "link": None if loc.link is None else {
                "target_id": loc.link.target_id, "status": loc.link.status,
                "origin": loc.link.origin,
                "base": mask_attributes({k: _j(v) for k, v in loc.link.base.items()}),
                "status_at": str(loc.link.status_at) if loc.link.status_at else None,
                "delete_at": _delete_at(flow, loc.link)},
            "plan": [shown(c) for c in plan.changes],
            #: reference values the plan holds (target ids) -> the objects' names; and
            #: the references left empty, with what they wait for
            "reference_names": refs.name_values(plan.changes) if refs.active else {},
            "references": waiting_refs,
            "held": [vars(h) for h in plan.held],
            "pending": None if pending is None else {
                "op": pending.op, "error_class": pending.error_class, "error": pending.error,
                "attempts": pending.attempts, "quarantined": pending.quarantined,
                "next_at": str(pending.next_at)},
            "same_name_held": others,
            "history": store.history(flow.name, sid),
        }
    finally:
        conns.close()
        store.close()


def run_one(config: Config, flow_name: str, who: str, *, dry_run: bool = False,
            allow_deletes: bool = False) -> FlowResult:
    flow = config.flows[flow_name]
    store = Store(config.state_url, readonly=dry_run)
    conns = Connectors(config)
    res = FlowResult(flow.name, dry_run)
    store.lock(flow.name)
    try:
        source, target = conns.get(flow.source), conns.get(flow.target)
        flow = with_membership(for_target(flow, target), source)
        loc = locate(flow, store, source, target, who)
        if loc is None:
            raise SyncdError(f"{who!r}: not found in {flow.source} nor among linked objects")
        refs, waiting_refs = resolve_references(flow, store, source, target, loc)
        plan = plan_one(flow, loc, datetime.now(UTC), store)
        plan = replace(plan, notes=plan.notes + tuple(waiting_refs))
        res.run_id = None if dry_run else store.start_run(flow.name)
        items = {loc.kind: {loc.item.source_id: loc.item}} if loc.item else {}
        check_apply_commit(flow, store, source, target, res, Options(allow_deletes), plan,
                            {}, [], items)
        if not dry_run and refs.active and res.result not in ("refused", "aborted"):
            # what the entry names, so a later cycle fills a pending reference (or clears it)
            refs.save({(f.change.kind, f.change.source_id) for f in res.failures})
        if refs.active and res.plan is not None:
            res.ref_names.update(refs.name_values(res.plan.changes))
        if res.run_id is not None:
            store.finish_run(res.run_id, res.result, {
                "plan": plan.summary(), "applied": res.applied, "failed": len(res.failures),
                "only": who}, "; ".join(res.errors) or None)
        return res
    finally:
        store.unlock(flow.name)
        conns.close()
        store.close()


def _delete_at(flow: Flow, link: Link) -> str | None:
    """When a disabled link's target object is hard-deleted (``delete_after``), if ever."""
    if link.status == "active" or flow.delete_after is None or link.status_at is None:
        return None
    at = link.status_at if link.status_at.tzinfo else link.status_at.replace(tzinfo=UTC)
    return (at + timedelta(seconds=flow.delete_after)).isoformat()


def _shown(kf: KindFlow, raw: Mapping[str, tuple[str, ...]]) -> dict[str, list[str]]:
    """The raw values explain shows: only what the mapping and scope use (whatever a
    connector returned beyond that stays out of the output)."""
    used = set(used_attributes(kf))
    return {k: list(v) for k, v in raw.items() if k.lower() in used}


def _j(v: Value) -> Any:
    return list(v) if isinstance(v, tuple) else v


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False, default=str)
