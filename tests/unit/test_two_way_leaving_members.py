"""Two-way memberships of users leaving the flow: a member is never written to a side that
no longer has (or never had) its user.

Rules checked here, found while fixing the two-way oracle's
`test_member_deleted_at_the_source_after_a_killed_cycle_is_not_written_back`:

 - a target group naming a user whose link is no longer active (deleted at the source and
   deprovisioned, or disabled on the source after the target deleted it) is no new member
   to write back to the source (`syncd.plan.merge.members_of`), at any later cycle, full or
   incremental;
 - a member added on one side to a user leaving in the same cycle is not sent to the other
   side, and leaves the side that added it when syncd deprovisions it there
   (`syncd.plan.push.follow_members`) — the same end as when the add came a cycle earlier;
 - symmetric: a member added at the source to a user the target deleted in the same cycle
   is not written to the target (a deleted id there), under each ``reverse_deprovision``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.model import Entry
from syncd.plan.merge import Rules, TwoWayInput, members_of, plan_linked
from syncd.plan.push import Item, follow_members
from syncd.plan.value import Change
from syncd.state.records import Link
from tests.oracle.test_found import TwoWay

USERS = [f"s{i}" for i in range(6)]
SETS = st.frozensets(st.sampled_from(USERS), max_size=6)


@pytest.fixture
def tw(tmp_path: Path) -> Iterator[TwoWay]:
    from syncd.testing import DIRECTORIES

    t = TwoWay(tmp_path)
    yield t
    for name in t.names:
        DIRECTORIES.pop(name, None)


def _group_plan(s: frozenset[str], t: frozenset[str], base: frozenset[str],
                inactive: frozenset[str]) -> Change | None:
    link = Link("f", "group", "g", "tg", {"displayName": "g"}, "", base)
    ti = TwoWayInput("group", Rules(("displayName",), {"displayName": ("cn", False)}),
                     {"g": link}, {"g": Item("g", "g", {"displayName": "g"}, s)},
                     {"tg": Entry("group", "tg", attrs={"displayName": "g"},
                                  members=frozenset("t-" + m for m in t))},
                     user_by_target={"t-" + u: u for u in USERS}, inactive_users=inactive,
                     member_universe=frozenset(USERS) - inactive)
    changes, _, _ = plan_linked(ti)
    found = [c for c in changes if c.op == "set_members"]
    assert len(found) <= 1, found
    return found[0] if found else None


@settings(max_examples=300, deadline=None)
@given(s=SETS, t=SETS, base=SETS, inactive=SETS)
def test_a_user_no_longer_linked_active_is_never_a_new_member(
        s: frozenset[str], t: frozenset[str], base: frozenset[str],
        inactive: frozenset[str]) -> None:
    """Whatever either side names, a user whose link is not active and that the base does not
    hold is added to neither side nor to the new base; the active users merge as before
    (base plus both sides' additions, minus both sides' removals)."""
    c = _group_plan(s, t, base, inactive)
    new = inactive - base
    s_eff = s & ((frozenset(USERS) - inactive) | base)
    t_eff = t & ((frozenset(USERS) - inactive) | base)
    want = (base | (s_eff - base) | (t_eff - base)) - ((base - s_eff) | (base - t_eff))
    if c is None:
        assert want == base
        return
    assert not new & (set(c.add) | set(c.source_add) | set(c.members or ()))
    assert frozenset(c.members or ()) == want
    assert set(c.source_add) == want - s_eff and set(c.add) == want - t_eff


@settings(max_examples=300, deadline=None)
@given(ids=st.frozensets(st.sampled_from(["t-" + u for u in USERS] + ["t-unknown"])),
       base=SETS, inactive=SETS)
def test_members_of_counts_inactive_users_only_from_the_base(
        ids: frozenset[str], base: frozenset[str], inactive: frozenset[str]) -> None:
    got = members_of(ids, {"t-" + u: u for u in USERS}, inactive, base)
    named = {i[2:] for i in ids if i != "t-unknown"}
    assert got == {u for u in named if u not in inactive or u in base}


@settings(max_examples=300, deadline=None)
@given(add=SETS, source_add=SETS, leaving=SETS, withdrawn=SETS, base=SETS)
def test_a_late_member_of_a_leaving_user_goes_nowhere(
        add: frozenset[str], source_add: frozenset[str], leaving: frozenset[str],
        withdrawn: frozenset[str], base: frozenset[str]) -> None:
    """Members added since the last cycle (to the target: `add`; to the source: `source_add`)
    of users this plan deprovisions on the target (`leaving`) or disables on the source
    (`withdrawn`): sent to neither side, not in the new base, and a target-added one leaves
    the target group with its user."""
    withdrawn -= leaving
    add, source_add = add - base, source_add - base - add
    changes = [Change("set_members", "group", "g", "g", "tg", add=tuple(sorted(add)),
                      source_add=tuple(sorted(source_add)),
                      members=tuple(sorted(base | add | source_add)))]
    changes += [Change("deprovision", "user", u, u, "t-" + u) for u in sorted(leaving)]
    changes += [Change("deprovision", "user", u, u, "t-" + u, side="source")
                for u in sorted(withdrawn)]
    group = Link("f", "group", "g", "tg", {}, "", base)
    out = [c for c in follow_members(changes, {"g": group}) if c.op == "set_members"]
    gone = leaving | withdrawn
    for c in out:
        assert not gone & (set(c.add) | set(c.source_add) | (set(c.members or ()) - base))
        assert source_add & leaving <= set(c.remove)
        assert set(c.remove) <= (source_add & leaving) | (base & leaving)
    if not out:  # nothing left to send, and the base is unchanged
        assert not (add | source_add) - gone and not base & leaving


def test_member_named_on_the_target_after_its_user_left_is_not_written_back(
        tw: TwoWay) -> None:
    """c0 is deleted at the source and deprovisioned (disabled) on the target; later someone
    adds the disabled c0 to a target group: no cycle, incremental or full, writes c0 — a
    user the source deleted — into the source group."""
    for n in ("c0", "c1"):
        tw.src.put("user", {"uid": n, "title": "a"}, f"src-{n}")
    tw.src.put("group", {"cn": "g"}, "src-g")
    tw.src.set_group_members("src-g", {"src-c1"})
    tw.run()
    (gid,) = tw.dst.objects["group"]
    tw.src.remove("user", "src-c0")
    tw.run()
    assert tw.dst_user("c0").get("active") is False
    tw.dst.set_group_members(gid, {tw.tid("c0"), tw.tid("c1")})
    for full in (False, True, False):
        res = tw.run(full=full)
        assert res.plan is not None
        assert not [c for c in res.plan.changes if "src-c0" in c.source_add], res.plan.changes
    assert tw.src.members["src-g"] == {"src-c1"}
    assert tw.run().plan.changes == ()  # type: ignore[union-attr]



@pytest.mark.parametrize("reverse", ["recreate", "disable", "delete"])
def test_member_added_at_the_source_as_the_target_deletes_its_user(
        tw: TwoWay, reverse: str) -> None:
    """Symmetric case: between two cycles x is added to g at the source and deleted on the
    target. recreate: x comes back on the target under a new id, in g there; disable: x is
    disabled on the source and kept in its source group (the source's own edit), but the
    target group never names the deleted id, also after x is edited at the source (read
    again: a user disabled by syncd is no member for the target); delete: x leaves the
    source and its group."""
    tw.configure(reverse=reverse)
    for n in ("x", "y"):
        tw.src.put("user", {"uid": n, "title": "a"}, f"src-{n}")
    tw.src.put("group", {"cn": "g"}, "src-g")
    tw.src.set_group_members("src-g", {"src-y"})
    tw.run()
    (gid,) = tw.dst.objects["group"]
    old = tw.tid("x")
    tw.src.set_group_members("src-g", {"src-x", "src-y"})
    tw.dst.remove("user", old)
    tw.run(allow_deletes=True)
    if reverse == "disable":
        tw.edit_source("src-x", title="b")
    for full in (False, True):
        res = tw.run(full=full)
        if reverse != "disable":  # the edit of a disabled source entry is not merged
            assert res.plan is not None and res.plan.changes == (), res.plan.changes
        assert old not in tw.dst.members[gid]
    names = {tw.dst.objects["user"][m]["userName"] for m in tw.dst.members[gid]
             if m in tw.dst.objects["user"]}
    assert names == ({"x", "y"} if reverse == "recreate" else {"y"})
    assert tw.src.members["src-g"] == ({"src-y"} if reverse == "delete"
                                       else {"src-x", "src-y"})
    assert tw.run().plan.changes == ()  # type: ignore[union-attr]


def test_group_created_on_the_target_with_a_member_deleted_at_the_source(tw: TwoWay) -> None:
    """Between two cycles a group h is created on the target naming x and y, and x is deleted
    at the source: h is created on the source with y only (x was written into it: a member
    the source had just deleted); the target's h keeps naming the disabled x, which no
    later cycle, incremental or full, takes for a member to write back."""
    for n in ("x", "y"):
        tw.src.put("user", {"uid": n, "title": "a"}, f"src-{n}")
    tw.run()
    tw.dst.put("group", {"displayName": "h"}, "dst-h")
    tw.dst.set_group_members("dst-h", {tw.tid("x"), tw.tid("y")})
    tw.src.remove("user", "src-x")
    tw.run()
    (gid,) = [o for o, a in tw.src.objects["group"].items() if a.get("cn") == "h"]
    assert tw.src.members[gid] == {"src-y"}
    for full in (False, True):
        res = tw.run(full=full)
        assert res.plan is not None and res.plan.changes == (), res.plan.changes
    assert tw.src.members[gid] == {"src-y"}
