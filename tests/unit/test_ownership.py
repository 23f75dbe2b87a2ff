"""How flows spread over daemon instances (syncd.daemon.ownership), as rules over any number of
instances and flows and any order of their ticks. The lock sessions are stand-ins sharing one
lock table, as sessions share one PostgreSQL server (the real thing: tests/e2e/
test_flow_locks_postgres.py, test_ha_postgres.py)."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest

from syncd.daemon.ownership import Ownership, fair_share
from syncd.daemon.service import Daemon
from syncd.state.locks import PgLockSession
from tests.unit.test_daemon import Logs, Recorder, flow, logs, recorder, write  # noqa: F401
from tests.unit.test_daemon_metrics import value


class Server:
    def __init__(self) -> None:
        self.locks: dict[Any, Session] = {}
        self.sessions: list[Session] = []


class Session:
    """What Ownership needs of a PgLockSession, on a shared in-memory lock table."""

    def __init__(self, server: Server, name: str) -> None:
        self.server, self.name = server, name
        self.generation = 1
        self.held: set[Any] = set()
        server.sessions.append(self)

    def try_lock(self, key: Any) -> bool:
        if key in self.server.locks:
            return False
        self.server.locks[key] = self
        self.held.add(key)
        return True

    def unlock(self, key: Any) -> None:
        if self.server.locks.get(key) is self:
            del self.server.locks[key]
        self.held.discard(key)

    def leases(self) -> list[tuple[str, int]]:
        return [(s.name, sum(h is s for k, h in self.server.locks.items()
                             if isinstance(k, tuple))) for s in self.server.sessions]

    def holds(self, key: Any) -> bool:
        return self.server.locks.get(key) is self

    def holder(self, key: Any) -> str | None:
        s = self.server.locks.get(key)
        return s.name if s is not None else None

    def close(self) -> None:  # the session ends: the server frees its locks
        self.server.sessions.remove(self)
        for k in [k for k, s in self.server.locks.items() if s is self]:
            del self.server.locks[k]


def instance(server: Server, name: str) -> Ownership:
    return Ownership(cast(PgLockSession, Session(server, name)))


def tick(owners: list[Ownership], flows: list[str], order: Any) -> bool:
    """One interval: every instance's job for every flow fires once, in a drawn order; a
    claimed flow runs and is followed by after_run, as in Daemon.run_flow. True when who
    owns what changed."""
    before = [set(o.owned) for o in owners]
    jobs = order([(o, f) for o in owners for f in flows])
    for o, f in jobs:
        if o.claim(f, len(flows)) is None:
            o.after_run(f, len(flows))
    return before != [o.owned for o in owners]


def settle(owners: list[Ownership], flows: list[str], order: Any) -> int:
    """Ticks until a whole tick changes nothing; how many it took (bounded)."""
    for n in range(1, 4 + 2 * len(flows)):
        if not tick(owners, flows, order):
            return n
    raise AssertionError("ownership never settled")


def check_spread(owners: list[Ownership], flows: list[str]) -> None:
    share = fair_share(len(flows), len(owners))
    owned = [f for o in owners for f in o.owned]
    assert sorted(owned) == sorted(flows), "every flow on exactly one instance"
    assert all(len(o.owned) <= share for o in owners), "nobody above its fair share"
    loads = [len(o.owned) for o in owners]
    assert max(loads) - min(loads) <= 1, f"as even as can be: {loads}"


@given(st.integers(1, 12), st.integers(1, 6))
def test_fair_shares_cover_every_flow_and_are_as_even_as_can_be(flows: int, n: int) -> None:
    share = fair_share(flows, n)
    assert share * n >= flows
    assert share == 1 or (share - 1) * n < flows


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(1, 9), st.randoms(use_true_random=False),
       st.integers(0, 3))
def test_flows_spread_and_move_when_instances_die_and_join(
        n: int, nflows: int, rnd: Any, dies: int) -> None:
    server = Server()
    flows = [f"f{i}" for i in range(nflows)]

    def order(jobs: list[Any]) -> list[Any]:
        rnd.shuffle(jobs)
        return jobs

    owners = [instance(server, f"i{i}") for i in range(n)]
    settle(owners, flows, order)
    check_spread(owners, flows)

    if dies < n and n > 1:  # kill -9: its session ends, its leases are freed
        dead = owners.pop(dies)
        dead.session.close()
        tick(owners, flows, order)
        owned = sorted(f for o in owners for f in o.owned)
        assert owned == sorted(flows), "the dead one's flows are taken within one tick"
        settle(owners, flows, order)
        check_spread(owners, flows)

    owners.append(instance(server, "late"))  # a new instance joins: load moves to it
    settle(owners, flows, order)
    check_spread(owners, flows)


def test_an_instance_whose_session_died_leaves_its_flows_for_one_tick() -> None:
    server = Server()
    a, b = instance(server, "a"), instance(server, "b")
    assert a.claim("f", 1) is None
    assert b.claim("f", 1) == "running on a"
    session = cast(Session, a.session)
    session.close()  # pg_terminate_backend; a reconnects as a new session
    server.sessions.append(session)
    session.generation += 1
    assert a.claim("f", 1) == "left to the other instances for one tick (this instance a " \
                              "lost its lease)"
    assert b.claim("f", 1) is None
    assert a.claim("f", 1) == "running on b"


def test_a_flow_nobody_takes_is_taken_over_the_share_at_the_next_tick() -> None:
    server = Server()
    a, _b = instance(server, "a"), instance(server, "b")  # b has no such flows configured
    assert a.claim("f1", 2) is None
    why = a.claim("f2", 2)
    assert why is not None and "fair share of 2 over 2" in why
    assert a.claim("f2", 2) is None
    assert math.isclose(len(a.owned), 2)


# -- the daemon's side: a flow owned elsewhere is a quiet state ----------------------------


class Elsewhere:
    """An Ownership whose flows all run on another instance (or, `mine`, on this one)."""

    def __init__(self, mine: bool = False) -> None:
        self.mine = mine
        self.after: list[str] = []
        self.session = None

    def claim(self, flow: str, flows: int) -> str | None:
        return None if self.mine else "running on syncd daemon host-b:4182"

    def after_run(self, flow: str, flows: int) -> None:
        self.after.append(flow)


def metric(d: Daemon, name: str, **labels: str) -> float | None:
    return value(generate_latest(d.metrics.registry).decode(), name, **labels)


def test_a_flow_running_on_another_instance_is_quiet(
        tmp_path: Path, recorder: Recorder, logs: Logs,  # noqa: F811 (fixtures)
        monkeypatch: pytest.MonkeyPatch
        ) -> None:
    d = Daemon(write(tmp_path, flow("a", "src1", "dst")))
    alerts: list[str] = []
    monkeypatch.setattr(d.alerts, "run_error", lambda flow, why: alerts.append(why))
    d.ownership = cast(Any, Elsewhere())
    for _ in range(3):
        assert d.run_flow("a") == []
    assert recorder.runs("a") == [], "not run here"
    said = [r.getMessage() for r in logs.records if "host-b" in r.getMessage()]
    assert said == ["flow a: running on syncd daemon host-b:4182"], "logged once, at INFO"
    assert all(r.levelno == logging.INFO for r in logs.records if "host-b" in r.getMessage())
    assert d._status["a"] == "running on syncd daemon host-b:4182"
    assert metric(d, "syncd_flow_running_here", flow="a") == 0
    assert metric(d, "syncd_runs_total", flow="a", result="error") is None
    assert alerts == []

    d.ownership = cast(Any, Elsewhere(mine=True))  # the owner died: this one took it
    assert [r.result for r in d.run_flow("a")] == ["ok"]
    assert metric(d, "syncd_flow_running_here", flow="a") == 1
    assert d.ownership.after == ["a"]  # type: ignore[attr-defined]
