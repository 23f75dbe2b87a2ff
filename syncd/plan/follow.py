"""Membership follows the users: the group side of a plan that deprovisions, deletes or
recreates users (push and two-way flows alike).

Split from `syncd.plan.push` (re-exported there) because the two-way cases grew it: a user
leaving in a cycle is removed from the groups that held it, and a member added to it in that
same cycle (on either side) goes to neither side. Pure: changes and group links in, changes
out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from syncd.plan.value import Change, base_name
from syncd.state.records import Link


def follow_members(changes: Sequence[Change], groups: Mapping[str, Link]) -> list[Change]:
    """Membership follows the users: a user this plan deprovisions or deletes is removed from
    every group syncd manages in the same run (stage 2, while its link still resolves), not
    left there until a full reconcile — or for ever, once a delete dropped its link.

    `groups`: group links that may name those users; returns `changes` with the removals
    merged into the groups' membership changes (or new ones)."""
    leaving = {c.source_id for c in changes
               if c.kind == "user" and c.op in ("deprovision", "delete") and c.side == "target"}
    # Users created again on the target (two-way ``reverse_deprovision = "recreate"``) get a
    # new target id: the groups that recorded them need them added back under it.
    returning = {c.source_id for c in changes
                 if c.kind == "user" and c.op == "create" and c.side == "target"}
    # Users syncd deletes on the source (two-way ``reverse_deprovision = "delete"``) leave
    # the groups on both sides in the same cycle: a directory without referential integrity
    # would keep naming them, and the next cycle would clean up what this one should have.
    erased = {c.source_id for c in changes
              if c.kind == "user" and c.op == "delete" and c.side == "source"}
    deprovisioned = set(leaving)  # on the target, by this plan
    leaving |= erased
    # Users syncd disables on the source because the target deleted them (two-way
    # ``reverse_deprovision = "disable"``): no target object is left to name, so a member
    # added to them since the last cycle is not sent to the target (a deleted id there).
    withdrawn = {c.source_id for c in changes
                 if c.kind == "user" and c.op == "deprovision" and c.side == "source"}
    if not leaving and not returning and not withdrawn:
        return list(changes)
    out = list(changes)
    ending = {c.source_id for c in out if c.kind == "group" and c.op in ("deprovision", "delete")}
    out_of_flow = leaving | withdrawn
    for n, c in enumerate(out):
        if c.kind != "group":
            continue
        late = (set(c.add) | set(c.source_add)) & out_of_flow
        # A group created on the target, written to the source with its members: not with
        # a user the source deleted (or that this plan takes out of the flow otherwise).
        if c.op == "create" and c.side == "source" and late:
            out[n] = replace(c, source_add=tuple(a for a in c.source_add if a not in late))
        # Members this plan would add who leave in it: the first members of a group it
        # creates, or members added since the last cycle (on either side) to a group that
        # exists. They leave the side that added them too, as they would have had they been
        # added a cycle earlier (then the base holds them: `drop` below): a user syncd
        # deletes on the source leaves the source group, even when it was only just added
        # there (no referential integrity to do it); a user syncd deprovisions on the target
        # leaves the target group that just named it.
        if c.op == "set_members" and late:
            members = c.members
            if members is not None:
                members = tuple(m for m in members if m not in late)
            out[n] = replace(c, add=tuple(a for a in c.add if a not in late),
                             remove=tuple(sorted(set(c.remove) | (set(c.source_add)
                                                                  & deprovisioned))),
                             source_add=tuple(a for a in c.source_add if a not in late),
                             source_remove=tuple(sorted(set(c.source_remove)
                                                        | (set(c.add) & late & erased))),
                             members=members)
    out = [c for c in out if not (  # a membership change left with nothing to do
        c.op == "set_members" and not (c.add or c.remove or c.source_add or c.source_remove)
        and (c.members is None or (c.source_id in groups and frozenset(c.members)
                                   == (groups[c.source_id].members or frozenset()))))]
    by_group = {c.source_id: i for i, c in enumerate(out)
                if c.kind == "group" and c.op == "set_members"}
    for gid, lk in sorted(groups.items()):
        drop = (lk.members or frozenset()) & leaving
        back = (lk.members or frozenset()) & returning
        if not (drop or back) or gid in ending or lk.status != "active":
            continue
        i = by_group.get(gid)
        gone_at_source = drop & erased
        if i is None:
            name = base_name(lk.base, "group", gid)
            kept = (lk.members or frozenset()) - drop | back
            out.append(Change("set_members", "group", gid, name, lk.target_id,
                              add=tuple(sorted(back)), remove=tuple(sorted(drop)),
                              source_remove=tuple(sorted(gone_at_source)),
                              before={"members": len(lk.members or ())},
                              members=tuple(sorted(kept)) if gone_at_source else None,
                              reason="members deprovisioned or recreated in this run"))
            continue
        c = out[i]
        members = c.members
        if members is not None:
            members = tuple(sorted((set(members) - drop) | back))
        out[i] = replace(c, add=tuple(sorted((set(c.add) - drop) | back)),
                         remove=tuple(sorted((set(c.remove) | drop) - back)),
                         source_add=tuple(a for a in c.source_add if a not in gone_at_source),
                         source_remove=tuple(sorted(set(c.source_remove) | gone_at_source)),
                         members=members)
    return out
