"""Two-way flows with in-memory connectors: three-way merge, authority rules, echo
suppression, fixed point, creation and deletion rules, membership on both sides."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd import config
from syncd.cycle import engine
from syncd.cycle.result import FlowResult
from syncd.state.store import Store
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
mode = "two_way"
{extra}
[flows.f.users]
{users_extra}
[flows.f.users.mapping]
userName = "uid"
title = "title"
nickName = "nick"
displayName = "{{cn}}"
[flows.f.groups.mapping]
displayName = "cn"
"""


class TwoWay:
    def __init__(self, tmp: Path) -> None:
        n = next(_n)
        self.names = (f"tw-src{n}", f"tw-dst{n}")
        self.src: Directory = directory(self.names[0])
        self.dst: Directory = directory(self.names[1])
        self.tmp = tmp
        self.configure()

    def configure(self, extra: str = "", users_extra: str = "") -> None:
        (self.tmp / "c.toml").write_text(CONFIG.format(
            state=self.tmp / "s.db", src=self.names[0], dst=self.names[1], extra=extra,
            users_extra=users_extra))
        self.cfg = config.load(self.tmp / "c.toml")

    def run(self, **kw: object) -> FlowResult:
        (res,) = engine.run(self.cfg, **kw)  # type: ignore[arg-type]
        assert res.result == "ok", (res.errors, res.failures)
        return res

    def tid(self, uid: str) -> str:
        (t,) = [o for o, a in self.dst.objects["user"].items() if a.get("userName") == uid]
        return t

    def edit_target(self, uid: str, **attrs: object) -> None:
        t = self.tid(uid)
        self.dst.put("user", {**self.dst.objects["user"][t], **attrs}, t)

    def edit_source(self, sid: str, **attrs: object) -> None:
        self.src.put("user", {**self.src.objects["user"][sid], **attrs}, sid)

    def planned(self, res: FlowResult) -> list[tuple[str, str, str]]:
        assert res.plan is not None
        return [(c.op, c.side, c.name) for c in res.plan.changes]


@pytest.fixture
def tw(tmp_path: Path) -> Iterator[TwoWay]:
    t = TwoWay(tmp_path)
    for i in range(3):
        t.src.put("user", {"uid": f"u{i}", "title": "t", "nick": f"n{i}", "cn": f"C {i}"},
                  f"s{i}")
    yield t
    for name in t.names:
        DIRECTORIES.pop(name, None)


def settle(tw: TwoWay) -> None:
    tw.run()
    assert tw.planned(tw.run()) == [], "fixed point after the initial sync"


def test_source_change_goes_to_target_and_fixed_point(tw: TwoWay) -> None:
    settle(tw)
    tw.edit_source("s0", title="lead")
    res = tw.run()
    (c,) = res.plan.changes  # type: ignore[union-attr]
    assert c.attrs == {"title": "lead"} and not c.source_attrs
    assert tw.dst.objects["user"][tw.tid("u0")]["title"] == "lead"
    assert tw.planned(tw.run()) == [] and tw.planned(tw.run()) == []


def test_target_change_is_written_back_without_echo(tw: TwoWay) -> None:
    settle(tw)
    tw.edit_target("u1", title="from app")
    res = tw.run()
    (c,) = res.plan.changes  # type: ignore[union-attr]
    assert c.source_attrs == {"title": "from app"} and not c.attrs
    assert tw.src.objects["user"]["s1"]["title"] == "from app"
    assert tw.planned(tw.run()) == [], "the value syncd wrote must not come back as a change"


def test_different_attributes_on_both_sides_both_propagate(tw: TwoWay) -> None:
    settle(tw)
    tw.edit_source("s0", title="src title")
    tw.edit_target("u0", nickName="app nick")
    tw.run()
    assert tw.dst.objects["user"][tw.tid("u0")]["title"] == "src title"
    assert tw.src.objects["user"]["s0"]["nick"] == "app nick"
    assert tw.planned(tw.run()) == []


