"""Full reads of push flows planned page by page (syncd.cycle.stream), with in-memory connectors and
pages of about 3 entries: the same plan as a whole-read cycle; an initial sync writes while it
reads, a reconcile checks its whole plan first; deprovisioning only after the whole read and
only when it completed."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd import config
from syncd.cycle import engine, stream
from syncd.cycle.result import FlowResult
from syncd.errors import Fatal
from syncd.state.store import Store
from syncd.testing import DIRECTORIES, Directory, directory, fail_with

_names = itertools.count()

CONFIG = """
[state]
url = "sqlite:///{state}"
[connectors.src]
type = "memory"
directory = "{src}"
page_size = 2
[connectors.dst]
type = "memory"
directory = "{dst}"
bulk = {bulk}
[flows.f]
source = "src"
target = "dst"
[flows.f.users]
match = ["userName"]
[flows.f.users.mapping]
userName = "uid"
title = "title"
active = {{ from = "enabled", transform = "bool", on_empty = "default", default = true }}
[flows.f.groups.mapping]
displayName = "cn"
"""


class Env:
    def __init__(self, tmp: Path, bulk: int = 0) -> None:
        n = next(_names)
        self.src_name, self.dst_name = f"ssrc{n}", f"sdst{n}"
        self.src: Directory = directory(self.src_name)
        self.dst: Directory = directory(self.dst_name)
        self.state = tmp / "state.db"
        (tmp / "c.toml").write_text(CONFIG.format(
            state=self.state, src=self.src_name, dst=self.dst_name, bulk=bulk))
        self.cfg = config.load(tmp / "c.toml")

    def run(self, **kw: object) -> FlowResult:
        (res,) = engine.run(self.cfg, **kw)  # type: ignore[arg-type]
        return res

    def users(self) -> dict[str, dict[str, object]]:
        return {str(a["userName"]): a for a in self.dst.objects["user"].values()}

    def links(self) -> int:
        store = Store(f"sqlite:///{self.state}")
        try:
            return store.count_links("f", "user", status=None)
        finally:
            store.close()


@pytest.fixture(autouse=True)
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream, "PAGE", 3)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    for i in range(10):
        e.src.put("user", {"uid": f"u{i}", "title": "t"}, f"s{i}")
    yield e
    DIRECTORIES.pop(e.src_name, None)
    DIRECTORIES.pop(e.dst_name, None)


def test_initial_sync_streams_every_page_and_lists_small_plans(env: Env) -> None:
    res = env.run()
    assert res.result == "ok", res.errors
    assert sorted(env.users()) == [f"u{i}" for i in range(10)]
    assert env.links() == 10 and res.applied == 10
    assert res.plan is not None and res.plan.summary()["user"]["create"] == 10
    assert [c.op for c in res.plan.changes] == ["create"] * 10  # few enough: all listed
    again = env.run(full=True)
    assert again.plan is not None and again.plan.changes == () and again.applied == 0


def test_large_plans_keep_counts_not_changes(env: Env, monkeypatch: pytest.MonkeyPatch
                                              ) -> None:
    monkeypatch.setattr(stream, "LIST_MAX", 4)
    res = env.run()
    assert res.plan is not None
    assert res.plan.changes == ()
    assert res.plan.streamed == {"user": {"create": 10}}
    assert res.plan.summary()["user"]["create"] == 10
    assert res.plan.to_dict()["streamed"] == {"user": {"create": 10}}


def test_target_is_written_while_the_source_is_still_read(env: Env) -> None:
    """The 3rd page is only served once the target has received a create: a cycle that
    read everything before writing would wait here forever (bounded by the timeout)."""
    created = threading.Event()
    waited: list[bool] = []
    env.dst.faults["create"] = lambda oid: created.set()
    pages = itertools.count()

    def gate(oid: str) -> None:
        if next(pages) == 3:
            waited.append(created.wait(timeout=10))

    env.src.faults["read_page"] = gate
    res = env.run()
    assert res.result == "ok"
    assert waited == [True]
    assert len(env.users()) == 10


def test_bulk_creates_are_buffered_across_pages(tmp_path: Path) -> None:
    e = Env(tmp_path, bulk=4)
    for i in range(10):
        e.src.put("user", {"uid": f"u{i}"}, f"s{i}")
    res = e.run()
    assert res.result == "ok" and len(e.users()) == 10
    sizes = [int(oid) for op, _, oid in e.dst.calls if op == "create_many"]
    assert sizes == [4, 4, 2]  # pages of 3, requests of the target's maxOperations


def test_deprovisioning_waits_for_the_whole_read_and_the_safety_check(env: Env) -> None:
    env.run()
    env.src.remove("user", "s3")
    env.src.put("user", {"uid": "u10", "title": "t"}, "s10")
    res = env.run(full=True)
    assert res.result == "ok"
    assert res.plan is not None
    assert sorted((c.op, c.name) for c in res.plan.changes) == [
        ("create", "u10"), ("deprovision", "u3")]
    assert env.users()["u3"]["active"] is False
    assert all(u["active"] is True for n, u in env.users().items() if n != "u3")


def test_reconcile_collects_the_pages_and_checks_the_whole_plan_first(env: Env) -> None:
    """With links, a wrong filter must not create or update anything either: pages are
    planned while reading, but nothing is written before the whole plan passed the check."""
    env.run()
    for i in range(8):
        env.src.remove("user", f"s{i}")
    env.src.put("user", {"uid": "u8", "title": "boss"}, "s8")
    env.src.put("user", {"uid": "new", "title": "t"}, "s99")
    res = env.run(full=True)
    assert res.result == "refused" and res.applied == 0
    assert "8 of 10" in res.refused[0]
    assert env.users()["u8"]["title"] == "t" and "new" not in env.users()
    assert all(u["active"] is True for u in env.users().values())
    allowed = env.run(full=True, allow_deletes=True)
    assert allowed.result == "ok" and env.users()["u8"]["title"] == "boss"
    assert sum(1 for u in env.users().values() if u["active"] is False) == 8


def test_reconcile_writes_nothing_while_reading(env: Env) -> None:
    env.run()
    for i in range(10):
        env.src.put("user", {"uid": f"u{i}", "title": "new"}, f"s{i}")
    updates_at_page: list[int] = []
    env.src.faults["read_page"] = lambda oid: updates_at_page.append(
        sum(1 for op, _k, _o in env.dst.calls if op == "update"))
    res = env.run(full=True)
    assert res.result == "ok" and res.applied == 10
    assert updates_at_page and set(updates_at_page) == {0}
    assert all(u["title"] == "new" for u in env.users().values())


def test_mapping_error_on_a_linked_user_holds_it_never_deprovisions(env: Env) -> None:
    env.run()
    env.src.put("user", {"uid": "u4", "title": "t", "enabled": "maybe"}, "s4")
    for dry_run in (True, False):
        res = env.run(full=True, dry_run=dry_run)
        assert res.plan is not None
        assert [c.op for c in res.plan.changes] == []
        assert [h.source_id for h in res.plan.held] == ["s4"]
    assert env.users()["u4"]["active"] is True


def test_fatal_mid_read_aborts_without_deprovisioning_or_cursor(env: Env) -> None:
    env.run()
    env.src.put("user", {"uid": "u0", "title": "changed"}, "s0")
    env.dst.faults["update"] = fail_with(lambda: Fatal("token revoked"))
    res = env.run(full=True)
    assert res.result == "aborted"
    assert any("token revoked" in e for e in res.errors)
    assert all(u["active"] is True for u in env.users().values())
    store = Store(f"sqlite:///{env.state}")
    try:
        assert store.cursor("f", "src", "user").full_at is not None  # the first run's
        assert [r["result"] for r in store.recent_runs("f")][:1] == ["aborted"]
    finally:
        store.close()


def test_stop_mid_read_ends_aborted_and_rerun_converges(env: Env) -> None:
    stop = threading.Event()
    env.dst.faults["create"] = lambda oid: stop.set()
    res = env.run(stop=stop)
    assert res.result == "aborted"
    made = len(env.users())
    assert 0 < made < 10 and env.links() == made
    env.dst.faults.clear()
    again = env.run()
    assert again.result == "ok" and len(env.users()) == 10 and env.links() == 10


def test_existing_target_objects_are_adopted_across_pages(env: Env) -> None:
    for i in range(0, 10, 2):
        env.dst.put("user", {"userName": f"U{i}", "title": "old"}, f"t{i}")
    res = env.run()
    assert res.result == "ok"
    assert res.plan is not None and res.plan.summary()["user"] == {
        "create": 5, "adopt": 5, "update": 0, "deprovision": 0, "delete": 0}
    assert len(env.dst.objects["user"]) == 10  # no duplicates


@pytest.mark.parametrize("dry_run", [True, False])
def test_an_identifier_planned_on_an_earlier_page_holds_the_later_entry(
        env: Env, dry_run: bool) -> None:
    """Each page's creates and adoptions take their identifiers for the pages after it: a
    later entry whose userName differs only in case is held, never a second account."""
    env.dst.put("user", {"userName": "U2", "title": "old"}, "t2")  # s2 adopts it
    # read in id order, pages of 3: s0-s2, ..., s9 z1 z2: pages later than s1's create and
    # s2's adoption
    env.src.put("user", {"uid": "U1", "title": "t"}, "z1")
    env.src.put("user", {"uid": "u2", "title": "t"}, "z2")
    res = env.run(dry_run=dry_run)
    assert res.plan is not None
    held = {h.source_id: h.reason for h in res.plan.held}
    assert set(held) == {"z1", "z2"}
    assert "is also planned for source entry s1 " in held["z1"]
    assert "source entry s2" in held["z2"]  # the adopted object is s2's
    assert res.plan.summary()["user"]["create"] == 9
    assert res.plan.summary()["user"]["adopt"] == 1
    if not dry_run:
        assert len(env.dst.objects["user"]) == 10


def test_group_members_are_restricted_to_users_read_in_scope(env: Env) -> None:
    env.src.put("group", {"cn": "g"}, "g1")
    env.src.set_group_members("g1", {"s1", "s2", "nobody"})
    res = env.run()
    assert res.result == "ok"
    (gid,) = env.dst.objects["group"]
    names = {str(env.dst.objects["user"][m]["userName"]) for m in env.dst.members[gid]}
    assert names == {"u1", "u2"}


def test_failed_lookup_mid_read_still_records_what_was_applied(env: Env) -> None:
    """Match candidates of page 2 cannot be looked up (Fatal): page 1's creates, already
    in flight, are finished and linked before the run ends aborted."""
    calls = itertools.count()

    def flaky(oid: str) -> None:
        if next(calls) >= 4:  # page 1 (4 entries) looked up, then the target fails
            raise Fatal("target down")

    env.dst.faults["find"] = flaky
    res = env.run()
    assert res.result == "aborted"
    assert len(env.users()) == 4 and env.links() == 4
    env.dst.faults.clear()
    assert env.run().result == "ok" and len(env.users()) == 10 and env.links() == 10


def test_dry_run_plans_the_same_pages_and_shows_the_whole_plan(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream, "LIST_MAX", 4)  # applies to runs that write, not previews
    preview = env.run(dry_run=True)
    assert preview.plan is not None and len(preview.plan.changes) == 10
    assert env.dst.objects["user"] == {} and not env.state.exists()
    env.run()
    env.src.remove("user", "s3")
    for i in (0, 1):
        env.src.put("user", {"uid": f"u{i}", "title": "new"}, f"s{i}")
    preview = env.run(full=True, dry_run=True)
    real = env.run(full=True)
    assert preview.plan is not None and real.plan is not None
    assert [c.to_dict() for c in preview.plan.changes] == [
        c.to_dict() for c in real.plan.changes]
    assert sorted((c.op, c.name) for c in real.plan.changes) == [
        ("deprovision", "u3"), ("update", "u0"), ("update", "u1")]
