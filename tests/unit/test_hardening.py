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
