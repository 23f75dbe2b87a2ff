"""Membership-based scope (``[users] member_of``): users who are members, direct or nested, of
the named groups; membership changes reach an incremental cycle although the users did not
change; a group listing that cannot prove "not a member" holds users instead of
deprovisioning them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd import config
from syncd.cycle.membership import _key
from syncd.errors import ConfigError
from syncd.plan.nesting import Edges, closure
from tests.unit.memflow import HEAD, MemoryFlow

BODY = """
full_reconcile = "1000d"
[flows.f.safety]
max_deprovision_percent = 100.0
[flows.f.users]
member_of = {member_of}
[flows.f.users.mapping]
userName = "uid"
"""


class Env(MemoryFlow):
    def __init__(self, tmp: Path, member_of: str = '["gApp"]') -> None:
        super().__init__(tmp, BODY.format(member_of=member_of), ok=("ok", "partial"))

    def active(self) -> set[str]:
        return {str(a["userName"]) for a in self.dst.objects["user"].values()
                if a.get("active", True)}

@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    for i in range(6):
        e.src.put("user", {"uid": f"u{i}"}, f"s{i}")
    e.src.put("group", {"displayName": "app"}, "gApp")
    e.src.put("group", {"displayName": "team"}, "gTeam")
    e.src.put("group", {"displayName": "other"}, "gOther")
    e.src.set_group_members("gApp", {"s0"})
    e.src.set_group_groups("gApp", {"gTeam"})
    e.src.set_group_members("gTeam", {"s1", "s2"})
    e.src.set_group_members("gOther", {"s3"})
    yield e
    e.close()


def test_direct_and_nested_members_only(env: Env) -> None:
    res = env.run()
    assert env.active() == {"u0", "u1", "u2"}
    assert res.reads["user"] == "full"
    again = env.run()
    assert again.plan is not None and not again.plan.changes
    assert again.reads["user"] == "incremental"


def test_membership_changes_reach_an_incremental_cycle(env: Env) -> None:
    env.run()
    env.src.set_group_members("gTeam", {"s1", "s4"})  # only groups change: users do not
    res = env.run()
    assert env.active() == {"u0", "u1", "u4"}
    assert res.reads["user"] == "full"  # the set changed: the stored cursor no longer fits
    assert res.plan is not None
    (gone,) = [c for c in res.plan.changes if c.op == "deprovision"]
    assert gone.name == "u2" and "not a member (direct or nested) of gApp" in gone.reason
    quiet = env.run()
    assert quiet.reads["user"] == "incremental"
    assert quiet.plan is not None and not quiet.plan.changes


def test_a_missing_group_proves_nothing_and_holds(tmp_path: Path) -> None:
    e = Env(tmp_path, '["gApp", "gTypo"]')
    try:
        for i in range(3):
            e.src.put("user", {"uid": f"u{i}"}, f"s{i}")
        e.src.put("group", {"displayName": "app"}, "gApp")
        e.src.set_group_members("gApp", {"s0", "s1"})
        res = e.run()
        assert res.plan is not None
        held = {h.source_id: h.reason for h in res.plan.held}
        assert set(held) == {"s2"}
        assert "'gTypo' is not among src's groups" in held["s2"]
        assert e.active() == {"u0", "u1"}  # members are known members: synced
    finally:
        e.close()


def test_a_member_leaving_after_the_listing_broke_is_held_not_deprovisioned(
        env: Env) -> None:
    env.run()
    env.src.set_group_members("gTeam", {"s1"})  # u2 leaves...
    env.src.hidden = {"gOther"}  # ...while the group listing misses an object
    env.src.hidden_detected = True
    res = env.run(full=True)
    assert env.active() == {"u0", "u1", "u2"}
    assert res.plan is not None
    assert any(h.source_id == "s2" and "membership of gApp unknown" in h.reason
               for h in res.plan.held)


def test_names_match_ids_and_dns_in_any_spelling() -> None:
    assert _key(" CN=App Users , OU=Groups,DC=Example,DC=org") == \
        "cn=app users,ou=groups,dc=example,dc=org"


def test_member_of_config_errors(tmp_path: Path) -> None:
    base = HEAD.format(state=tmp_path / "s.db", src="a", dst="b", page_size=2) + \
        BODY.format(member_of='["x"]')
    for text, where, message in (
            (base.replace("[flows.f.users]\nmember_of", "[flows.f.groups]\nmember_of")
             .replace('[flows.f.users.mapping]\nuserName = "uid"',
                      '[flows.f.groups.mapping]\ndisplayName = "cn"'),
             "flows.f.groups.member_of", "member_of is a setting of [users]"),
            (base.replace('target = "dst"', 'target = "dst"\nmode = "two_way"'),
             "flows.f.users.member_of", "push"),
            (base.replace('member_of = ["x"]', 'member_of = ["x", " "]'),
             "flows.f.users.member_of[1]", "an empty group name")):
        p = tmp_path / "bad.toml"
        p.write_text(text)
        with pytest.raises(ConfigError) as info:
            config.load(p)
        assert where in str(info.value) and message in str(info.value)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["members", "groups"]),
                          st.sampled_from(["gApp", "gTeam", "gOther"]),
                          st.sets(st.integers(0, 5))), min_size=1, max_size=5))
def test_incremental_equals_full_for_any_membership_edits(
        tmp_path_factory: pytest.TempPathFactory,
        edits: list[tuple[str, str, set[int]]]) -> None:
    """After each edit to group memberships (users or nested groups, cycles allowed), one
    cycle leaves exactly the transitive members of gApp active on the target."""
    tmp = tmp_path_factory.mktemp("m")
    e = Env(tmp)
    try:
        for i in range(6):
            e.src.put("user", {"uid": f"u{i}"}, f"s{i}")
        for g in ("gApp", "gTeam", "gOther"):
            e.src.put("group", {"displayName": g}, g)
        e.run()
        groups = ["gApp", "gTeam", "gOther"]
        for what, g, picks in edits:
            if what == "members":
                e.src.set_group_members(g, {f"s{i}" for i in picks})
            else:
                e.src.set_group_groups(g, {groups[i % 3] for i in picks})
            e.run()
            graph = {x: Edges(frozenset(e.src.members.get(x, ())),
                              frozenset(e.src.group_members.get(x, ())))
                     for x in groups}
            want = closure(graph, ["gApp"]).members.get("gApp", frozenset())
            assert e.active() == {f"u{s[1:]}" for s in want}
    finally:
        e.close()


def test_explain_says_a_non_member_is_out_of_scope(env: Env) -> None:
    from syncd.cli.explain import explain

    env.src.put("user", {"uid": "zed"}, "sZ")  # names that are no target id of the memory target
    env.src.set_group_members("gOther", {"s3", "sZ"})
    env.run()
    doc = explain(env.cfg, "f", "zed")
    assert doc["source_id"] == "sZ" and doc["in_scope"] is False
    assert doc["out_of_scope"] == "not a member (direct or nested) of gApp"
    env.src.set_group_members("gTeam", {"s1", "s2", "sZ"})
    assert explain(env.cfg, "f", "zed")["in_scope"] is True
