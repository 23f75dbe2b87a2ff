"""Reference attributes beyond a user's manager, with in-memory connectors: references to
*groups* (``reference = "group"``), references written back in two-way flows (target id ->
link -> the source's own name, never a target id), and the edges of `syncd.cycle.ref_names`
(a target that names objects otherwise than by id, such as LDAP by DN)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from syncd import config
from syncd.cycle import engine
from syncd.cycle.ref_names import SourceNames, TargetNames, _swap, target_ids
from syncd.cycle.result import FlowResult
from syncd.errors import Rejected
from syncd.model import Entry, Kind
from syncd.plan.value import Change
from syncd.testing import DIRECTORIES, Directory, directory

_n = itertools.count()

CONFIG = """
[state]
url = "sqlite:///{state}"
[connectors.src]
type = "memory"
directory = "{src}"
[connectors.dst]
type = "memory"
directory = "{dst}"
[flows.f]
source = "src"
target = "dst"
{extra}
[flows.f.safety]
max_deprovision_percent = 100
max_rewrite_percent = 100
[flows.f.users.mapping]
userName = "uid"
"enterprise.manager" = {{ from = "manager", reference = "user" }}
"enterprise.organization" = {{ from = "team", reference = "group" }}
[flows.f.groups.mapping]
displayName = "cn"
[[flows.f.groups.scope]]
attribute = "cn"
equals = "hidden"
not = true
"""


class Env:
    def __init__(self, tmp: Path, extra: str = "") -> None:
        n = next(_n)
        self.names = (f"rg-src{n}", f"rg-dst{n}")
        self.src: Directory = directory(self.names[0])
        self.dst: Directory = directory(self.names[1])
        (tmp / "c.toml").write_text(CONFIG.format(state=tmp / "s.db", src=self.names[0],
                                                  dst=self.names[1], extra=extra))
        self.cfg = config.load(tmp / "c.toml")

    def run(self, **kw: object) -> FlowResult:
        (res,) = engine.run(self.cfg, **kw)  # type: ignore[arg-type]
        assert res.result == "ok", (res.errors, res.failures)
        return res

    def target(self, kind: Kind, name: str) -> tuple[str, dict[str, object]]:
        key = "userName" if kind == "user" else "displayName"
        (hit,) = [(o, a) for o, a in self.dst.objects[kind].items() if a.get(key) == name]
        return hit

    def changes(self, res: FlowResult) -> list[tuple[str, str, str]]:
        assert res.plan is not None
        return [(c.op, c.side, c.name) for c in res.plan.changes]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    yield e
    for name in e.names:
        DIRECTORIES.pop(name, None)


@pytest.fixture
def two_way(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path, 'mode = "two_way"')
    yield e
    for name in e.names:
        DIRECTORIES.pop(name, None)


# --- references to groups ----------------------------------------------------------------


def test_group_reference_filled_in_the_cycle_that_creates_the_group(env: Env) -> None:
    """Users are planned before groups: the group has no target id when the user is, so its
    reference is pending, then filled after the group's create, in the same cycle."""
    env.src.put("group", {"cn": "Team A"}, "g1")
    env.src.put("user", {"uid": "rep", "team": "g1"}, "s1")
    first = env.run()
    gid = env.target("group", "Team A")[0]
    assert env.target("user", "rep")[1]["enterprise.organization"] == gid
    assert ("update", "target", "rep") in env.changes(first)
    assert env.run().plan.changes == ()  # type: ignore[union-attr]
    assert env.run(full=True).plan.changes == ()  # type: ignore[union-attr]


def test_group_reference_out_of_scope_is_empty_then_filled_then_cleared(env: Env) -> None:
    env.src.put("group", {"cn": "hidden"}, "g1")
    env.src.put("user", {"uid": "rep", "team": "g1"}, "s1")
    first = env.run()
    assert env.target("user", "rep")[1].get("enterprise.organization") is None
    assert first.plan is not None and any(
        "rep: enterprise.organization is empty" in n for n in first.plan.notes)
    env.src.put("group", {"cn": "Team B"}, "g1")  # enters the scope
    env.run()
    gid = env.target("group", "Team B")[0]
    assert env.target("user", "rep")[1]["enterprise.organization"] == gid
    env.src.put("group", {"cn": "hidden"}, "g1")  # leaves it: deprovisioned, reference cleared
    env.run()
    assert env.target("user", "rep")[1].get("enterprise.organization") is None
    assert env.run().plan.changes == ()  # type: ignore[union-attr]


def test_user_and_group_reference_of_one_entry_resolve_independently(env: Env) -> None:
    env.src.put("group", {"cn": "Team A"}, "g1")
    env.src.put("user", {"uid": "boss"}, "s9")
    env.src.put("user", {"uid": "rep", "team": "g1", "manager": "s9"}, "s1")
    env.run()
    attrs = env.target("user", "rep")[1]
    assert attrs["enterprise.manager"] == env.target("user", "boss")[0]
    assert attrs["enterprise.organization"] == env.target("group", "Team A")[0]


# --- two-way: written back as the source's names ---------------------------------------


