"""The pure core: mapped source entries + links + match candidates in, `Plan` out.

No I/O happens here, so every decision (adopt or create, update which attributes, deprovision
or hold back) is unit-testable and a dry run is exactly the plan a real run would apply.

Decisions, per kind:
 - linked entry: compare the mapped values with the link's base (last agreed values); only
   differing attributes are updated. Attributes mapped ``apply = "on_create"`` are never updated.
 - unlinked entry: try the flow's match keys in order against the target; exactly one unlinked
   candidate -> adopt; several -> hold (never guess); none on every key -> create.
 - link whose source entry is gone (or left the scope): deprovision per policy, but only when
   the source read was complete; an incomplete read plans no deprovisioning at all.
 - groups: member add/remove from the source membership (restricted to in-scope users)
   against the members recorded in the base. Members syncd did not add are never removed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime

from syncd.model import Attrs, Entry, Kind, digest
from syncd.plan.compare import diff as diff  # re-exported: callers import them from here
from syncd.plan.compare import match_value as match_value
from syncd.plan.compare import same as same
from syncd.plan.follow import follow_members as follow_members  # re-exported
from syncd.plan.identities import Planned
from syncd.plan.identities import identities as identities  # re-exported
from syncd.plan.identities import label as label
from syncd.plan.nesting import GROUP_MEMBER
from syncd.plan.value import Change, Hold, Plan, base_name
from syncd.state.records import Link


@dataclass(frozen=True, slots=True)
class Item:
    """A source entry after scope and mapping."""

    source_id: str
    name: str
    attrs: Attrs
    members: frozenset[str] | None = None
    #: Incremental membership (Graph members@delta) when the full set is unknown.
    members_added: frozenset[str] | None = None
    members_removed: frozenset[str] | None = None
    #: Change timestamp (ISO-8601) for the ``newest`` conflict rule.
    modified: str | None = None
    #: The raw attributes a ``unique`` rule reads, kept only when the flow has one: the
    #: engine walks the candidates when this entry is about to be created (cycle.unique).
    unique_raw: Mapping[str, tuple[str, ...]] | None = None


@dataclass(frozen=True)
class KindInput:
    kind: Kind
    items: Mapping[str, Item]
    links: Mapping[str, Link]
    match: tuple[str, ...] = ()
    deprovision: str = "disable"
    on_create_only: frozenset[str] = frozenset()
    #: (match path, match_value(v)) -> target entries with that value.
    candidates: Mapping[tuple[str, str], Sequence[Entry]] = field(default_factory=dict)
    complete: bool = True
    #: Source ids of in-scope users, to restrict group members (None: no restriction).
    member_universe: AbstractSet[str] | None = None
    #: False for an incremental read: absence means "unchanged", and only `gone_ids`
    #: (deleted at the source, or changed and now out of scope) are deprovisioned.
    full: bool = True
    gone_ids: frozenset[str] = frozenset()
    #: Target ids linked to some source entry (incremental runs load only a few links) ->
    #: that entry's source id or label, for the collision message.
    claimed: Mapping[str, str] = field(default_factory=dict)
    #: Identifiers already taken by creates and adoptions planned earlier in this read (a
    #: streamed read plans page by page): hash((key, casefolded value)) -> source id. A hash
    #: keeps 100k users' identifiers in ~20 MB; a (vanishingly rare) false match only holds.
    planned: Planned = field(default_factory=dict[int, str])
    #: Active links of this kind in total (the % safety rule); None: count `links`.
    linked_count: int | None = None
    #: Disabled links eligible for the grace-period hard delete (`delete_after`).
    disabled: Mapping[str, Link] = field(default_factory=dict)
    delete_after: float | None = None
    now: datetime | None = None
    #: Read but held back (mapping error, quarantine, backoff): still there, never "gone".
    held_ids: frozenset[str] = frozenset()
    #: Read but out of the flow's scope -> the condition they fail (for the plan's reason).
    left_scope: Mapping[str, str] = field(default_factory=dict)
    #: (match path, match_value) -> why the target refused that lookup: such an entry is
    #: held (creating without having looked is how duplicates happen), the rest goes on.
    lookup_errors: Mapping[tuple[str, str], str] = field(default_factory=dict)
    #: Said in the plan as they are (nested group cycles, `syncd.plan.nesting`).
    notes: tuple[str, ...] = ()


def plan_flow(flow: str, kinds: Sequence[KindInput]) -> Plan:
    changes: list[Change] = []
    held: list[Hold] = []
    notes: list[str] = []
    linked: dict[str, int] = {}
    for ki in kinds:
        c, h, n = plan_kind(ki)
        changes += c
        held += h
        notes += n
        linked[ki.kind] = (ki.linked_count if ki.linked_count is not None else
                           sum(1 for lk in ki.links.values() if lk.status == "active"))
    return Plan(flow, Plan.ordered(changes), tuple(held), tuple(notes), linked)


def plan_kind(ki: KindInput) -> tuple[list[Change], list[Hold], list[str]]:
    """The changes, holds and notes of one kind."""
    changes, held, notes, _planned = plan_page(ki)
    return changes, held, notes


def plan_page(ki: KindInput
              ) -> tuple[list[Change], list[Hold], list[str], dict[int, str]]:
    """`plan_kind`, and the identifiers its creates and adoptions take (as in
    `KindInput.planned`): a streamed read adds them to the next page's `planned` instead of
    working each create's identities out a second time."""
    changes: list[Change] = []
    held: list[Hold] = []
    notes: list[str] = list(ki.notes)
    claimed = {lk.target_id: lk.source_id for lk in ki.links.values()}
    claimed.update(ki.claimed)
    # this page's own identifiers; earlier pages' are looked up in `ki.planned` (a copy of
    # it per page made an initial sync of n users cost O(n^2 / page))
    planned: dict[int, str] = {}
    for sid, item in ki.items.items():
        link = ki.links.get(sid)
        if link is not None:
            changes += _linked(ki, item, link)
            continue
        change, hold = _unlinked(ki, item, claimed)
        ids = identities(ki.kind, ki.match, item.attrs) if hold is None else ()
        if hold is None:
            hold = _duplicate(ki, item, ids, planned, ki.planned)
        if hold is not None:
            held.append(hold)
            continue
        assert change is not None
        if change.target_id:
            claimed[change.target_id] = sid
        for ident in ids:
            planned[hash(ident)] = sid
        changes.append(change)
        if ki.kind == "group":
            add = _members(ki, item, None) or frozenset()
            if add:
                changes.append(Change("set_members", "group", sid, item.name,
                                      target_id=change.target_id, add=tuple(sorted(add)),
                                      reason="initial membership"))
    if ki.full:
        gone = [lk for sid, lk in ki.links.items()
                if sid not in ki.items and sid not in ki.held_ids]
    else:
        gone = [ki.links[sid] for sid in sorted(ki.gone_ids) if sid in ki.links]
    if not ki.complete:
        if gone or ki.full:
            notes.append(f"{ki.kind}s: source read incomplete: no deprovisioning this run"
                         + (f" ({len(gone)} linked {ki.kind}s not seen)" if gone else ""))
        return changes, held, notes, planned
    if ki.deprovision != "ignore":
        changes += [c for lk in gone if (c := _deprovision(ki, lk)) is not None]
    changes += _grace_deletes(ki, {c.source_id for c in changes})
    return changes, held, notes, planned


