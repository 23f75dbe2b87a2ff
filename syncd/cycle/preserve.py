"""Nested groups kept as they are (``nested = "preserve"``): a group's target members are its
in-scope direct users plus the target groups of its member groups that the flow syncs.

Where the target allows it (`Capabilities.group_members`: LDAP, a SCIM server whose /Schemas
let a Group's ``members`` name groups; refused with a clear error where it does not, e.g.
django-scim2-server, which drops such members silently).

How, without a second membership machinery: a member group is one more value in the group's
members, spelled ``group:<source id>`` (`syncd.plan.nesting.GROUP_MEMBER`). The planner diffs it
against the link's recorded members like a user; apply resolves it through the *group* links
and writes it with the target's `set_member_groups` (`send_members`). So the existing rules
hold as they are: members syncd did not add are never removed; a member whose object has no
link yet is left out of the recorded members and planned again.

Which member groups: those the flow syncs -- read in scope this cycle (or held), and, for an
incremental read, those with an active link or a pending retry. Ordering within one plan is
the stages': groups are created before memberships are set, so a group created in the same
plan as the group containing it is resolved when the membership is written. Deprovisioning
comes last, after the groups holding a leaving group dropped it.

Incremental equals full: a group's direct members change only when it changes (then it is
read), or when one of its member groups enters or leaves the flow's scope without the group
itself changing. For those, the groups holding them are found through the remembered graph
(`syncd.state.graph`, the reverse edges) and join the read as membership-only items with
their remembered direct members -- exactly what a full read would plan. Without an
established graph the read is done again in full first (`cycle.nesting`).

A cycle (A contains B contains A) is data the target can hold: it is written as it is and
said in the plan, naming the groups.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from syncd.config.flows import Flow
from syncd.connector import Connector
from syncd.errors import Fatal
from syncd.plan.nesting import EMPTY, Edges, closure, group_member, member_group_id
from syncd.plan.push import Item
from syncd.plan.value import base_name
from syncd.state import graph
from syncd.state.graph import Direct
from syncd.state.store import Store

if TYPE_CHECKING:
    from syncd.cycle.read import SourceRead


def check_target(flow: Flow, target: Connector) -> None:
    """Refuse the flow when it preserves nested groups and the target cannot hold them."""
    kf = flow.kind("group")
    if kf is None or kf.nested != "preserve":
        return
    if not getattr(target.capabilities, "group_members", False) or not hasattr(
            target, "set_member_groups"):
        raise Fatal(f"flow {flow.name}: groups.nested = \"preserve\" writes groups as members "
                    f"of groups, and {target.name} does not take them (a SCIM server must "
                    f"declare Group members of type Group in its /Schemas); use \"flatten\" "
                    f"(the users of nested groups) or \"direct\"", connector=target.name)


def send_members(target: Connector, group_id: str, add: Mapping[str, str],
                 remove: Mapping[str, str]) -> None:
    """Write a membership change: `add`/`remove` map member source ids (users, or
    ``group:<id>`` for member groups) to target ids. Users go through `set_members`, groups
    through `set_member_groups`. An error after the users were written carries them in
    ``members_done`` (with what the groups part reports), so the links record them."""
    def split(ms: Mapping[str, str], groups: bool) -> list[str]:
        return [t for s, t in ms.items() if (member_group_id(s) is not None) == groups]

    users_add, users_remove = split(add, False), split(remove, False)
    if users_add or users_remove:
        target.set_members(group_id, users_add, users_remove)
    groups_add, groups_remove = split(add, True), split(remove, True)
    if not groups_add and not groups_remove:
        return
    try:
        target.set_member_groups(group_id, groups_add,  # type: ignore[attr-defined]
                                 groups_remove)
    except Exception as exc:
        done = getattr(exc, "members_done", None) or ((), ())
        exc.members_done = ({*users_add, *done[0]},  # type: ignore[attr-defined]
                            {*users_remove, *done[1]})
        raise


def preserve_groups(flow: Flow, store: Store, rd: SourceRead, fresh: dict[str, Direct]
                    ) -> None:
    """Give every group of `rd` its users and in-scope member groups; incrementally, add the
    linked groups holding a group that entered or left the scope; remember the edges; note
    cycles. Mutates `rd` (module docstring). `fresh`: the direct edges this read saw."""
    held = {h.source_id for h in rd.held}
    deleted = {g for g in rd.gone if g not in fresh}
    extra: dict[str, Item] = {}
    edges = dict(fresh)
    if rd.full:
        graph.save(store, flow.name, fresh, complete_full=rd.complete and rd.error is None)
        synced = set(rd.items) | held
    else:
        graph.save(store, flow.name, fresh, deleted)
        pending = {s for s, p in store.pending(flow.name, "group").items()
                   if not p.quarantined}
        read = store.links(flow.name, "group", set(rd.items) | pending)
        entering = {s for s in set(rd.items) | pending
                    if (lk := read.get(s)) is None or lk.status != "active"}
        found = graph.parents(store, flow.name, (entering | rd.gone) - held)
        holders = {p for ps in found.values() for p in ps} - set(rd.items) - held - rd.gone
        edges.update({g: d for g, d in graph.edges(store, flow.name, holders).items()
                      if g not in edges})
        named = {m for g in set(rd.items) | holders for m in edges.get(g, (EMPTY, EMPTY))[1]}
        links = store.links(flow.name, "group", named | holders)
        active = {s for s, lk in links.items() if lk.status == "active"}
        synced = (set(rd.items) | held | pending | active) - rd.gone
        for sid in sorted(holders & active):
            lk = links[sid]
            name = base_name(lk.base, "group", sid)
            extra[sid] = Item(sid, name, {}, EMPTY)
    rd.items.update(extra)
    for sid, it in list(rd.items.items()):
        direct = edges.get(sid)
        if direct is None:
            continue
        users, groups = direct
        rd.items[sid] = replace(it, members=users | {group_member(g) for g in groups
                                                     if g in synced},
                                members_added=None, members_removed=None)
    rd.notes += cycle_notes(rd.items, edges, synced.__contains__)


def cycle_notes(items: Mapping[str, Item], edges: Mapping[str, Direct],
                synced: Callable[[str], bool]) -> list[str]:
    """Plan notes for cycles among the groups written as members of each other (those of
    this read and what it knows below them)."""
    sub = {g: Edges(EMPTY, frozenset(m for m in d[1] if synced(m)))
           for g, d in edges.items() if synced(g) or g in items}
    out = []
    for cycle in closure(sub, sorted(items)).cycles:
        shown = ", ".join(sorted((it.name if (it := items.get(g)) else g) for g in cycle))
        out.append(f"groups: group {shown} is a member of itself: written as it is"
                   if len(cycle) == 1 else
                   f"groups: nested groups form a cycle ({shown}): written as they are, "
                   f"each a member of the next")
    return out
