"""The engine's control flow with in-memory connectors: cursors, retries, quarantine, grace
deletes, incomplete reads, fatal errors, single instance. Real servers are covered in e2e."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syncd import config
from syncd.cycle import engine
from syncd.cycle.result import FlowResult
from syncd.errors import Fatal, Rejected, Retriable, StoreLocked
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
[flows.f]
source = "src"
target = "dst"
deprovision = "{deprovision}"
{extra}
[flows.f.users.mapping]
userName = "uid"
title = "title"
[flows.f.groups.mapping]
displayName = "cn"
"""


class Env:
    def __init__(self, tmp: Path) -> None:
        n = next(_names)
        self.src_name, self.dst_name = f"src{n}", f"dst{n}"
        self.src: Directory = directory(self.src_name)
        self.dst: Directory = directory(self.dst_name)
        self.tmp = tmp
        self.state = tmp / "state.db"
        self.configure()

    def configure(self, deprovision: str = "disable", extra: str = "") -> None:
        (self.tmp / "c.toml").write_text(CONFIG.format(
            state=self.state, src=self.src_name, dst=self.dst_name,
            deprovision=deprovision, extra=extra))
        self.cfg = config.load(self.tmp / "c.toml")

    def run(self, **kw: object) -> FlowResult:
        (res,) = engine.run(self.cfg, **kw)  # type: ignore[arg-type]
        return res

    def target_user(self, uid: str) -> dict[str, object]:
        (u,) = [a for a in self.dst.objects["user"].values() if a.get("userName") == uid]
        return u

    def ops(self, res: FlowResult) -> list[tuple[str, str]]:
        assert res.plan is not None
        return [(c.op, c.name) for c in res.plan.changes]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    e = Env(tmp_path)
    for i in range(5):
        e.src.put("user", {"uid": f"u{i}", "title": "t"}, f"s{i}")
    yield e
    DIRECTORIES.pop(e.src_name, None)
    DIRECTORIES.pop(e.dst_name, None)


def test_second_run_is_incremental_and_plans_only_changes(env: Env) -> None:
    first = env.run()
    assert first.reads == {"user": "full", "group": "full"}
    assert len(env.dst.objects["user"]) == 5
    env.src.put("user", {"uid": "u1", "title": "boss"}, "s1")
    second = env.run()
    assert second.reads["user"] == "incremental"
    assert env.ops(second) == [("update", "u1")]
    assert env.target_user("u1")["title"] == "boss"
    assert env.ops(env.run()) == []


def test_incremental_delete_is_deprovisioned(env: Env) -> None:
    env.run()
    env.src.remove("user", "s2")
    res = env.run()
    assert res.reads["user"] == "incremental"
    assert env.ops(res) == [("deprovision", "u2")]
    assert env.target_user("u2")["active"] is False


def test_full_flag_and_reconcile_interval_force_full_reads(env: Env) -> None:
    env.run()
    assert env.run(full=True).reads["user"] == "full"
    env.configure(extra='full_reconcile = "0s"')
    assert env.run().reads["user"] == "full"


def test_incomplete_read_never_deprovisions(env: Env) -> None:
    env.run()
    env.src.remove("user", "s4")
    env.src.faults["read_page"] = fail_with(lambda: Retriable("connection reset"))
    res = env.run(full=True)
    assert res.result == "failed"
    assert [op for op, _ in env.ops(res)] == []
    assert any("incomplete" in n for n in res.plan.notes)  # type: ignore[union-attr]
    assert env.target_user("u4")["active"] is True