def _grace_deletes(ki: KindInput, planned: set[str]) -> list[Change]:
    """Disabled long enough (``delete_after``): now hard-delete. Re-appearing within the
    grace period re-enabled the same target object instead (see `_linked`)."""
    if ki.delete_after is None or ki.now is None or ki.deprovision != "disable":
        return []
    disabled = ki.disabled or {s: lk for s, lk in ki.links.items() if lk.status != "active"}
    out = []
    for sid, lk in sorted(disabled.items()):
        if sid in ki.items or sid in planned or sid in ki.held_ids or lk.status_at is None:
            continue
        if (ki.now - lk.status_at).total_seconds() >= ki.delete_after:
            name = base_name(lk.base, ki.kind, sid)
            out.append(Change("delete", ki.kind, sid, name, lk.target_id,
                              reason=f"disabled since {lk.status_at:%Y-%m-%d %H:%M}Z, "
                                     f"past delete_after"))
    return out


def _members(ki: KindInput, item: Item, link: Link | None) -> frozenset[str] | None:
    """The members the target should have, or None when this read says nothing about them."""
    if item.members is not None:
        members = item.members
    elif item.members_added is not None or item.members_removed is not None:
        base = link.members if link and link.members is not None else frozenset()
        members = (base | (item.members_added or frozenset())) - (
            item.members_removed or frozenset())
    else:
        return None
    if (universe := ki.member_universe) is not None:  # member groups: chosen upstream
        members = frozenset(m for m in members if m in universe or m.startswith(GROUP_MEMBER))
    return members


def _linked(ki: KindInput, item: Item, link: Link) -> list[Change]:
    out: list[Change] = []
    attrs = item.attrs
    # The digest decides; the base (decoded lazily by the store) is only read on a mismatch.
    back = link.status != "active"
    if back or digest(attrs) != link.digest:
        changed = diff(attrs, link.base, ki.on_create_only)
        # An entry read in scope again is active again even when none of its values differ
        # from the base: a deprovisioned group keeps its attributes (only its members are
        # emptied), so without this empty update its link stayed "disabled" while the group
        # was back -- then an incremental cycle left it out of the groups holding it
        # (`cycle.preserve`) or of its ancestors (`cycle.nesting`), which a full read would
        # not, and `delete_after` would delete it while it is in scope.
        if changed or back:
            before = {p: link.base.get(p) for p in changed}
            reason = "re-appeared in source" if link.status != "active" else "source changed"
            out.append(Change("update", ki.kind, item.source_id, item.name, link.target_id,
                              attrs=changed, before=before, base={**link.base, **changed},
                              reason=reason))
    want = _members(ki, item, link) if ki.kind == "group" else None
    if want is not None:
        have = link.members or frozenset()
        add, remove = want - have, have - want
        if add or remove:
            out.append(Change("set_members", "group", item.source_id, item.name,
                              link.target_id, add=tuple(sorted(add)),
                              remove=tuple(sorted(remove)), before={"members": len(have)},
                              reason="membership changed"))
    return out


