"""Two-way flows lose nothing: defects found by the oracle and the issue, as regular tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd import config
from syncd.state.store import Store
from syncd.testing import DIRECTORIES
from tests.unit.test_two_way import TwoWay, settle


@pytest.fixture
def tw(tmp_path: Path) -> Iterator[TwoWay]:
    t = TwoWay(tmp_path)
    for i in range(3):
        t.src.put("user", {"uid": f"u{i}", "title": "t", "nick": f"n{i}", "cn": f"C {i}"},
                  f"s{i}")
    yield t
    for name in t.names:
        DIRECTORIES.pop(name, None)


def _overlap(tw: TwoWay, users_extra: str = "", extra: str = "") -> None:
    """The target's feed re-reads an overlap window, as a SCIM meta.lastModified watermark."""
    tw.configure(users_extra=users_extra, extra=extra)
    path = tw.tmp / "c.toml"
    path.write_text(path.read_text().replace(
        f'directory = "{tw.names[1]}"', f'directory = "{tw.names[1]}"\noverlap = 50'))
    tw.cfg = config.load(path)


def test_a_held_conflict_survives_a_cycle_that_reads_only_one_side(tw: TwoWay) -> None:
    _overlap(tw, users_extra='authority = { title = "manual" }')
    settle(tw)
    tw.edit_source("s1", title="S")
    tw.edit_target("u1", title="T")
    tw.run()
    for _ in range(2):  # the target re-reads its overlap window; the source has moved on
        res = tw.run()
        assert tw.src.objects["user"]["s1"]["title"] == "S", "the source edit was lost"
        assert tw.dst.objects["user"][tw.tid("u1")]["title"] == "T"
        assert any("conflict on title" in h.reason for h in res.plan.held)  # type: ignore[union-attr]
        st = Store(tw.cfg.state_url)
        try:
            assert [(c["source_value"], c["target_value"]) for c in st.conflicts("f")] == [
                ("S", "T")]
        finally:
            st.close()


@pytest.mark.parametrize("policy", ["delete", "disable", "recreate"])
def test_a_target_delete_seen_incrementally_through_a_source_edit(tw: TwoWay,
                                                                  policy: str) -> None:
    tw.configure(extra=f'reverse_deprovision = "{policy}"')
    path = tw.tmp / "c.toml"
    path.write_text(path.read_text().replace(
        f'directory = "{tw.names[1]}"', f'directory = "{tw.names[1]}"\nreport_deletes = false'))
    tw.cfg = config.load(path)
    settle(tw)
    tw.dst.remove("user", tw.tid("u1"))  # deleted in the app; its feed reports no deletes
    tw.edit_source("s1", title="edited")
    res = tw.run()  # asserts result ok: not "Rejected … gone (404)"
    if policy == "recreate":
        assert tw.dst.objects["user"][tw.tid("u1")]["title"] == "edited"
    elif policy == "delete":
        assert "s1" not in tw.src.objects["user"]
    else:
        assert [(c.op, c.side) for c in res.plan.changes] == [  # type: ignore[union-attr]
            ("deprovision", "source")]


def test_an_app_side_create_converges_in_one_cycle(tw: TwoWay) -> None:
    tw.configure(extra='create = "both"')
    path = tw.tmp / "c.toml"  # a one-way path computed from the source (like entryUUID)
    path.write_text(path.read_text().replace(
        'nickName = "nick"', 'nickName = "nick"\nexternalId = {from = "uid", '
                             'transform = ["upper"]}'))
    tw.cfg = config.load(path)
    settle(tw)
    tw.dst.put("user", {"userName": "app.person", "title": "x", "nickName": "ap",
                        "displayName": "App Person"})
    res = tw.run()
    assert [(c.op, c.side) for c in res.plan.changes] == [  # type: ignore[union-attr]
        ("create", "source")]
    assert tw.planned(tw.run()) == [], "a second cycle still had work: not converged in one"


def test_two_way_a_user_deleted_at_the_source_leaves_the_target_groups(tw: TwoWay) -> None:
    tw.configure(extra='deprovision = "delete"')
    tw.src.put("group", {"cn": "staff"}, "g1")
    tw.src.set_group_members("g1", {"s0", "s1", "s2"})
    settle(tw)
    with tw.src.lock:  # deleted; the group itself is not in the feed
        tw.src.objects["user"].pop("s1")
        tw.src.log.append((tw.src.seq() + 1, "user", "s1", True))
    tw.run()
    (gid,) = tw.dst.objects["group"]
    assert {tw.dst.objects["user"][m]["userName"] for m in tw.dst.members[gid]
            if m in tw.dst.objects["user"]} == {"u0", "u2"}
    assert len(tw.dst.members[gid]) == 2


def test_a_target_recreated_while_a_conflict_is_held_takes_the_source_value(tw: TwoWay
                                                                            ) -> None:
    """Oracle (two-way, recreate): the target object of a pair with a held manual conflict
    is deleted while the source is not read; it comes back with the source's value, not the
    stale base, and the conflict is gone with the side it was about."""
    tw.configure(users_extra='authority = { title = "manual" }')
    settle(tw)
    tw.edit_source("s1", title="S")
    tw.edit_target("u1", title="T")
    tw.run()  # conflict held
    tw.dst.remove("user", tw.tid("u1"))
    tw.run()
    assert tw.dst.objects["user"][tw.tid("u1")]["title"] == "S"
    assert tw.src.objects["user"]["s1"]["title"] == "S"
    st = Store(tw.cfg.state_url)
    try:
        assert st.conflicts("f") == []
    finally:
        st.close()
    assert tw.planned(tw.run()) == []