def test_two_way_reference_edited_on_the_target_is_written_back_as_the_source_anchor(
        two_way: Env) -> None:
    env = two_way
    for sid in ("s7", "s8"):
        env.src.put("user", {"uid": f"boss{sid}"}, sid)
    env.src.put("user", {"uid": "rep", "manager": "s7"}, "s1")
    env.run()
    assert env.run().plan.changes == ()  # type: ignore[union-attr]
    rep_tid, rep = env.target("user", "rep")
    new_boss = env.target("user", "bosss8")[0]
    env.dst.put("user", {**rep, "enterprise.manager": new_boss}, rep_tid)
    res = env.run()
    assert env.changes(res) == [("update", "target", "rep")]
    # the source names users by anchor (no resolve_references): the anchor, not a target id
    assert env.src.objects["user"]["s1"]["manager"] == "s8"
    assert env.run().plan.changes == ()  # type: ignore[union-attr]
    assert env.run(full=True).plan.changes == ()  # type: ignore[union-attr]


def test_two_way_reference_to_an_unlinked_target_object_is_not_written_back(
        two_way: Env) -> None:
    env = two_way
    env.src.put("user", {"uid": "boss"}, "s7")
    env.src.put("user", {"uid": "rep", "manager": "s7"}, "s1")
    env.run()
    stranger = env.dst.put("user", {"userName": "stranger"})
    rep_tid, rep = env.target("user", "rep")
    env.dst.put("user", {**rep, "enterprise.manager": stranger}, rep_tid)
    res = env.run()
    assert env.src.objects["user"]["s1"]["manager"] == "s7"  # never a target id
    assert stranger not in str(env.src.objects["user"]["s1"])
    assert res.plan is not None and any(
        "enterprise.manager not written back" in n and "pending until it is linked" in n
        for n in res.plan.notes), res.plan.notes
    # still pending: a full cycle says so again and writes nothing (an incremental one does
    # not read the unchanged target object again)
    again = env.run(full=True)
    assert env.src.objects["user"]["s1"]["manager"] == "s7"
    assert again.plan is not None and any("not written back" in n for n in again.plan.notes)


def test_two_way_reference_from_a_source_that_cannot_name_stays_one_way() -> None:
    class Resolves:
        name = "src"

        def resolve_references(self, kind: Kind, names: Sequence[str]) -> dict[str, str]:
            return {}

    class Names(Resolves):
        def reference_names(self, kind: Kind, anchors: Sequence[str]) -> dict[str, str]:
            return {}

    assert not SourceNames.writable(Resolves())  # type: ignore[arg-type]
    assert SourceNames.writable(Names())  # type: ignore[arg-type]
    assert SourceNames.writable(object())  # type: ignore[arg-type]


# --- a target with names of its own (LDAP: DNs) ------------------------------------------


class Spelled:
    """A target naming objects by DN: ids <-> names, counting lookups."""

    name = "dst"

    def __init__(self, names: Mapping[str, str]) -> None:
        self.by_id = dict(names)
        self.asked: list[tuple[Kind, tuple[str, ...]]] = []

    def reference_names(self, kind: Kind, anchors: Sequence[str]) -> dict[str, str | None]:
        self.asked.append((kind, tuple(anchors)))
        return {a: self.by_id.get(a) for a in anchors}

    def resolve_references(self, kind: Kind, names: Sequence[str]) -> dict[str, str | None]:
        back = {v: k for k, v in self.by_id.items()}
        return {n: back.get(n) for n in names}


def _flow(tmp: Path) -> config.Flow:  # type: ignore[name-defined]
    (tmp / "c.toml").write_text(CONFIG.format(state=tmp / "s.db", src="x", dst="y", extra=""))
    return config.load(tmp / "c.toml").flows["f"]


def test_target_names_one_lookup_per_stage_and_reject_an_unknown_id(tmp_path: Path) -> None:
    target = Spelled({"t1": "cn=one", "t2": "cn=two", "g1": "cn=team"})
    names = TargetNames(_flow(tmp_path), target)  # type: ignore[arg-type]
    changes = [Change("update", "user", f"s{i}", f"u{i}", f"x{i}",
                      attrs={"enterprise.manager": t, "enterprise.organization": "g1"})
               for i, t in enumerate(("t1", "t2", "t1"))]
    names.prefetch(changes)
    assert sorted(target.asked) == [("group", ("g1",)), ("user", ("t1", "t2"))]
    out = names.out("user", {"userName": "u", "enterprise.manager": "t2",
                             "enterprise.organization": None})
    assert out == {"userName": "u", "enterprise.manager": "cn=two",
                   "enterprise.organization": None}
    assert len(target.asked) == 2  # answered from what the stage asked
    with pytest.raises(Rejected, match="no user with id gone"):
        names.out("user", {"enterprise.manager": "gone"})


def test_target_values_read_back_as_ids(tmp_path: Path) -> None:
    target = Spelled({"t1": "cn=one"})
    e = Entry("user", "x", attrs={"enterprise.manager": "cn=one", "userName": "u"})
    odd = Entry("user", "y", attrs={"enterprise.manager": "cn=nobody"})
    target_ids(target, {"enterprise.manager": "user"}, [e, odd])  # type: ignore[arg-type]
    assert e.attrs["enterprise.manager"] == "t1" and e.attrs["userName"] == "u"
    assert odd.attrs["enterprise.manager"] == "cn=nobody"  # unknown: kept, never guessed


def test_swap_keeps_the_shape() -> None:
    table = {"a": "A", "b": None}
    assert _swap("a", table) == ("A", [])
    assert _swap(("a", "b"), table) == (("A",), ["b"])
    assert _swap(None, table) == (None, [])
    assert _swap("b", table) == (None, ["b"])
