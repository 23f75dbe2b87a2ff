"""Nested groups: the pure closure (cycles, unknown groups, deep chains) and the engine with
``nested = "flatten"`` on in-memory connectors -- full and incremental cycles, and the
property that incremental equals full for random graphs with cycles and random edits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd import config
from syncd.errors import ConfigError
from syncd.plan.nesting import Edges, ancestors, closure
from tests.unit.memflow import HEAD, MemoryFlow

F = frozenset


def test_closure_chain_diamond_and_unknown_groups() -> None:
    g = {"a": Edges(F({"u1"}), F({"b", "c"})), "b": Edges(F({"u2"}), F({"d"})),
         "c": Edges(F(), F({"d", "x"})), "d": Edges(F({"u3"}))}
    out = closure(g, ["a", "c"])
    assert out.members["a"] == {"u1", "u2", "u3"}
    assert out.members["c"] == {"u3"}  # x is unknown (outside the groups read): nobody
    assert out.cycles == []


def test_cycle_is_found_and_every_group_of_it_gets_all_users() -> None:
    g = {"a": Edges(F({"u1"}), F({"b"})), "b": Edges(F({"u2"}), F({"c"})),
         "c": Edges(F({"u3"}), F({"a", "d"})), "d": Edges(F({"u4"})),
         "s": Edges(F({"u5"}), F({"s"}))}
    out = closure(g, ["a", "s"])
    assert out.members["a"] == out.members["b"] == out.members["c"] == {"u1", "u2", "u3", "u4"}
    assert out.members["s"] == {"u5"}
    assert sorted(out.cycles) == [("a", "b", "c"), ("s",)]


def test_a_deep_chain_does_not_recurse() -> None:
    n = 5000
    g = {f"g{i}": Edges(F({f"u{i}"}), F({f"g{i + 1}"})) for i in range(n)}
    assert len(closure(g, ["g0"]).members["g0"]) == n


def test_ancestors_follow_parents_through_cycles() -> None:
    parents = {"d": {"b", "c"}, "b": {"a"}, "a": {"b"}}
    assert ancestors(parents, ["d"]) == {"a", "b", "c"}


def naive(graph: dict[str, Edges], root: str) -> set[str]:
    seen, todo, users = {root}, [root], set()
    while todo:
        e = graph.get(todo.pop(), Edges())
        users |= e.users
        for c in e.groups - seen:
            seen.add(c)
            todo.append(c)
    return users


graphs = st.dictionaries(
    st.sampled_from([f"g{i}" for i in range(7)]),
    st.builds(Edges, st.frozensets(st.sampled_from([f"u{i}" for i in range(6)]), max_size=3),
              st.frozensets(st.sampled_from([f"g{i}" for i in range(8)]), max_size=3)))


@given(graphs)
def test_closure_equals_a_naive_walk(graph: dict[str, Edges]) -> None:
    out = closure(graph, sorted(graph))
    for g in graph:
        assert out.members[g] == naive(graph, g)


# ---- the engine ----------------------------------------------------------------------------

BODY = """full_reconcile = "1000d"
[flows.f.users]
scope = [{{ attribute = "title", equals = "in" }}]
[flows.f.users.mapping]
userName = "uid"
[flows.f.groups]
nested = "{nested}"
scope = [{{ attribute = "cn", starts_with = "app" }}]
[flows.f.groups.mapping]
displayName = "cn"
"""
#: The whole config, for tests that change it before loading (placeholders: state, src, dst,
#: nested).
CONFIG = HEAD.replace("{page_size}", "3") + BODY


class Env(MemoryFlow):
    def __init__(self, tmp: Path, nested: str = "flatten") -> None:
        super().__init__(tmp, BODY.format(nested=nested), prefix="n", page_size=3,
                         ok=("ok", "partial"))

    def target_members(self) -> dict[str, set[str]]:
        """Target group name -> user names, as the target holds them."""
        users = self.dst.objects["user"]
        return {str(a["displayName"]): {str(users[m]["userName"])
                                        for m in self.dst.members.get(gid, set())}
                for gid, a in self.dst.objects["group"].items()}

    def expected(self) -> dict[str, set[str]]:
        """A full recompute from the source: groups in scope, transitive users in scope."""
        src = self.src
        graph = {g: Edges(F(src.members.get(g, ())), F(src.group_members.get(g, ())))
                 for g in src.objects["group"]}
        out = closure(graph, sorted(graph))
        in_scope = {u for u, a in src.objects["user"].items() if a.get("title") == "in"}
        return {str(a["cn"]): {str(src.objects["user"][u]["uid"])
                               for u in out.members[g] & in_scope}
                for g, a in src.objects["group"].items() if str(a["cn"]).startswith("app")}

    def agrees(self) -> bool:
        """The target as a full recompute says; groups gone from the source (or its scope)
        are deprovisioned: kept on the target, emptied."""
        have, want = self.target_members(), self.expected()
        return {g: m for g, m in have.items() if g in want or m} == want

@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    for i in range(6):
        e.src.put("user", {"uid": f"u{i}", "title": "in"}, f"s{i}")
    yield e
    e.close()


def test_full_then_incremental_change_in_a_nested_group_reaches_every_ancestor(
        env: Env) -> None:
    src = env.src
    src.put("group", {"cn": "app-all"}, "gA")
    src.put("group", {"cn": "app-mid"}, "gB")
    src.put("group", {"cn": "team"}, "gT")  # out of the groups' scope: still walked through
    src.set_group_members("gA", {"s0"})
    src.set_group_groups("gA", {"gB"})
    src.set_group_members("gB", {"s1"})
    src.set_group_groups("gB", {"gT"})
    src.set_group_members("gT", {"s2", "s3"})
    env.run()
    assert env.target_members() == {"app-all": {"u0", "u1", "u2", "u3"},
                                    "app-mid": {"u1", "u2", "u3"}}
    src.set_group_members("gT", {"s2", "s4"})  # only the unsynced team group changes
    res = env.run()
    assert res.reads["group"] == "incremental"
    assert env.target_members() == env.expected() == {"app-all": {"u0", "u1", "u2", "u4"},
                                                      "app-mid": {"u1", "u2", "u4"}}
    assert res.plan is not None
    assert {(c.op, c.name) for c in res.plan.changes} == {
        ("set_members", "app-all"), ("set_members", "app-mid")}


def test_a_cycle_is_a_note_not_an_error(env: Env) -> None:
    src = env.src
    src.put("group", {"cn": "app-a"}, "gA")
    src.put("group", {"cn": "app-b"}, "gB")
    src.set_group_members("gA", {"s0"})
    src.set_group_members("gB", {"s1"})
    src.set_group_groups("gA", {"gB"})
    src.set_group_groups("gB", {"gA"})
    res = env.run()
    assert res.plan is not None
    assert any("cycle (app-a, app-b)" in n for n in res.plan.notes), res.plan.notes
    assert env.target_members() == {"app-a": {"u0", "u1"}, "app-b": {"u0", "u1"}}


def test_deleted_nested_group_and_user_leaving_scope(env: Env) -> None:
    src = env.src
    src.put("group", {"cn": "app-a"}, "gA")
    src.put("group", {"cn": "sub"}, "gS")
    src.set_group_groups("gA", {"gS"})
    src.set_group_members("gS", {"s1", "s2"})
    env.run()
    assert env.target_members() == {"app-a": {"u1", "u2"}}
    src.put("user", {"uid": "u2", "title": "out"}, "s2")
    env.run()
    assert env.target_members() == {"app-a": {"u1"}}
    src.remove("group", "gS")
    env.run()
    assert env.target_members() == env.expected() == {"app-a": set()}


def test_a_group_deleted_and_created_again_unchanged_is_an_ancestor_again(env: Env) -> None:
    """A group deprovisioned and then back in the source with the same name and (flattened)
    members differs from its base in nothing; its link must become active again all the
    same, or a later change below it is not brought up to it incrementally (only active
    ancestors join the read), while a full read would write it."""
    src = env.src
    src.put("group", {"cn": "app-a"}, "gA")
    src.put("group", {"cn": "sub"}, "gS")
    src.set_group_groups("gA", {"gS"})
    env.run()
    src.remove("group", "gA")
    env.run()
    src.put("group", {"cn": "app-a"}, "gA")
    src.set_group_groups("gA", {"gS"})
    env.run()
    assert env.target_members() == env.expected() == {"app-a": set()}
    src.set_group_members("gS", {"s1"})  # only the unsynced group below it changes
    res = env.run()
    assert res.reads["group"] == "incremental"
    assert env.target_members() == env.expected() == {"app-a": {"u1"}}


def test_direct_is_the_default_and_leaves_member_groups_out(tmp_path: Path) -> None:
    e = Env(tmp_path, nested="direct")
    try:
        for i in range(3):
            e.src.put("user", {"uid": f"u{i}", "title": "in"}, f"s{i}")
        e.src.put("group", {"cn": "app-a"}, "gA")
        e.src.put("group", {"cn": "sub"}, "gS")
        e.src.set_group_members("gA", {"s0"})
        e.src.set_group_groups("gA", {"gS"})
        e.src.set_group_members("gS", {"s1"})
        e.run()
        assert e.target_members() == {"app-a": {"u0"}}
    finally:
        e.close()


def test_nested_only_for_push_groups(tmp_path: Path) -> None:
    bad = CONFIG.format(state=tmp_path / "s.db", src="a", dst="b", nested="flatten").replace(
        '[flows.f]\nsource = "src"', '[flows.f]\nmode = "two_way"\nsource = "src"')
    (tmp_path / "c.toml").write_text(bad)
    with pytest.raises(ConfigError, match="nested applies to mode"):
        config.load(tmp_path / "c.toml")


GROUPS = [f"g{i}" for i in range(5)]
USERS = [f"s{i}" for i in range(6)]
edits = st.lists(st.one_of(
    st.tuples(st.just("users"), st.sampled_from(GROUPS),
              st.frozensets(st.sampled_from(USERS), max_size=3)),
    st.tuples(st.just("groups"), st.sampled_from(GROUPS),
              st.frozensets(st.sampled_from(GROUPS), max_size=2)),
    st.tuples(st.just("remove"), st.sampled_from(GROUPS), st.just(frozenset())),
    st.tuples(st.just("scope"), st.sampled_from(USERS), st.booleans()),
), min_size=1, max_size=6)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits)
def test_incremental_equals_full_for_random_graphs_and_edits(
        tmp_path: Path, steps: list[tuple[str, str, object]]) -> None:
    """Random group graphs (cycles allowed, some groups out of the flow's scope), random
    edits, one incremental cycle after each: the target equals the closure from scratch."""
    e = Env(tmp_path)
    try:
        for i, u in enumerate(USERS):
            e.src.put("user", {"uid": f"u{i}", "title": "in"}, u)
        for i, g in enumerate(GROUPS):  # g0..g2 synced, g3, g4 only walked through
            e.src.put("group", {"cn": f"app{i}" if i < 3 else f"team{i}"}, g)
            e.src.set_group_members(g, {USERS[i]})
            e.src.set_group_groups(g, {GROUPS[(i + 1) % len(GROUPS)]} if i % 2 else set())
        e.run()
        assert e.agrees()
        for op, what, arg in steps:
            if op == "users":
                e.src.set_group_members(what, set(arg))  # type: ignore[call-overload]
            elif op == "groups":
                e.src.set_group_groups(what, set(arg))  # type: ignore[call-overload]
            elif op == "remove":
                e.src.remove("group", what)
            else:
                e.src.put("user", {"uid": f"u{USERS.index(what)}",
                                   "title": "in" if arg else "out"}, what)
            res = e.run()
            assert res.reads["group"] == "incremental"
            assert e.agrees(), steps
    finally:
        e.close()
