"""Reference attributes (``reference = "user"``) through the engine, with in-memory
connectors: a manager is named by its source anchor, the target gets the manager's target id,
filled when the manager is linked later (also by an incremental cycle that does not read the
report again), cleared when it is deprovisioned, empty (never an error) when out of scope."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd.cycle.render import text
from syncd.plan.push import Item
from syncd.plan.references import Lookup, refill, resolve
from syncd.state.records import Link, RefRow
from tests.unit.memflow import MemoryFlow

BODY = """[flows.f.safety]
max_deprovision_percent = 100
max_rewrite_percent = 100
[flows.f.users.mapping]
userName = "uid"
"enterprise.manager" = { from = "manager", reference = "user" }
[[flows.f.users.scope]]
attribute = "title"
equals = "out"
not = true
"""


class Env(MemoryFlow):
    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp, BODY, prefix="r")

    def target(self, uid: str) -> tuple[str, dict[str, object]]:
        (hit,) = [(o, a) for o, a in self.dst.objects["user"].items()
                  if a.get("userName") == uid]
        return hit

    def manager_of(self, uid: str) -> object:
        return self.target(uid)[1].get("enterprise.manager")

@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    yield e
    e.close()


def test_manager_and_report_created_in_one_cycle_in_either_order(env: Env) -> None:
    """The report is listed before its manager (ids sort so): both are created, and the
    report gets the manager's target id in the same cycle; the next cycle plans nothing."""
    env.src.put("user", {"uid": "boss"}, "s9")
    env.src.put("user", {"uid": "rep1", "manager": "s9"}, "s1")
    env.src.put("user", {"uid": "rep2", "manager": "s1"}, "s5")  # manager listed first
    res = env.run()
    boss, rep1 = env.target("boss")[0], env.target("rep1")[0]
    assert env.manager_of("rep1") == boss
    assert env.manager_of("rep2") == rep1
    assert env.run().plan.changes == ()  # type: ignore[union-attr]
    assert env.run(full=True).plan.changes == ()  # type: ignore[union-attr]
    assert res.plan is not None


def test_manager_created_in_a_later_cycle_fills_without_reading_the_report(env: Env) -> None:
    env.src.put("user", {"uid": "rep", "manager": "s9"}, "s1")
    first = env.run()
    assert env.manager_of("rep") is None  # not an error: empty, pending
    assert first.plan is not None and any("pending until s9 is linked" in n
                                          for n in first.plan.notes)
    env.src.put("user", {"uid": "boss"}, "s9")
    res = env.run()
    assert res.reads["user"] == "incremental"
    assert env.manager_of("rep") == env.target("boss")[0]
    assert [(c.op, c.name) for c in res.plan.changes] == [  # type: ignore[union-attr]
        ("create", "boss"), ("update", "rep")]
    assert env.run().plan.changes == ()  # type: ignore[union-attr]


def test_out_of_scope_manager_is_empty_and_filled_once_in_scope(env: Env) -> None:
    env.src.put("user", {"uid": "boss", "title": "out"}, "s9")
    env.src.put("user", {"uid": "rep", "manager": "s9"}, "s1")
    env.run()
    assert env.manager_of("rep") is None
    env.src.put("user", {"uid": "boss", "title": "in"}, "s9")
    env.run()
    assert env.manager_of("rep") == env.target("boss")[0]


def test_deprovisioned_manager_is_cleared_and_refilled(env: Env) -> None:
    env.src.put("user", {"uid": "boss"}, "s9")
    env.src.put("user", {"uid": "rep", "manager": "s9"}, "s1")
    env.run()
    boss = env.target("boss")[0]
    env.src.put("user", {"uid": "boss", "title": "out"}, "s9")  # leaves the scope
    res = env.run()
    assert env.manager_of("rep") is None
    assert ("update", "rep") in [(c.op, c.name) for c in res.plan.changes]  # type: ignore[union-attr]
    env.src.put("user", {"uid": "boss", "title": "in"}, "s9")  # back: re-enabled
    env.run()
    assert env.manager_of("rep") == boss
    assert env.run().plan.changes == ()  # type: ignore[union-attr]


