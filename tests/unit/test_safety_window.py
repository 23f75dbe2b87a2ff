"""The safety window: deprovisions counted over `safety.window` (the journal's applied ones
plus the plan's), so a flood split across many small runs meets the same thresholds; runs let
through with --allow-deletes do not count; flows from a SCIM service provider get a window
by default."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syncd.config import load
from syncd.config.schema import SafetyModel
from syncd.errors import ConfigError, SafetyRefused
from syncd.plan.safety import check
from syncd.plan.value import Change, Plan
from syncd.state.store import Store


def _plan(n: int, linked: int = 100) -> Plan:
    return Plan("f", tuple(Change("deprovision", "user", f"s{i}", f"u{i}", f"t{i}")
                           for i in range(n)), linked={"user": linked})


def test_the_window_adds_what_the_flow_already_took_away() -> None:
    safety = SafetyModel(max_deprovision=3, window="1h")
    check(_plan(1), safety, seen={}, recent={"user": 2})  # 3: at the line, not over
    with pytest.raises(SafetyRefused) as info:
        check(_plan(2), safety, seen={}, recent={"user": 2})
    (reason,) = info.value.reasons
    assert "2 users in this plan and 2 already within the last 1h" in reason
    assert "over max_deprovision=3" in reason and "u0, u1" in reason
    check(_plan(2), safety, seen={}, recent={"user": 2}, allow_deletes=True)
    check(_plan(2), safety, seen={}, recent={"group": 50})  # another kind's count


def test_the_window_share_is_of_the_links_there_were() -> None:
    safety = SafetyModel(max_deprovision_percent=20.0, percent_floor=3, window="1h")
    check(_plan(1, linked=10), safety, seen={}, recent={"user": 1})  # 2 of 11: floor
    with pytest.raises(SafetyRefused, match=r"4 of 12 \(33%\) deprovisioned"):
        check(_plan(2, linked=10), safety, seen={}, recent={"user": 2})


def test_recent_going_counts_applied_takeaways_of_runs_not_let_through(
        tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    try:
        normal, allowed = store.start_run("f"), store.start_run("f")
        store.finish_run(allowed, "ok", {"allowed": True})
        old = datetime.now(UTC) - timedelta(hours=3)

        def row(run: str, op: str, result: str = "applied", **detail: object) -> dict[
                str, object]:
            return {"run_id": run, "flow": "f", "kind": "user", "op": op, "source_id": "s",
                    "name": "n", "result": result, "detail": json.dumps(detail)}

        store.log_changes([
            row(normal, "deprovision"), row(normal, "delete"),
            row(normal, "delete", result="failed"),
            row(normal, "update", attrs={"active": False}, before={"active": True}),
            row(normal, "update", attrs={"active": True}, before={"active": False}),
            row(allowed, "delete"), row(allowed, "deprovision"),
            {**row(normal, "delete"), "at": old},
            {**row(normal, "delete"), "flow": "other"},
        ])
        since = datetime.now(UTC) - timedelta(hours=1)
        assert store.recent_going("f", since) == {"user": 3}
        assert store.recent_going("f", old - timedelta(minutes=1)) == {"user": 4}
    finally:
        store.close()


INBOUND = """
[state]
url = "sqlite:///{state}"
[connectors.inbox]
type = "scim_inbox"
[connectors.dst]
type = "memory"
directory = "w"
[serve]
listen = "127.0.0.1:8443"
tokens = ["literal-token-for-the-test-1234"]
directory = "inbox"
[connectors.src]
type = "memory"
directory = "v"
[flows.f]
source = "inbox"
target = "dst"
{safety}
[flows.f.users.mapping]
userName = "userName"
[flows.g]
source = "src"
target = "dst"
[flows.g.users.mapping]
userName = "uid"
"""


def test_flows_from_a_scim_service_provider_count_over_an_hour_by_default(
        tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text(INBOUND.format(state=tmp_path / "s.db", safety=""))
    try:
        cfg = load(p, secrets=False)
    except ConfigError as exc:  # the [serve] schema may want more: say what
        pytest.fail(f"the inbound test config no longer loads: {exc}")
    assert cfg.flows["f"].safety.window == "1h"
    assert cfg.flows["g"].safety.window is None  # other flows: per run, as before
    p.write_text(INBOUND.format(state=tmp_path / "s.db",
                                safety='[flows.f.safety]\nwindow = "15m"'))
    assert load(p, secrets=False).flows["f"].safety.window == "15m"
    p.write_text(INBOUND.format(state=tmp_path / "s.db",
                                safety='[flows.f.safety]\nwindow = "soon"'))
    with pytest.raises(ConfigError, match="window"):
        load(p, secrets=False)