@pytest.mark.parametrize(("authority", "winner"), [("source", "S"), ("target", "T")])
def test_conflict_follows_authority(tw: TwoWay, authority: str, winner: str) -> None:
    tw.configure(extra=f'authority = "{authority}"')
    settle(tw)
    tw.edit_source("s2", title="S")
    tw.edit_target("u2", title="T")
    tw.run()
    assert tw.src.objects["user"]["s2"]["title"] == winner
    assert tw.dst.objects["user"][tw.tid("u2")]["title"] == winner
    assert tw.planned(tw.run()) == []


def test_newest_wins_by_change_time(tw: TwoWay) -> None:
    tw.configure(users_extra='authority = { title = "newest" }')
    settle(tw)
    tw.edit_target("u2", title="older")
    tw.edit_source("s2", title="newer")  # later fake timestamp
    tw.run()
    assert tw.dst.objects["user"][tw.tid("u2")]["title"] == "newer"
    assert tw.src.objects["user"]["s2"]["title"] == "newer"


def test_manual_conflict_is_held_recorded_and_resolved(tw: TwoWay) -> None:
    tw.configure(users_extra='authority = { title = "manual" }')
    settle(tw)
    tw.edit_source("s1", title="S")
    tw.edit_target("u1", title="T")
    res = tw.run()
    assert any("conflict on title" in h.reason for h in res.plan.held)  # type: ignore[union-attr]
    assert tw.src.objects["user"]["s1"]["title"] == "S"
    assert tw.dst.objects["user"][tw.tid("u1")]["title"] == "T"
    st = Store(tw.cfg.state_url)
    (conf,) = st.conflicts("f")
    assert (conf["source_value"], conf["target_value"], conf["base_value"]) == ("S", "T", "t")
    st.resolve_conflict(conf["id"], "agreed")
    st.close()
    tw.run()
    assert tw.src.objects["user"]["s1"]["title"] == "agreed"
    assert tw.dst.objects["user"][tw.tid("u1")]["title"] == "agreed"
    st = Store(tw.cfg.state_url)
    assert st.conflicts("f") == []
    st.close()
    assert tw.planned(tw.run()) == []


def test_one_way_attribute_drift_on_target_is_undone(tw: TwoWay) -> None:
    """displayName comes from a template: it cannot be written back, the source owns it."""
    settle(tw)
    tw.edit_target("u0", displayName="hacked")
    tw.run()
    assert tw.dst.objects["user"][tw.tid("u0")]["displayName"] == "C 0"
    assert "displayname" not in {k.lower() for k in tw.src.objects["user"]["s0"]}


def test_target_created_object_goes_to_source_only_with_create_both(tw: TwoWay) -> None:
    settle(tw)
    tw.dst.put("user", {"userName": "appuser", "title": "x", "active": True})
    res = tw.run()
    assert tw.planned(res) == []
    assert any("not linked" in n for n in res.plan.notes)  # type: ignore[union-attr]
    tw.configure(extra='create = "both"')
    # an unchanged target object shows up again on the next full read (the reconcile)
    res = tw.run(full=True)
    assert tw.planned(res) == [("create", "source", "appuser")]
    (new,) = [a for a in tw.src.objects["user"].values() if a.get("uid") == "appuser"]
    assert new["title"] == "x"
    tw.run()
    assert tw.planned(tw.run()) == []


def test_target_delete_recreates_by_default_or_disables_source(tw: TwoWay) -> None:
    settle(tw)
    tw.dst.remove("user", tw.tid("u1"))
    res = tw.run(full=True)
    assert tw.planned(res) == [("create", "target", "u1")]
    assert tw.tid("u1")
    tw.configure(extra='reverse_deprovision = "delete"')
    tw.dst.remove("user", tw.tid("u1"))
    tw.run(full=True)
    assert "s1" not in tw.src.objects["user"]


def test_source_delete_deprovisions_target(tw: TwoWay) -> None:
    settle(tw)
    tw.src.remove("user", "s0")
    tw.run()
    assert tw.dst.objects["user"][tw.tid("u0")]["active"] is False