def _duplicate(ki: KindInput, item: Item, ids: Sequence[tuple[str, str]],
               mine: dict[int, str], earlier: Planned) -> Hold | None:
    """A second entry of this plan with an identifier (`ids`: the entry's `identities`)
    another one already takes (planned on this page, or on an `earlier` one): both would
    become one account on the target (409, then adoption of the first one's object)."""
    for key, mv in ids:
        h = hash((key, mv))
        other = mine.get(h) or earlier.get(h)
        if other is not None:
            me = label(item.source_id, item.attrs, item.name)
            return Hold(ki.kind, item.source_id, item.name,
                        f"collision: {key} {mv!r} (compared case-insensitively) is also "
                        f"planned for source entry {other} in this run; {me} is held, "
                        f"nothing is written for it", code="collision")
    return None


def _unlinked(
    ki: KindInput, item: Item, claimed: Mapping[str, str]
) -> tuple[Change | None, Hold | None]:
    for key in ki.match:
        mv = match_value(item.attrs.get(key))
        if mv is None:
            continue
        if (key, mv) in ki.lookup_errors:
            return None, Hold(ki.kind, item.source_id, item.name,
                              f"could not look for an existing target object with "
                              f"{key}={item.attrs.get(key)!r}: {ki.lookup_errors[(key, mv)]}; "
                              f"not adopting, not creating")
        every = ki.candidates.get((key, mv), ())
        found = [e for e in every if e.external_id not in claimed]
        if every and not found:
            owner = every[0].external_id
            lk = ki.links.get(claimed[owner])  # decoded only here: a collision is rare
            other = label(lk.source_id, lk.base) if lk is not None else claimed[owner]
            return None, Hold(ki.kind, item.source_id, item.name,
                              f"collision: {key}={item.attrs.get(key)!r} matches target object "
                              f"{owner}, which is linked to source entry {other}"
                              f"; {label(item.source_id, item.attrs, item.name)} is held: "
                              f"not adopted, not created, nothing written for it",
                              code="collision")
        if len(found) > 1:
            ids = ", ".join(sorted(e.external_id for e in found))
            return None, Hold(ki.kind, item.source_id, item.name,
                              f"ambiguous match on {key}={item.attrs.get(key)!r}: "
                              f"{len(found)} target objects ({ids}); not adopting, not creating")
        if len(found) == 1:
            target = found[0]
            # Adopting is not creating: an on_create value (an initial password, a unique
            # name) is not forced onto an account that already exists; its own is recorded.
            changed = diff(item.attrs, target.attrs, ki.on_create_only)
            before = {p: target.attrs.get(p) for p in changed}
            base = {**item.attrs, **{p: target.attrs.get(p) for p in ki.on_create_only
                                     if p in item.attrs}}
            return Change("adopt", ki.kind, item.source_id, item.name, target.external_id,
                          attrs=changed, before=before, base=base,
                          reason=f"matched existing target object on {key}"), None
    # Creates share the item's (never mutated) attrs instead of copying them twice: an
    # initial sync plans one create per source entry, and 2 x 100k dicts are ~150 MB.
    attrs = item.attrs
    create_attrs = (attrs if None not in attrs.values() else
                    {p: v for p, v in attrs.items() if v is not None})
    return Change("create", ki.kind, item.source_id, item.name, attrs=create_attrs,
                  base=attrs, reason="not on target"), None


def why_gone(ki: KindInput, source_id: str) -> str:
    """What a person reviewing the plan needs to tell a filter mistake from a real leaver."""
    condition = ki.left_scope.get(source_id)
    if condition is not None:
        return f"left the scope: {condition}"
    if ki.full:
        return "no longer in the source (a direct lookup confirmed it)"
    return "deleted in the source, or moved out of the connector's base or filter"


def _deprovision(ki: KindInput, link: Link) -> Change | None:
    name = base_name(link.base, ki.kind, link.source_id)
    why = why_gone(ki, link.source_id)
    if ki.deprovision == "delete":
        return Change("delete", ki.kind, link.source_id, name, link.target_id, reason=why)
    if link.status != "active":
        return None  # already disabled
    if ki.kind == "group":
        members = tuple(sorted(link.members or ()))
        return Change("deprovision", "group", link.source_id, name, link.target_id,
                      remove=members, base=dict(link.base),
                      reason=f"{why}; the members syncd added are removed")
    return Change("deprovision", ki.kind, link.source_id, name, link.target_id,
                  attrs={"active": False}, before={"active": link.base.get("active", True)},
                  base={**link.base, "active": False}, reason=why)
