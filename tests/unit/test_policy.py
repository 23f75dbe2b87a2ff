"""Safety thresholds: what gets refused, and the message an admin sees."""

from __future__ import annotations

import pytest

from syncd.config.schema import SafetyModel
from syncd.errors import SafetyRefused
from syncd.plan.safety import check
from syncd.plan.value import Change, Plan


def plan_with(n_going: int, linked: int, op: str = "deprovision") -> Plan:
    changes = tuple(Change(op, "user", f"u{i}", f"user{i}", f"t{i}")  # type: ignore[arg-type]
                    for i in range(n_going))
    return Plan("f", changes, linked={"user": linked})


def test_under_thresholds_passes() -> None:
    check(plan_with(3, 100), SafetyModel(), seen={"user": 97})


def test_count_threshold_refuses_and_lists_names() -> None:
    with pytest.raises(SafetyRefused) as exc:
        check(plan_with(11, 1000), SafetyModel(max_deprovision=10), seen={"user": 989})
    assert "11 users would be deprovisioned" in str(exc.value)
    assert "user0" in str(exc.value)


def test_percentage_threshold_refuses_above_floor() -> None:
    with pytest.raises(SafetyRefused, match=r"30 of 100 linked users \(30%\)"):
        check(plan_with(30, 100), SafetyModel(), seen={"user": 70})


def test_percentage_ignored_at_or_below_floor() -> None:
    check(plan_with(2, 4), SafetyModel(), seen={"user": 2})


def test_empty_source_with_links_is_refused() -> None:
    with pytest.raises(SafetyRefused, match="returned no users"):
        check(plan_with(1, 1000, op="delete"), SafetyModel(), seen={"user": 0})


def test_allow_deletes_lets_it_through_once() -> None:
    check(plan_with(900, 1000), SafetyModel(), seen={"user": 100}, allow_deletes=True)