def test_retriable_failure_keeps_cursor_and_is_retried(env: Env,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("syncd.state.records.BACKOFF_BASE", 0.0)
    env.run()
    env.src.put("user", {"uid": "u1", "title": "boss"}, "s1")
    env.dst.faults["update"] = fail_with(lambda: Retriable("503", retry_after=0), times=1)
    failed = env.run()
    assert failed.result == "failed" and len(failed.failures) == 1
    assert any("cursors not advanced" in w for w in failed.warnings)
    again = env.run()
    assert env.ops(again) == [("update", "u1")] and again.result == "ok"
    assert env.target_user("u1")["title"] == "boss"
    assert pending(env) == {}


def pending(env: Env) -> dict[str, object]:
    st = Store(env.cfg.state_url)
    try:
        return dict(st.pending("f"))
    finally:
        st.close()


def test_rejected_change_in_incremental_mode_is_retried_from_stored_item(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """The source will not send an unchanged entry again; the pending row carries it."""
    monkeypatch.setattr("syncd.state.records.BACKOFF_BASE", 0.0)
    env.run()
    env.src.put("user", {"uid": "u3", "title": "new"}, "s3")
    env.dst.faults["update"] = fail_with(lambda: Rejected("schema says no"), times=1)
    failed = env.run()
    assert failed.result == "failed"
    assert "u3" in [p.name for p in pending(env).values()]  # type: ignore[attr-defined]
    retried = env.run()
    assert retried.reads["user"] == "incremental"
    assert env.ops(retried) == [("update", "u3")]
    assert env.target_user("u3")["title"] == "new"
    assert pending(env) == {}


def test_backoff_holds_until_due(env: Env) -> None:
    env.run()
    env.src.put("user", {"uid": "u3", "title": "new"}, "s3")
    env.dst.faults["update"] = fail_with(lambda: Rejected("no"), times=1)
    env.run()
    held = env.run()
    assert env.ops(held) == []
    assert any("retry 2 due at" in h.reason for h in held.plan.held)  # type: ignore[union-attr]


def test_quarantine_after_max_attempts_then_release(env: Env,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("syncd.state.records.BACKOFF_BASE", 0.0)
    env.run()
    env.src.put("user", {"uid": "u0", "title": "x"}, "s0")
    env.dst.faults["update"] = fail_with(lambda: Rejected("never"))
    for _ in range(5):
        assert env.run().result == "failed"
    q = env.run()
    assert env.ops(q) == [] and q.result == "ok"
    assert any("quarantined after 5 attempts" in h.reason for h in q.plan.held)  # type: ignore[union-attr]
    del env.dst.faults["update"]
    st = Store(env.cfg.state_url)
    assert st.release("f", "u0") == 1
    st.close()
    assert env.ops(env.run()) == [("update", "u0")]
    assert env.target_user("u0")["title"] == "x"


def test_quarantine_lifts_when_the_source_changes(env: Env,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("syncd.state.records.BACKOFF_BASE", 0.0)
    monkeypatch.setattr("syncd.state.records.MAX_ATTEMPTS", 1)
    env.run()
    env.src.put("user", {"uid": "u0", "title": "bad"}, "s0")
    env.dst.faults["update"] = fail_with(lambda: Rejected("bad title"), times=1)
    env.run()
    env.src.put("user", {"uid": "u0", "title": "good"}, "s0")
    assert env.ops(env.run()) == [("update", "u0")]
    assert env.target_user("u0")["title"] == "good"


def test_fatal_aborts_flow_and_keeps_cursor(env: Env) -> None:
    env.run()
    env.src.put("user", {"uid": "u1", "title": "boss"}, "s1")
    env.dst.faults["update"] = fail_with(lambda: Fatal("target down"), times=1)
    res = env.run()
    assert res.result == "aborted"
    again = env.run()
    assert again.reads["user"] == "incremental"
    assert env.ops(again) == [("update", "u1")]


def test_grace_delete_after_disable(env: Env) -> None:
    env.configure(extra='delete_after = "30d"')
    env.run()
    env.src.remove("user", "s1")
    assert env.ops(env.run()) == [("deprovision", "u1")]
    assert env.ops(env.run()) == []  # within the grace period: nothing more
    st = Store(env.cfg.state_url)
    (lk,) = [lk for lk in st.links("f", "user").values() if lk.source_id == "s1"]
    from dataclasses import replace
    st.save_links([replace(lk, status_at=datetime.now(UTC) - timedelta(days=31))])
    st.close()
    res = env.run()
    assert [op for op, _ in env.ops(res)] == ["delete"]
    assert not [a for a in env.dst.objects["user"].values() if a.get("userName") == "u1"]


def test_reappearing_within_grace_re_enables_same_object(env: Env) -> None:
    env.configure(extra='delete_after = "30d"')
    env.run()
    tid = next(o for o, a in env.dst.objects["user"].items() if a["userName"] == "u1")
    env.src.remove("user", "s1")
    env.run()
    env.src.put("user", {"uid": "u1", "title": "t"}, "s1")
    assert env.ops(env.run()) == [("update", "u1")]
    assert env.dst.objects["user"][tid]["active"] is True


def test_a_group_back_unchanged_within_grace_is_not_deleted_later(env: Env) -> None:
    """A group keeps its attributes when deprovisioned (only its members are emptied): back
    in the source as it was, nothing differs from its base, yet its link must be active
    again -- or an incremental cycle past ``delete_after`` hard-deletes a group that is in
    scope (only the groups read in that cycle are spared)."""
    env.configure(extra='delete_after = "30d"')
    env.src.put("group", {"cn": "g"}, "g1")
    env.run()
    (tid,) = env.dst.objects["group"]
    env.src.remove("group", "g1")
    assert env.ops(env.run()) == [("deprovision", "g")]
    env.src.put("group", {"cn": "g"}, "g1")
    back = env.run()
    assert back.plan is not None
    assert [(c.op, c.name, c.reason, c.attrs) for c in back.plan.changes] == [
        ("update", "g", "re-appeared in source", {})]
    st = Store(env.cfg.state_url)
    (lk,) = st.links("f", "group").values()
    assert lk.status == "active"
    from dataclasses import replace
    st.save_links([replace(lk, status_at=datetime.now(UTC) - timedelta(days=31))])
    st.close()
    env.src.put("user", {"uid": "u0", "title": "new"}, "s0")  # an incremental cycle
    res = env.run()
    assert res.reads["group"] == "incremental"
    assert env.ops(res) == [("update", "u0")]
    assert tid in env.dst.objects["group"]


def test_membership_follows_groups_incrementally(env: Env) -> None:
    env.src.put("group", {"cn": "g"}, "g1")
    env.src.set_group_members("g1", {"s0", "s1"})
    env.run()
    (gid,) = env.dst.objects["group"]
    assert len(env.dst.members[gid]) == 2
    env.src.set_group_members("g1", {"s1", "s2"})
    res = env.run()
    assert res.reads["group"] == "incremental"
    (c,) = res.plan.changes  # type: ignore[union-attr]
    assert (c.op, c.add, c.remove) == ("set_members", ("s2",), ("s0",))
    names = {env.dst.objects["user"][m]["userName"] for m in env.dst.members[gid]}
    assert names == {"u1", "u2"}


def test_second_run_of_same_flow_is_refused_while_first_holds_lock(env: Env) -> None:
    holder = Store(env.cfg.state_url)
    holder.lock("f")
    try:
        with pytest.raises(StoreLocked, match="already running"):
            env.run()
    finally:
        holder.close()
    assert env.run().result == "ok"


def test_dry_run_writes_no_state_and_no_target(env: Env) -> None:
    res = env.run(dry_run=True)
    assert res.plan is not None and len(res.plan) == 5
    assert not env.state.exists()
    assert env.dst.objects["user"] == {}


def test_bulk_target_gets_chunked_creates_and_409_adopts(env: Env) -> None:
    (env.tmp / "c.toml").write_text((env.tmp / "c.toml").read_text().replace(
        'directory = "' + env.dst_name + '"', 'directory = "' + env.dst_name + '"\nbulk = 2'))
    env.cfg = config.load(env.tmp / "c.toml")
    env.dst.put("user", {"userName": "u4", "title": "pre-existing"})
    env.cfg = config.load(env.tmp / "c.toml")
    res = env.run(full=True)
    assert res.result == "ok", res.failures
    bulk_calls = [c for c in env.dst.calls if c[0] == "create_many"]
    assert bulk_calls and all(int(n) <= 2 for _, _, n in bulk_calls)
    assert len(env.dst.objects["user"]) == 5  # u4 adopted (found by match), not duplicated
    assert env.target_user("u4")["title"] == "t"


SCOPED = """
[flows.f.safety]
max_deprovision_percent = 100
max_member_removal_percent = 100
[[flows.f.users.scope]]
attribute = "title"
equals = "gone"
not = true
"""


@pytest.mark.parametrize("naming", [True, False], ids=["groups_naming", "without"])
@pytest.mark.parametrize("deprovision", ["delete", "disable"])
def test_user_back_in_scope_rejoins_unchanged_groups(
        env: Env, monkeypatch: pytest.MonkeyPatch, naming: bool, deprovision: str) -> None:
    """Incremental equals full: the group did not change, so no feed returns it; the user
    back in scope is found in it through `groups_naming` (or, for a source without it, by
    reading the groups in full)."""
    from syncd.testing import MemoryConnector
    if not naming:
        monkeypatch.delattr(MemoryConnector, "groups_naming")
    env.configure(deprovision, extra=SCOPED)
    env.src.put("group", {"cn": "g"}, "g1")
    env.src.set_group_members("g1", {"s0", "s1"})
    env.run()
    (gid,) = env.dst.objects["group"]
    env.src.put("user", {"uid": "u1", "title": "gone"}, "s1")
    env.run()
    assert len(env.dst.members[gid]) == 1
    env.src.put("user", {"uid": "u1", "title": "t"}, "s1")
    res = env.run()
    assert res.result == "ok", res.errors
    assert res.reads["user"] == "incremental"
    assert res.reads["group"] == ("incremental" if naming else "full")
    names = {env.dst.objects["user"][m]["userName"] for m in env.dst.members[gid]}
    assert names == {"u0", "u1"}
    if naming:
        assert ("groups_naming", "group", "1") in env.src.calls
    assert env.ops(env.run()) == []  # converged: the next cycle has nothing to do