def test_report_changes_its_manager(env: Env) -> None:
    env.src.put("user", {"uid": "a"}, "s8")
    env.src.put("user", {"uid": "b"}, "s9")
    env.src.put("user", {"uid": "rep", "manager": "s8"}, "s1")
    env.run()
    env.src.put("user", {"uid": "rep", "manager": "s9"}, "s1")
    res = env.run()
    assert env.manager_of("rep") == env.target("b")[0]
    out = text([res])
    assert "(a)" in out and "(b)" in out  # shown by name, not only by id


def test_dry_run_shows_pending_reference(env: Env) -> None:
    env.src.put("user", {"uid": "boss"}, "s9")
    env.src.put("user", {"uid": "rep", "manager": "s9"}, "s1")
    res = env.run(dry_run=True)
    assert "rep: enterprise.manager is empty, pending until boss is linked" in text([res])
    assert not env.dst.objects["user"]


def test_deleted_report_drops_its_rows(env: Env, tmp_path: Path) -> None:
    from syncd.state.store import Store

    env.src.put("user", {"uid": "rep", "manager": "s9"}, "s1")
    env.run()
    store = Store(str(env.cfg.state_url))
    try:
        assert store.references("f", pending=True)
    finally:
        store.close()


# --- pure -------------------------------------------------------------------------------


def test_resolve_never_guesses() -> None:
    items = {"r": Item("r", "rep", {"m": "cn=x"}), "q": Item("q", "q", {"m": ("a", "b")})}
    lookup = Lookup(anchors={("user", "cn=x"): None, ("user", "a"): "A", ("user", "b"): "B"},
                    targets={("user", "A"): "tA"})
    out = resolve("user", items, {"m": "user"}, lookup)
    assert out.items["r"].attrs["m"] is None
    assert out.items["q"].attrs["m"] == ("tA",)
    assert [w[2] for w in out.waiting] == [
        "'cn=x' names no user in scope (none, or several): pending until it does",
        "pending until b is linked"]


def test_refill_fills_and_clears_against_the_base() -> None:
    link = Link("f", "user", "r", "tr", {"userName": "rep", "m": "old"}, "d")
    rows = [RefRow("user", "r", "m", "x", "user", "X", None)]
    changes, saved = refill(rows, {("user", "r"): link}, {("user", "X"): "tX"})
    assert [(c.attrs, c.before) for c in changes] == [({"m": "tX"}, {"m": "old"})]
    assert saved == [RefRow("user", "r", "m", "x", "user", "X", "tX")]
    changes, _ = refill(rows, {("user", "r"): link}, {})
    assert [c.attrs for c in changes] == [{"m": None}]


# --- the rule: any order, any cycles ----------------------------------------------------

#: A step: ("add", person, manager or None), ("cycle", full?)
_people = st.sampled_from(["p0", "p1", "p2", "p3"])
_steps = st.lists(st.one_of(
    st.tuples(st.just("add"), _people, st.one_of(st.none(), _people)),
    st.tuples(st.just("cycle"), st.booleans(), st.none())), max_size=12)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=_steps)
def test_any_order_settles_on_the_managers_target_ids(steps: list[tuple[object, ...]]) -> None:
    """For any order of creating managers and reports across cycles (full or incremental),
    once the cycles settle every report's target manager is its manager's target id, and a
    further cycle plans nothing."""
    tmp = Path(tempfile.mkdtemp())
    e = Env(tmp)
    try:
        want: dict[str, str | None] = {}
        for step in steps:
            if step[0] == "add":
                _, who, boss = step
                assert isinstance(who, str)
                attrs = {"uid": who, **({"manager": f"s-{boss}"} if boss else {})}
                e.src.put("user", attrs, f"s-{who}")
                want[who] = boss if isinstance(boss, str) else None
            else:
                e.run(full=bool(step[1]))
        e.run()
        for who, boss in want.items():
            expected = e.target(boss)[0] if boss in want else None
            assert e.manager_of(who) == expected, (who, boss)
        assert e.run().plan.changes == ()  # type: ignore[union-attr]
        assert e.run(full=True).plan.changes == ()  # type: ignore[union-attr]
    finally:
        e.close()
        shutil.rmtree(tmp, ignore_errors=True)
