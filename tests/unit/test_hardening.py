"""Never act on the wrong object: the engine's side of the hardening (in-memory peers).

Each test here failed on the engine before the hardening; the same behaviours are checked end
to end against real servers in `tests/e2e/test_hardening_e2e.py`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.errors import Unreachable
from syncd.testing import DIRECTORIES, fail_with
from tests.unit.test_engine import Env


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    yield e
    DIRECTORIES.pop(e.src_name, None)
    DIRECTORIES.pop(e.dst_name, None)


def test_a_dead_target_ends_the_run_after_a_few_changes(env: Env) -> None:
    for i in range(300):
        env.src.put("user", {"uid": f"u{i:03}", "title": "t"}, f"s{i:03}")
    env.dst.faults["create"] = fail_with(lambda: Unreachable("connection refused"))
    started = time.monotonic()
    res = env.run()
    assert res.result == "aborted"
    assert any("down" in e for e in res.errors)
    creates = [c for c in env.dst.calls if c[0] == "create"]
    # halted after a few in a row (the window of work in flight may still finish), not 300
    assert len(creates) < 20
    assert time.monotonic() - started < 10
    # nothing is parked in backoff: the next run with the target back creates everything
    del env.dst.faults["create"]
    res = env.run()
    assert res.result == "ok"
    assert len(env.dst.objects["user"]) == 300


def test_an_unreachable_change_now_and_then_is_not_down(env: Env) -> None:
    for i in range(30):
        env.src.put("user", {"uid": f"u{i:03}", "title": "t"}, f"s{i:03}")
    env.dst.faults["create"] = fail_with(lambda: Unreachable("reset"), only="u017")
    res = env.run()
    assert res.result == "failed"  # one failed, the rest went through: not aborted
    assert len(env.dst.objects["user"]) == 29


# -- 1. absence is not proof ------------------------------------------------------------------

def _settled(env: Env, n: int = 10, deprovision: str = "delete") -> None:
    env.configure(deprovision=deprovision)
    for i in range(n):
        env.src.put("user", {"uid": f"u{i:02}", "title": "t"}, f"s{i:02}")
    assert env.run().result == "ok"


@pytest.mark.parametrize("kind", ["user", "group"])
def test_missing_from_a_full_listing_but_still_there_is_held(env: Env, kind: str) -> None:
    _settled(env)
    for g in range(3):
        env.src.put("group", {"cn": f"g{g}"}, f"g{g}")
    assert env.run().result == "ok"
    hidden = {"user": ["s03", "s07"], "group": ["g1"]}[kind]
    env.src.hidden.update(hidden)  # a shifted listing: they exist but were not listed
    gone = "s05" if kind == "user" else "g2"
    env.src.remove(kind, gone)
    res = env.run(full=True)
    assert res.result == "ok"
    assert [(c.op, c.source_id) for c in res.plan.changes  # type: ignore[union-attr]
            if c.op in ("delete", "deprovision")] == [("delete", gone)]
    held = {h.source_id: h.reason for h in res.plan.held}  # type: ignore[union-attr]
    assert set(held) == set(hidden)
    assert all("not confirmed gone" in r for r in held.values())
    assert len(env.dst.objects[kind]) == {"user": 9, "group": 2}[kind]


def test_a_source_that_cannot_confirm_deprovisions_nothing(env: Env,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    from syncd.testing import MemoryConnector

    _settled(env)
    env.src.remove("user", "s02")
    monkeypatch.delattr(MemoryConnector, "confirm_gone")
    res = env.run(full=True)
    assert [c.op for c in res.plan.changes] == []  # type: ignore[union-attr]
    assert [h.source_id for h in res.plan.held] == ["s02"]  # type: ignore[union-attr]
    assert "cannot look entries up" in res.plan.held[0].reason  # type: ignore[union-attr]
    assert len(env.dst.objects["user"]) == 10


def test_a_failing_confirmation_deprovisions_nothing(env: Env) -> None:
    from syncd.errors import Retriable

    _settled(env)
    env.src.remove("user", "s02")
    env.src.faults["confirm_gone"] = fail_with(lambda: Retriable("timeout"))
    res = env.run(full=True)
    assert [c.op for c in res.plan.changes] == []  # type: ignore[union-attr]
    assert len(env.dst.objects["user"]) == 10


def test_out_of_scope_entries_read_need_no_lookup(env: Env) -> None:
    env.configure(deprovision="delete", extra='[[flows.f.users.scope]]\n'
                                              'attribute = "title"\nequals = "t"')
    for i in range(4):
        env.src.put("user", {"uid": f"u{i}", "title": "t"}, f"s{i}")
    assert env.run().result == "ok"
    env.src.put("user", {"uid": "u1", "title": "left"}, "s1")
    env.src.calls.clear()
    res = env.run(full=True)
    assert [(c.op, c.source_id) for c in res.plan.changes] == [  # type: ignore[union-attr]
        ("delete", "s1")]
    assert not [c for c in env.src.calls if c[0] == "confirm_gone"]


def test_two_way_target_listing_that_missed_objects_deletes_nothing(tmp_path: Path) -> None:
    from tests.unit.test_two_way import TwoWay, settle

    tw = TwoWay(tmp_path)
    try:
        for i in range(6):
            tw.src.put("user", {"uid": f"u{i}", "title": "t", "nick": f"n{i}", "cn": f"C {i}"},
                       f"s{i}")
        tw.configure(extra='reverse_deprovision = "delete"')
        settle(tw)
        tw.dst.hidden.update({tw.tid("u1"), tw.tid("u2")})  # shifted out of the listing
        tw.dst.remove("user", tw.tid("u4"))  # really deleted in the app
        res = tw.run(full=True)
        assert [(c.op, c.side, c.source_id) for c in res.plan.changes  # type: ignore[union-attr]
                ] == [("delete", "source", "s4")]
        assert sorted(h.source_id for h in res.plan.held) == ["s1", "s2"]  # type: ignore[union-attr]
        assert sorted(tw.src.objects["user"]) == ["s0", "s1", "s2", "s3", "s5"]
    finally:
        for name in tw.names:
            DIRECTORIES.pop(name, None)


# -- 4. one bad entry must not stop the flow --------------------------------------------------

def test_a_lookup_the_target_rejects_holds_that_entry_only(env: Env) -> None:
    from syncd.errors import Rejected

    for i in range(3):  # few unlinked entries: one `find` each
        env.src.put("user", {"uid": f"u{i}", "title": "t"}, f"s{i}")
    env.src.put("user", {"uid": "bad\tname", "title": "t"}, "s9")
    env.dst.faults["find"] = fail_with(lambda: Rejected("400 invalidFilter"), only="bad\tname")
    res = env.run()
    assert res.result == "ok"
    assert sorted(a["userName"] for a in env.dst.objects["user"].values()) == ["u0", "u1", "u2"]
    (held,) = res.plan.held  # type: ignore[union-attr]
    assert held.source_id == "s9" and "invalidFilter" in held.reason


# -- 2. adoption never takes an object that is already linked ---------------------------------

@pytest.mark.parametrize("match", ['["userName"]', "[]"])
def test_a_second_entry_with_a_linked_uid_never_takes_the_account_over(env: Env,
                                                                       match: str) -> None:
    env.configure(extra=f"match = {match}")
    env.src.put("user", {"uid": "user000001", "title": "employee",
                         "mail": "emp@example.com"}, "emp")
    assert env.run().result == "ok"
    before = dict(env.target_user("user000001"))
    env.src.put("user", {"uid": "user000001", "title": "contractor"}, "contractor")
    res = env.run(full=True)
    assert env.target_user("user000001") == before  # nothing written to the employee
    assert len(env.dst.objects["user"]) == 1
    reasons = [h.reason for h in res.plan.held] + [  # type: ignore[union-attr]
        f.message for f in res.failures]
    assert any("collision" in r and "emp" in r and "contractor" in r for r in reasons), reasons
    from syncd.state.store import Store

    store = Store(env.cfg.state_url)
    try:
        pending = store.pending("f", "user")
        assert pending["contractor"].error_class == "Collision"
        assert set(store.links("f", "user")) == {"emp"}
    finally:
        store.close()
    # deleting the contractor later never disables the employee
    env.src.remove("user", "contractor")
    env.run(full=True)
    assert env.target_user("user000001").get("active", True) is True


def test_two_entries_differing_only_in_case_become_one_create_and_a_collision(env: Env
                                                                             ) -> None:
    env.src.put("user", {"uid": "Jane.Doe", "title": "t"}, "a")
    env.src.put("user", {"uid": "jane.doe", "title": "t"}, "b")
    res = env.run()
    assert len(env.dst.objects["user"]) == 1
    (held,) = res.plan.held  # type: ignore[union-attr]
    assert "collision" in held.reason and held.source_id in ("a", "b")
    from syncd.state.store import Store

    store = Store(env.cfg.state_url)
    try:
        assert len(store.links("f", "user")) == 1
    finally:
        store.close()


def test_case_collisions_are_caught_across_the_pages_of_a_streamed_read(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from syncd.cycle import stream

    monkeypatch.setattr(stream, "PAGE", 3)
    for i in range(10):
        env.src.put("user", {"uid": f"u{i}", "title": "t"}, f"s{i}")
    env.src.put("user", {"uid": "U3", "title": "t"}, "s99")  # on a later page than u3
    res = env.run()
    assert len(env.dst.objects["user"]) == 10
    assert [h.source_id for h in res.plan.held] == ["s99"]  # type: ignore[union-attr]


# -- 3. every destructive effect goes through the safety check --------------------------------

def _staff(env: Env, n: int = 100, extra: str = "") -> None:
    env.configure(extra=extra)
    for i in range(n):
        env.src.put("user", {"uid": f"u{i:03}", "title": "t", "mail": f"u{i:03}@example.com",
                             "employeetype": "staff"}, f"s{i:03}")


MAP_ACTIVE = ('[flows.f.users.mapping.active]\nfrom = "employeetype"\n'
              'transform = [{replace = {pattern = "^staff$", with = "true"}}, '
              '{replace = {pattern = "^(?!true$).*$", with = "false"}}, "bool"]\n')


def test_disabling_everyone_through_a_mapped_active_is_refused(env: Env) -> None:
    _staff(env)
    (env.tmp / "c.toml").write_text((env.tmp / "c.toml").read_text() + MAP_ACTIVE)
    from syncd import config

    env.cfg = config.load(env.tmp / "c.toml")
    assert env.run().result == "ok"
    for i in range(100):
        env.src.put("user", {**env.src.objects["user"][f"s{i:03}"], "employeetype": "x"},
                    f"s{i:03}")
    res = env.run()
    assert res.result == "refused"
    assert any("active turning false" in r for r in res.refused), res.refused
    assert all(a.get("active") is True for a in env.dst.objects["user"].values())
    assert env.run(allow_deletes=True).result == "ok"
    assert all(a.get("active") is False for a in env.dst.objects["user"].values())


def test_a_mapping_that_rewrites_every_email_is_refused(env: Env) -> None:
    _staff(env)
    (env.tmp / "c.toml").write_text((env.tmp / "c.toml").read_text().replace(
        'title = "title"', 'title = "title"\n"emails.work" = "mail"'))
    from syncd import config

    env.cfg = config.load(env.tmp / "c.toml")
    assert env.run().result == "ok"  # first values are not rewrites
    (env.tmp / "c.toml").write_text((env.tmp / "c.toml").read_text().replace(
        '"emails.work" = "mail"', '"emails.work" = "{uid}@wrong.example.com"'))
    env.cfg = config.load(env.tmp / "c.toml")
    res = env.run()
    assert res.result == "refused"
    assert any("emails.work would be rewritten on 100 of 100" in r for r in res.refused)
    assert env.target_user("u001")["emails.work"] == "u001@example.com"


def test_removing_every_membership_is_refused(env: Env) -> None:
    _staff(env, 40)
    for g in range(4):
        env.src.put("group", {"cn": f"g{g}", "member": tuple(f"s{i:03}" for i in range(
            g * 10, g * 10 + 10))}, f"g{g}")
        env.src.set_group_members(f"g{g}", {f"s{i:03}" for i in range(g * 10, g * 10 + 10)})
    assert env.run().result == "ok"
    assert all(len(m) == 10 for m in env.dst.members.values())
    for g in range(4):  # what a member_attribute typo looks like: every group empty
        env.src.set_group_members(f"g{g}", set())
    res = env.run(full=True)
    assert res.result == "refused"
    assert sum("members" in r and "would be removed" in r for r in res.refused) >= 1
    assert all(len(m) == 10 for m in env.dst.members.values())


def test_member_removal_limits_per_run(env: Env) -> None:
    _staff(env, 40, extra="[flows.f.safety]\nmax_member_removals = 15\nmember_floor = 100")
    for g in range(4):
        env.src.set_group_members(f"g{g}", {f"s{i:03}" for i in range(g * 10, g * 10 + 10)})
        env.src.put("group", {"cn": f"g{g}"}, f"g{g}")
        env.src.set_group_members(f"g{g}", {f"s{i:03}" for i in range(g * 10, g * 10 + 10)})
    assert env.run().result == "ok"
    for g in range(2):
        env.src.set_group_members(f"g{g}", set())
    res = env.run(full=True)
    assert res.result == "refused"
    assert any("20 group memberships would be removed" in r for r in res.refused)


# -- 11. membership follows the users; nothing journaled as applied that was not sent --------

def _grouped(env: Env, deprovision: str) -> None:
    env.configure(deprovision=deprovision)
    for i in range(4):
        env.src.put("user", {"uid": f"u{i}", "title": "t"}, f"s{i}")
    env.src.put("group", {"cn": "staff"}, "g1")
    env.src.set_group_members("g1", {"s0", "s1", "s2", "s3"})
    assert env.run().result == "ok"


def _target_members(env: Env) -> set[str]:
    (gid,) = env.dst.objects["group"]
    names = {oid: a["userName"] for oid, a in env.dst.objects["user"].items()}
    return {names.get(m, f"<deleted {m}>") for m in env.dst.members[gid]}


@pytest.mark.parametrize("deprovision", ["delete", "disable"])
def test_a_deprovisioned_user_leaves_the_groups_in_the_same_incremental_run(
        env: Env, deprovision: str) -> None:
    _grouped(env, deprovision)
    # deleted at the source; the group is not in the feed (no refint on this directory)
    with env.src.lock:
        env.src.objects["user"].pop("s1")
        env.src.log.append((env.src.seq() + 1, "user", "s1", True))
    res = env.run()
    assert res.reads["user"] == "incremental" and res.result == "ok"
    assert _target_members(env) == {"u0", "u2", "u3"}
    assert [c.op for c in res.plan.changes] == ["set_members", deprovision.replace(  # type: ignore[union-attr]
        "disable", "deprovision")]
    assert [c.op for c in env.run().plan.changes] == []  # type: ignore[union-attr]


def test_a_failed_member_removal_keeps_what_is_needed_to_retry_it(env: Env) -> None:
    from syncd.errors import Retriable

    _grouped(env, "delete")
    env.src.remove("user", "s2")
    env.dst.faults["set_members"] = fail_with(lambda: Retriable("503"), times=1)
    res = env.run()
    assert res.result == "failed"
    assert "u2" not in {a["userName"] for a in env.dst.objects["user"].values()}
    assert len(_target_members(env)) == 4  # the deleted user is still listed there
    res = env.run(full=True)
    assert _target_members(env) == {"u0", "u1", "u3"}
    journal_ok = [c for c in res.plan.changes if c.op == "set_members"]  # type: ignore[union-attr]
    assert journal_ok and not res.failures


def test_a_member_change_that_sends_nothing_is_not_applied(env: Env) -> None:
    from syncd.errors import Rejected

    env.src.put("user", {"uid": "u0", "title": "t"}, "s0")
    env.src.put("group", {"cn": "staff"}, "g1")
    env.src.set_group_members("g1", {"s0"})
    env.dst.faults["create"] = fail_with(lambda: Rejected("400 bad user"), only="u0")
    res = env.run()
    fails = {(f.change.kind, f.change.op) for f in res.failures}
    assert ("group", "set_members") in fails  # nothing was sent for it: not "applied"


# -- shrunk from the oracle (tests/oracle) ------------------------------------------------------

def test_a_listing_that_missed_a_linked_entry_keeps_no_cursor(env: Env) -> None:
    """Oracle: a full read whose listing silently missed an object must not hand the next
    cycle a feed that starts after it; the next cycle reads in full again."""
    from syncd.state.store import Store

    _settled(env, 4, deprovision="disable")
    env.src.put("user", {"uid": "u09", "title": "t"}, "s09")

    def cursor() -> str | None:
        store = Store(env.cfg.state_url, readonly=True)
        try:
            return store.cursor("f", "src", "user").value
        finally:
            store.close()

    before = cursor()
    env.src.hidden = {"s01"}
    res = env.run(full=True)
    assert res.result == "ok" and [h.source_id for h in res.plan.held] == ["s01"]  # type: ignore[union-attr]
    assert cursor() == before  # not advanced past what the listing missed
    env.src.hidden = set()
    assert env.run().result == "ok"
    assert env.target_user("u01").get("active") is not False


def test_a_listing_that_knows_it_missed_objects_keeps_no_cursor(env: Env) -> None:
    """Oracle: an object created before a listing that missed it (and said so) is synced by
    the next cycle, not skipped by a cursor taken after it."""
    env.src.put("user", {"uid": "late", "title": "t"}, "s9")
    env.src.hidden, env.src.hidden_detected = {"s9"}, True
    assert env.run().result == "ok"
    env.src.hidden = set()
    assert env.run().result == "ok"
    assert env.target_user("late")["title"] == "t"


def test_groups_planned_against_an_incomplete_user_read_are_planned_again(env: Env) -> None:
    """Oracle: a user missed by a listing (that said so) was left out of its group, and the
    group's cursor moved on: the membership never came. Now the group's cursor waits too and
    no member is removed because its user was not listed."""
    env.src.put("user", {"uid": "a", "title": "t"}, "sa")
    env.src.put("group", {"cn": "g"}, "g1")
    env.src.set_group_members("g1", set())
    assert env.run().result == "ok"
    env.src.put("user", {"uid": "b", "title": "t"}, "sb")
    env.src.set_group_members("g1", {"sa", "sb"})
    env.src.hidden, env.src.hidden_detected = {"sb"}, True
    assert env.run(full=True).result == "ok"
    env.src.hidden = set()
    assert env.run().result == "ok"
    (gid,) = env.dst.objects["group"]
    assert {env.dst.objects["user"][m]["userName"] for m in env.dst.members[gid]} == {"a", "b"}


def test_an_incomplete_target_listing_is_not_taken_for_no_match(env: Env) -> None:
    """Matching many unlinked entries lists the target once; a listing that says it missed
    objects must not make syncd create duplicates of what it missed."""
    for i in range(80):  # > FIND_LIMIT: the target is listed, not asked entry by entry
        env.src.put("user", {"uid": f"u{i:02}", "title": "t"}, f"s{i:02}")
        env.dst.put("user", {"userName": f"u{i:02}", "title": "t"}, f"t{i:02}")
    env.dst.hidden, env.dst.hidden_detected = {"t05", "t40"}, True
    res = env.run()
    assert res.result == "ok"
    assert len(env.dst.objects["user"]) == 80
    assert {c.op for c in res.plan.changes} == {"adopt"}  # type: ignore[union-attr]
