"""A membership change that failed half-way records what the target applied.

The SCIM connector sends a large membership change in many PATCHes; when one fails after
others were applied, its error says which values were (``members_done``). The group's link
must record them: otherwise a member removed on the target and then re-added in the source
looks unchanged to the planner (source == base) and is never sent again.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from syncd import testing
from syncd.errors import Rejected
from syncd.testing import DIRECTORIES
from tests.unit.test_engine import Env


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    for i in range(4):
        e.src.put("user", {"uid": f"u{i}", "title": "t"}, f"s{i}")
    yield e
    DIRECTORIES.pop(e.src_name, None)
    DIRECTORIES.pop(e.dst_name, None)


def test_a_removal_applied_before_the_failure_is_recorded(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("syncd.state.records.BACKOFF_BASE", 0.0)  # the retry is due at once
    env.src.put("group", {"cn": "staff"}, "g1")
    env.src.set_group_members("g1", {"s0", "s1", "s2"})
    env.run()
    (gid,) = env.dst.objects["group"]
    by_name = {a["userName"]: t for t, a in env.dst.objects["user"].items()}

    real = testing.MemoryConnector.set_members

    def first_then_fail(self: testing.MemoryConnector, external_id: str,
                        add: Sequence[str], remove: Sequence[str]) -> None:
        """Applies the first removal, then fails like a SCIM call whose server refused the
        other value (a 400 for it alone)."""
        real(self, external_id, [], list(remove[:1]))
        err = Rejected("set members: the server refused 1 member value(s), the rest was applied")
        err.members_done = (frozenset(), frozenset(remove[:1]))  # type: ignore[attr-defined]
        raise err

    monkeypatch.setattr(testing.MemoryConnector, "set_members", first_then_fail)
    env.src.set_group_members("g1", {"s2"})  # s0 and s1 leave
    res = env.run()
    assert res.failures  # the change failed ...
    assert env.dst.members[gid] == {by_name["u1"], by_name["u2"]}  # ... after removing u0
    monkeypatch.setattr(testing.MemoryConnector, "set_members", real)

    env.src.set_group_members("g1", {"s0", "s2"})  # s0 comes back before the next run
    env.run()
    assert env.dst.members[gid] == {by_name["u0"], by_name["u2"]}