def test_group_membership_edited_on_both_sides_is_unioned(tw: TwoWay) -> None:
    tw.src.put("group", {"cn": "g"}, "g1")
    tw.src.set_group_members("g1", {"s0"})
    settle(tw)
    (gid,) = tw.dst.objects["group"]
    tw.src.set_group_members("g1", {"s0", "s1"})
    tw.dst.set_group_members(gid, tw.dst.members[gid] | {tw.tid("u2")})
    tw.run()
    assert tw.src.members["g1"] == {"s0", "s1", "s2"}
    assert tw.dst.members[gid] == {tw.tid("u0"), tw.tid("u1"), tw.tid("u2")}
    tw.dst.set_group_members(gid, tw.dst.members[gid] - {tw.tid("u0")})
    tw.run()
    assert tw.src.members["g1"] == {"s1", "s2"}
    assert tw.planned(tw.run()) == []


def test_conflicts_cli_lists_and_resolves(tw: TwoWay, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from click.testing import CliRunner

    from syncd.cli.main import main

    tw.configure(users_extra='authority = { title = "manual" }')
    settle(tw)
    tw.edit_source("s0", title="S")
    tw.edit_target("u0", title="T")
    tw.run()
    monkeypatch.setenv("SYNCD_CONFIG", str(tw.tmp / "c.toml"))
    listed = CliRunner().invoke(main, ["conflicts", "-o", "json"])
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.stdout)
    assert (row["path"], row["source_value"], row["target_value"]) == ("title", "S", "T")
    text = CliRunner().invoke(main, ["conflicts"])
    assert "source 'S', target 'T', base 't'" in text.stdout
    res = CliRunner().invoke(main, ["conflicts", "resolve", row["id"], "--take", "target"])
    assert res.exit_code == 0, res.output
    tw.run()
    assert tw.src.objects["user"]["s0"]["title"] == "T"
    # the first line names the store (every command does); then the list, now empty
    assert CliRunner().invoke(main, ["conflicts"]).stdout.splitlines()[1:] == ["no conflicts"]


def test_mapping_error_on_a_linked_user_holds_it_never_deprovisions(tw: TwoWay) -> None:
    (tw.tmp / "c.toml").write_text(CONFIG.replace(
        'title = "title"\n',
        'title = "title"\n'
        'active = {{ from = "enabled", transform = "bool", on_empty = "default", '
        'default = true }}\n').format(
        state=tw.tmp / "s.db", src=tw.names[0], dst=tw.names[1], extra="", users_extra=""))
    tw.cfg = config.load(tw.tmp / "c.toml")
    settle(tw)
    tw.edit_source("s0", enabled="maybe")
    res = tw.run(full=True)
    assert tw.planned(res) == []
    assert res.plan is not None and [h.source_id for h in res.plan.held] == ["s0"]
    assert tw.dst.objects["user"][tw.tid("u0")]["active"] is True


@pytest.mark.parametrize("naming", [True, False], ids=["groups_naming", "without"])
def test_user_back_in_scope_rejoins_unchanged_groups(
        tw: TwoWay, monkeypatch: pytest.MonkeyPatch, naming: bool) -> None:
    """Incremental equals full, two-way: the source group did not change while its member
    was out of scope; back in scope, the member is on the target group again."""
    from syncd.testing import MemoryConnector
    if not naming:
        monkeypatch.delattr(MemoryConnector, "groups_naming")
    tw.configure(extra='deprovision = "delete"\n[flows.f.safety]\nmax_deprovision_percent = 100'
                       '\nmax_member_removal_percent = 100',
                 users_extra='[[flows.f.users.scope]]\nattribute = "title"\nequals = "gone"'
                             '\nnot = true')
    tw.src.put("group", {"cn": "g"}, "g1")
    tw.src.set_group_members("g1", {"s0", "s1"})
    tw.run()
    (gid,) = tw.dst.objects["group"]
    tw.edit_source("s1", title="gone")
    tw.run()
    assert {tw.dst.objects["user"][m]["userName"] for m in tw.dst.members[gid]} == {"u0"}
    tw.edit_source("s1", title="t")
    res = tw.run()
    assert res.reads["user"] == "incremental"
    assert {tw.dst.objects["user"][m]["userName"] for m in tw.dst.members[gid]} == {"u0", "u1"}
    assert tw.src.members["g1"] == {"s0", "s1"}  # nothing reversed on the source
    assert tw.planned(tw.run()) == []
