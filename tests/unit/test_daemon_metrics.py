"""Metrics recorded from run results and served over HTTP (scraped with a real client)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from syncd.cycle.result import FlowResult
from syncd.cycle.session import Failure
from syncd.daemon.metrics import Metrics, change_counts, parse_listen
from syncd.plan.value import Change, Plan
from syncd.state.store import Store


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, tuple(sorted(labels.items()))))


def result(run_id: str | None = None, outcome: str = "ok", stats: dict[str, int] | None = None
           ) -> FlowResult:
    c1 = Change("create", "user", "u1", "ann")
    c2 = Change("create", "user", "u2", "bob")
    c3 = Change("update", "user", "u3", "cid")
    g1 = Change("set_members", "group", "g1", "staff")
    res = FlowResult("corp", False, plan=Plan("corp", (c1, c2, c3, g1)), result=outcome,
                     applied=3, run_id=run_id, duration=2.0, target_stats=stats or {})
    res.failures = [Failure(c2, "Rejected", "400 bad")]
    return res


class FakeStore:
    def __init__(self) -> None:
        self.pending: dict[str, int] = {"pending": 2, "quarantined": 1}

    def pending_counts(self, flow: str) -> dict[str, int]:
        return self.pending

    def cursor_age(self, flow: str) -> float | None:
        return 42.0


def test_record_and_scrape_over_http() -> None:
    m = Metrics()
    port = free_port()
    m.serve(f"127.0.0.1:{port}")
    try:
        m.flow_known("corp")
        m.record(result(stats={"http_429": 3}), "app", FakeStore())
        m.record(result(stats={"http_429": 2}), "app", None)
        body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        m.close()
    assert value(body, "syncd_runs_total", flow="corp", result="ok") == 2
    assert value(body, "syncd_run_duration_seconds_count", flow="corp") == 2
    assert value(body, "syncd_run_duration_seconds_sum", flow="corp") == 4.0
    assert value(body, "syncd_changes_total", flow="corp", kind="user", op="create",
                 result="applied") == 2
    assert value(body, "syncd_changes_total", flow="corp", kind="user", op="create",
                 result="failed") == 2
    assert value(body, "syncd_changes_total", flow="corp", kind="group", op="set_members",
                 result="applied") == 2
    assert value(body, "syncd_target_http_429_total", target="app") == 5
    assert value(body, "syncd_last_run_result", flow="corp", syncd_last_run_result="ok") == 1
    assert value(body, "syncd_last_run_result", flow="corp",
                 syncd_last_run_result="failed") == 0
    assert (value(body, "syncd_last_success_timestamp_seconds", flow="corp") or 0) > 1.7e9
    # the second record had no store: pending falls back to 0 rather than going stale
    assert value(body, "syncd_pending_objects", flow="corp", state="pending") == 0
    assert value(body, "syncd_cursor_age_seconds", flow="corp") == 42.0


def test_pending_and_failed_results() -> None:
    m = Metrics()
    m.record(result(outcome="failed"), "app", FakeStore())
    body = _text(m)
    assert value(body, "syncd_pending_objects", flow="corp", state="pending") == 2
    assert value(body, "syncd_pending_objects", flow="corp", state="quarantined") == 1
    assert value(body, "syncd_last_success_timestamp_seconds", flow="corp") is None
    m.record_error("corp")
    body = _text(m)
    assert value(body, "syncd_last_run_result", flow="corp", syncd_last_run_result="error") == 1
    assert value(body, "syncd_runs_total", flow="corp", result="error") == 1


def _text(m: Metrics) -> str:
    from prometheus_client import generate_latest

    return generate_latest(m.registry).decode()


def test_aborted_run_counts_come_from_the_journal(tmp_path: Path) -> None:
    """A stopped run applied only part of its plan; the journal says which part."""
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    run_id = store.start_run("corp")
    store.log_changes([
        {"run_id": run_id, "flow": "corp", "kind": "user", "op": "create", "source_id": "u1",
         "target_id": "t1", "name": "ann", "detail": "{}", "result": "applied", "error": None},
    ])
    res = result(run_id=run_id, outcome="aborted")
    res.failures = []
    ro = Store(f"sqlite:///{tmp_path / 's.db'}", readonly=True)
    try:
        assert change_counts(res, ro) == {("user", "create", "applied"): 1}
    finally:
        ro.close()
        store.close()
    # without a journal an aborted run claims nothing applied (it cannot know what was)
    assert change_counts(res, None) == {}


def test_serve_is_idempotent_and_can_move(tmp_path: Path) -> None:
    m = Metrics()
    p1, p2 = free_port(), free_port()
    try:
        m.serve(f"127.0.0.1:{p1}")
        m.serve(f"127.0.0.1:{p1}")  # same address: keeps the socket
        assert httpx.get(f"http://127.0.0.1:{p1}/metrics", timeout=5).status_code == 200
        m.serve(f"127.0.0.1:{p2}")
        assert httpx.get(f"http://127.0.0.1:{p2}/metrics", timeout=5).status_code == 200
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{p1}/metrics", timeout=2)
    finally:
        m.close()


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:9464", ("127.0.0.1", 9464)),
    ("[::1]:9464", ("::1", 9464)),
    ("localhost:1", ("localhost", 1)),
])
def test_parse_listen(text: str, expected: Any) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["9464", ":9464", "host:", "host:99999", "host:x"])
def test_parse_listen_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        parse_listen(text)
