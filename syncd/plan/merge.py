"""Two-way planning: a three-way merge of source, target and the link's base, per attribute.

For each linked pair, each canonical attribute is compared on both sides with the base (the
last values both sides agreed on):

 - changed on one side only -> propagate to the other side;
 - changed on both sides to the same value -> agree silently (the base moves);
 - changed on both sides differently -> a *conflict*, settled by the attribute's authority:
   ``source``, ``target``, ``newest`` (the objects' change timestamps, falling back to the
   flow's tie-breaker) or ``manual`` (held unchanged on both sides and recorded).

Attributes that cannot be written back (templates, constants, lossy transforms; anything the
target does not store) are one-way: the source is their authority, target drift is undone.
A side that was not read this cycle (incremental, unchanged) is taken to equal the base, so a
value syncd wrote is never mistaken for a change (echo suppression) and the flow reaches a
fixed point: after a cycle without external changes, the next plans nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from syncd.model import Attrs, Entry, Kind, Value
from syncd.plan.push import Item, same
from syncd.plan.value import Change, Hold, base_name
from syncd.state.records import Link


@dataclass(frozen=True)
class ConflictRecord:
    kind: Kind
    source_id: str
    name: str
    path: str
    source_value: Value
    target_value: Value
    base_value: Value


@dataclass(frozen=True)
class Rules:
    paths: tuple[str, ...]
    #: canonical path -> (source attribute, written back as TRUE/FALSE)
    reverse: Mapping[str, tuple[str, bool]]
    authority: Mapping[str, str] = field(default_factory=dict)
    default_authority: str = "source"
    tie_breaker: str = "source"
    merge: Mapping[str, str] = field(default_factory=dict)
    create: str = "source"  # both | source | none
    #: when the target object disappeared: recreate | disable | delete (on the source)
    reverse_deprovision: str = "recreate"
    #: (source_id, path) -> value an operator chose for a manual conflict
    resolutions: Mapping[tuple[str, str], Value] = field(default_factory=dict)
    #: (source_id, path) -> (source value, target value) of conflicts held and not settled:
    #: a cycle that reads only one side must keep holding them, not take the other side's
    #: unread value for the base (that lost the other side's edit).
    open_conflicts: Mapping[tuple[str, str], tuple[Value, Value]] = field(default_factory=dict)


#: Attributes that servers compare and often store case-insensitively (SCIM caseExact=false).
CASE_INSENSITIVE = ("username", "emails", "mail", "userprincipalname")


def _loosely_same(a: Value, b: Value, path: str = "") -> bool:
    """Servers normalise the case of identifiers (userName, emails): a case-only difference
    there is not a change, or every value syncd wrote would echo back once. Elsewhere case
    matters."""
    if same(a, b):
        return True
    if isinstance(a, str) and isinstance(b, str):
        return path.lower().startswith(CASE_INSENSITIVE) and a.casefold() == b.casefold()
    if isinstance(a, tuple) and isinstance(b, str) and len(a) == 1:
        return a[0] == b
    if isinstance(b, tuple) and isinstance(a, str) and len(b) == 1:
        return b[0] == a
    return False


def is_echo(paths: tuple[str, ...], base: Mapping[str, Value], values: Mapping[str, Value],
            base_members: frozenset[str] | None = None,
            members: frozenset[str] | None = None, *, target: bool = True) -> bool:
    """Does an object read back hold exactly what its link's base says both sides agreed on?

    The same comparison `merge_attrs` makes to decide that a side did not change (loosely on
    the target, where servers normalise the case of identifiers; exactly on the source), on
    every merged path — one-way paths included, since drift there is undone by a later merge.
    `members`: the member source ids it lists (None: not told). Anything else is a change
    somebody else made and must be merged (`syncd.cycle.catch_up`)."""
    for p in paths:
        v, b = values.get(p), base.get(p)
        if not (_loosely_same(v, b, p) if target else same(v, b)):
            return False
    return members is None or members == (base_members or frozenset())


def _newer(s_mod: str | None, t_mod: str | None, tie: str) -> str:
    try:
        if s_mod and t_mod:
            s_ts, t_ts = datetime.fromisoformat(s_mod), datetime.fromisoformat(t_mod)
            if s_ts != t_ts:
                return "source" if s_ts > t_ts else "target"
    except ValueError:
        pass
    return tie


def _union(s: Value, t: Value, b: Value) -> tuple[str, ...]:
    def as_set(v: Value) -> set[str]:
        if v is None:
            return set()
        return set(v) if isinstance(v, tuple) else {str(v)}

    bs, ss, ts = as_set(b), as_set(s), as_set(t)
    return tuple(sorted((bs | ss | ts) - ((bs - ss) | (bs - ts))))


@dataclass
class Merge:
    to_target: dict[str, Value] = field(default_factory=dict)
    to_source: dict[str, Value] = field(default_factory=dict)
    base: dict[str, Value] = field(default_factory=dict)
    conflicts: list[tuple[str, Value, Value, Value]] = field(default_factory=list)


def merge_attrs(rules: Rules, s: Attrs, t: Attrs, b: Attrs, s_mod: str | None,
                t_mod: str | None, sid: str, *, s_read: bool = True, t_read: bool = True
                ) -> Merge:
    """`s_read`/`t_read`: whether each side was read this cycle. A side not read is taken to
    equal the base — except for a conflict still held, whose unread side keeps the value it
    had when the conflict was found."""
    m = Merge(base=dict(b))
    for p in rules.paths:
        sv, tv, bv = s.get(p), t.get(p), b.get(p)
        writable = p in rules.reverse
        held = rules.open_conflicts.get((sid, p))
        if held is not None and not (s_read and t_read) and (sid, p) not in rules.resolutions:
            sv = sv if s_read else held[0]
            tv = tv if t_read else held[1]
            if _loosely_same(sv, tv, p):
                m.base[p] = sv  # the read side now agrees with the other: settled
            else:
                m.conflicts.append((p, sv, tv, bv))
            continue
        if (sid, p) in rules.resolutions:
            v = rules.resolutions[(sid, p)]
            if not same(v, sv) and writable:
                m.to_source[p] = v
            if not same(v, tv):
                m.to_target[p] = v
            m.base[p] = v
            continue
        s_changed = not same(sv, bv)
        # A path that cannot be written back is one-way: target edits are drift, undone.
        t_changed = writable and not _loosely_same(tv, bv, p)
        if not s_changed and not t_changed:
            if not writable and not _loosely_same(tv, sv, p):
                m.to_target[p] = sv
            continue
        if not t_changed:
            if not _loosely_same(sv, tv, p):
                m.to_target[p] = sv
            m.base[p] = sv
            continue
        if not s_changed:
            if not same(tv, sv):
                m.to_source[p] = tv
            m.base[p] = tv
            continue
        if _loosely_same(sv, tv, p):
            m.base[p] = sv
            continue
        if rules.merge.get(p) == "union" and (isinstance(sv, tuple) or isinstance(tv, tuple)):
            u = _union(sv, tv, bv)
            if not same(u, sv):
                m.to_source[p] = u
            if not same(u, tv):
                m.to_target[p] = u
            m.base[p] = u
            continue
        rule = rules.authority.get(p, rules.default_authority)
        if rule == "manual":
            m.conflicts.append((p, sv, tv, bv))
            continue
        winner = _newer(s_mod, t_mod, rules.tie_breaker) if rule == "newest" else rule
        if winner == "target":
            m.to_source[p] = tv
            m.base[p] = tv
        else:
            m.to_target[p] = sv
            m.base[p] = sv
    return m


def native(rules: Rules, attrs: Mapping[str, Value]) -> dict[str, Value]:
    """Canonical values -> source attribute names (for writing back)."""
    out: dict[str, Value] = {}
    for p, v in attrs.items():
        attr, as_bool = rules.reverse[p]
        out[attr] = ("TRUE" if v else "FALSE") if as_bool and isinstance(v, bool) else v
    return out


@dataclass(frozen=True)
class TwoWayInput:
    kind: Kind
    rules: Rules
    links: Mapping[str, Link]
    source: Mapping[str, Item]
    target: Mapping[str, Entry]
    source_gone: frozenset[str] = frozenset()
    target_gone: frozenset[str] = frozenset()
    source_complete: bool = True
    target_complete: bool = True
    deprovision: str = "disable"
    #: target ids an unlinked source item adopts/creates (planned by the push planner)
    claimed_targets: frozenset[str] = frozenset()
    #: for groups: target user id -> source user id
    user_by_target: Mapping[str, str] = field(default_factory=dict)
    #: for groups: source ids among `user_by_target`'s whose link is not active (`members_of`)
    inactive_users: frozenset[str] = frozenset()
    #: for groups: source user ids that can be members (linked and active, or read in scope
    #: this cycle); None: no restriction. A source group naming a user that is gone (LDAP
    #: without referential integrity) does not make it a member again.
    member_universe: frozenset[str] | None = None


def members_of(ids: Iterable[str], user_by_target: Mapping[str, str],
               inactive: frozenset[str], base: frozenset[str]) -> frozenset[str]:
    """The source user ids of the members a target group names, as the merge counts them.

    A user whose link is no longer active — deprovisioned on the target after it was deleted
    at the source or left its scope, or disabled on the source after the target deleted it —
    counts only where the base already holds it (so its removal is still a removal). A
    target group naming it is no new member: written back, the source would get a member it
    deleted, for a user the flow no longer syncs. The source side has the same rule
    (`TwoWayInput.member_universe`). Target ids no link knows are left out."""
    out = set()
    for m in ids:
        sid = user_by_target.get(m)
        if sid is not None and (sid not in inactive or sid in base):
            out.add(sid)
    return frozenset(out)


def plan_linked(ti: TwoWayInput) -> tuple[list[Change], list[Hold], list[ConflictRecord]]:
    changes: list[Change] = []
    held: list[Hold] = []
    conflicts: list[ConflictRecord] = []
    by_target = {lk.target_id: lk for lk in ti.links.values()}
    touched = set(ti.source) | {by_target[t].source_id for t in ti.target if t in by_target}
    touched |= {by_target[t].source_id for t in ti.target_gone if t in by_target}
    touched |= set(ti.source_gone)
    touched |= {sid for sid, _ in ti.rules.resolutions}  # an operator settled a conflict
    touched |= {sid for sid, _ in ti.rules.open_conflicts}  # held: stays listed
    for sid in sorted(touched):
        lk = ti.links.get(sid)
        if lk is None:
            continue
        item, entry = ti.source.get(sid), ti.target.get(lk.target_id)
        name = item.name if item else base_name(lk.base, ti.kind, sid)
        if sid in ti.source_gone:
            continue  # deprovisioned by the push planner
        if lk.status != "active":
            continue  # disabled already (either side): nothing is merged or reversed
        if lk.target_id in ti.target_gone:
            if ti.target_complete:
                changes += _target_gone(ti, lk, item, name)
            continue
        s = item.attrs if item else lk.base
        t = {p: entry.attrs.get(p) for p in ti.rules.paths} if entry else lk.base
        m = merge_attrs(ti.rules, s, t, lk.base, item.modified if item else None,
                        entry.modified if entry else None, sid, s_read=item is not None,
                        t_read=entry is not None)
        for p, sv, tv, bv in m.conflicts:
            conflicts.append(ConflictRecord(ti.kind, sid, name, p, sv, tv, bv))
            held.append(Hold(ti.kind, sid, name, f"conflict on {p}: source {sv!r}, target "
                             f"{tv!r}, base {bv!r} (manual; `syncd conflicts resolve`)"))
        if m.to_target or m.to_source:
            changes.append(Change(
                "update", ti.kind, sid, name, lk.target_id, attrs=m.to_target,
                before={p: t.get(p) for p in m.to_target}, base=m.base,
                source_attrs=native(ti.rules, m.to_source),
                source_before={p: s.get(p) for p in m.to_source},
                reason="changed on " + " and ".join(
                    x for x, d in (("source", m.to_target), ("target", m.to_source)) if d)))
        elif m.base != dict(lk.base):
            changes.append(Change("update", ti.kind, sid, name, lk.target_id, base=m.base,
                                  reason="both sides agree: base updated"))
        if ti.kind == "group":
            changes += _members(ti, lk, item, entry, name)
    return changes, held, conflicts


def _target_gone(ti: TwoWayInput, lk: Link, item: Item | None, name: str) -> list[Change]:
    policy = ti.rules.reverse_deprovision
    if policy in ("disable", "delete"):
        return [Change("deprovision" if policy == "disable" else "delete", ti.kind,
                       lk.source_id, name, lk.target_id, side="source",
                       reason="the target object was deleted")]
    values = dict(item.attrs if item else lk.base)
    # A conflict held on this pair is moot now that the target side is gone: the source's
    # value (as it was when the conflict was found, if the source was not read) is the one.
    values.update({p: sv for (sid, p), (sv, _) in ti.rules.open_conflicts.items()
                   if sid == lk.source_id and item is None})
    attrs = {p: v for p, v in values.items() if v is not None}
    out = [Change("create", ti.kind, lk.source_id, name, attrs=attrs, base=values,
                  reason="the target object was deleted: recreated")]
    members = item.members if item is not None and item.members is not None else lk.members
    if ti.kind == "group" and members:  # recreated whole: with its members
        out.append(Change("set_members", "group", lk.source_id, name,
                          add=tuple(sorted(members)), reason="recreated with its members"))
    return out


def _members(ti: TwoWayInput, lk: Link, item: Item | None, entry: Entry | None,
             name: str) -> list[Change]:
    base = lk.members or frozenset()
    s = item.members if item and item.members is not None else base
    if ti.member_universe is not None:
        s = s & (ti.member_universe | base)
    if entry is not None and entry.members is not None:
        t = members_of(entry.members, ti.user_by_target, ti.inactive_users, base)
    else:
        t = base
    if ti.rules.merge.get("members", "union") == "replace":
        want = s
    else:
        want = (base | (s - base) | (t - base)) - ((base - s) | (base - t))
    out = []
    add_t, rem_t = want - t, (t & base) - want
    add_s, rem_s = want - s, (s & base) - want
    if add_t or rem_t or add_s or rem_s or want != base:
        # Also when both sides made the same change: nothing to send, but the agreement is
        # the new base, or a later removal on one side would be taken for no change.
        out.append(Change("set_members", "group", lk.source_id, name, lk.target_id,
                          add=tuple(sorted(add_t)), remove=tuple(sorted(rem_t)),
                          source_add=tuple(sorted(add_s)), source_remove=tuple(sorted(rem_s)),
                          before={"members": len(base)}, members=tuple(sorted(want)),
                          reason="membership changed" if add_t or rem_t or add_s or rem_s
                          else "both sides agree: member base updated"))
    return out


def plan_target_only(ti: TwoWayInput) -> tuple[list[Change], list[str]]:
    """Target objects no link knows and no source item claimed: create them on the source
    when the flow allows it (``create = "both"``), else leave them and say so."""
    linked = {lk.target_id for lk in ti.links.values()} | set(ti.claimed_targets)
    orphans = [e for tid, e in sorted(ti.target.items()) if tid not in linked]
    if not orphans:
        return [], []
    if ti.rules.create != "both":
        return [], [f"{ti.kind}s: {len(orphans)} target objects are not linked to the source "
                    f"(create = {ti.rules.create!r}: left alone)"]
    out = []
    for e in orphans:
        canon = {p: e.attrs.get(p) for p in ti.rules.paths if p in ti.rules.reverse}
        values = {p: v for p, v in canon.items() if v is not None}
        members = tuple(sorted(members_of(e.members or (), ti.user_by_target,
                                          ti.inactive_users, frozenset())))
        out.append(Change("create", ti.kind, "", e.name or e.external_id, e.external_id,
                          side="source", source_attrs=native(ti.rules, values),
                          source_add=members,
                          before={p: e.attrs.get(p) for p in ti.rules.paths
                                  if p not in ti.rules.reverse},
                          base=canon, reason="created on the target side"))
    return out, []
