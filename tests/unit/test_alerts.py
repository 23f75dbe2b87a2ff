"""Alerts from the daemon: real runs of in-memory flows, the daemon's per-run hook, and a real
HTTP receiver on 127.0.0.1 (http.server in a thread) that records what it is sent.

Nothing here waits by sleeping: the receiver hands each request to a queue the test reads with
a timeout, and `Alerts.close` drains the receivers' queues (so "nothing more was sent" is
checked after everything queued was delivered)."""

from __future__ import annotations

import itertools
import json
import logging
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from syncd.config.schema import AlertsModel, WebhookModel
from syncd.cycle.result import FlowResult
from syncd.daemon import delivery
from syncd.daemon.alerts import Alerts
from syncd.daemon.service import Daemon
from syncd.errors import Fatal, Rejected
from syncd.testing import DIRECTORIES, Directory, directory, fail_with

TOKEN = "Bearer hook-s3cret-7Qx9"


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class Receiver:
    """Records each POST; answers with the statuses in `answers` first, then 200. While
    `hanging` is set, no answer is given until `release` (or the end of the test)."""

    def __init__(self) -> None:
        self.requests: queue.Queue[Request] = queue.Queue()
        self.answers: list[int] = []
        self.hanging = False
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.requests.put(Request(self.path, dict(self.headers), json.loads(body)))
                if outer.hanging:
                    outer.release.wait(60)
                status = outer.answers.pop(0) if outer.answers else 200
                # a careless receiver echoes the request's credentials in its error page
                text = (f"upstream failed; you sent Authorization: "
                        f"{self.headers.get('Authorization')}" if status >= 400 else "ok")
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def get(self, timeout: float = 15.0) -> Request:
        return self.requests.get(timeout=timeout)

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog on the "syncd" logger itself (the CLI's log setup stops propagation)."""
    lg = logging.getLogger("syncd")
    old = lg.level, lg.propagate
    lg.addHandler(caplog.handler)
    lg.setLevel(logging.DEBUG)
    lg.propagate = False  # caplog listens on the root logger too: each record once
    caplog.handler.setLevel(logging.DEBUG)
    yield caplog
    lg.removeHandler(caplog.handler)
    lg.level, lg.propagate = old


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_TOKEN", TOKEN)
    monkeypatch.setattr("syncd.state.records.BACKOFF_BASE", 0.0)
    monkeypatch.setattr(delivery, "BACKOFF_S", 0.01)  # retry waits, not synchronisation


_names = itertools.count()

CONFIG = """
[state]
url = "sqlite:///{state}"
[connectors.src]
type = "memory"
directory = "{src}"
[connectors.dst]
type = "memory"
directory = "{dst}"
[flows.f]
source = "src"
target = "dst"
{schedule}
[flows.f.safety]
max_deprovision = 1
[flows.f.users.mapping]
userName = "uid"
title = "title"
[alerts]
{alerts}
"""


class Env:
    """Five users in an in-memory source, a flow to an in-memory target, a daemon."""

    def __init__(self, tmp: Path, alerts: str, schedule: str = "") -> None:
        n = next(_names)
        self.names = (f"alert-src{n}", f"alert-dst{n}")
        self.src: Directory = directory(self.names[0])
        self.dst: Directory = directory(self.names[1])
        for i in range(5):
            self.src.put("user", {"uid": f"u{i}", "title": "t"}, f"s{i}")
        self.path = tmp / "syncd.toml"
        self.path.write_text(CONFIG.format(state=tmp / "state.db", src=self.names[0],
                                           dst=self.names[1], alerts=alerts, schedule=schedule))
        self.daemon = Daemon(self.path)

    def run(self) -> FlowResult:
        """One run through the daemon's job (engine, summary, metrics, alerts)."""
        (res,) = self.daemon.run_flow("f")
        return res

    def refuse(self, *sids: str) -> None:
        for sid in sids:
            self.src.remove("user", sid)

    def restore(self, *sids: str) -> None:
        for sid in sids:
            self.src.put("user", {"uid": "u" + sid[1:], "title": "t"}, sid)

    def target_id(self, uid: str) -> str:
        return next(o for o, a in self.dst.objects["user"].items() if a["userName"] == uid)

    def close(self) -> None:
        self.daemon.alerts.close()
        for name in self.names:
            DIRECTORIES.pop(name, None)


def webhook(receiver: Receiver, extra: str = "") -> str:
    return (f'webhooks = [{{ url = "{receiver.url}", '
            f'headers = {{ Authorization = "env:HOOK_TOKEN" }} }}]\n{extra}')


@pytest.fixture
def make_env(tmp_path: Path) -> Iterator[Callable[..., Env]]:
    made: list[Env] = []

    def make(alerts: str, schedule: str = "") -> Env:
        made.append(Env(tmp_path, alerts, schedule))
        return made[-1]

    yield make
    for e in made:
        e.close()


def check_at(payload: dict[str, Any]) -> str:
    at = payload["at"]
    when = datetime.fromisoformat(at)
    assert when.tzinfo is not None and abs((datetime.now(UTC) - when).total_seconds()) < 60
    return str(at)


def without_at(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k != "at"}


def test_each_event_kind_is_posted_with_its_exact_payload(
        make_env: Callable[..., Env], receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("syncd.state.records.MAX_ATTEMPTS", 1)
    env = make_env(webhook(receiver))
    host = socket.gethostname()
    assert env.run().result == "ok"  # the initial sync: nothing to say

    env.refuse("s1", "s2")
    refused = env.run()
    assert refused.result == "refused"
    req = receiver.get()
    assert req.path == "/hook"
    assert req.headers["Authorization"] == TOKEN
    assert req.headers["Content-Type"] == "application/json"
    since = check_at(req.body)
    assert without_at(req.body) == {
        "event": "refused", "flow": "f", "run_id": refused.run_id,
        "summary": "flow f: plan refused by the safety check, nothing applied: 2 users would "
                   "be deprovisioned, over max_deprovision=1: u1, u2",
        "details": {"reasons": ["2 users would be deprovisioned, over max_deprovision=1: "
                                "u1, u2"]},
        "host": host}
    assert env.run().result == "refused"  # the same plan again: not alerted again

    env.restore("s1", "s2")
    env.src.put("user", {"uid": "u3", "title": "new"}, "s3")
    env.dst.faults["update"] = fail_with(lambda: Rejected("schema says no"))
    failed = env.run()
    assert failed.result == "failed"
    req = receiver.get()
    check_at(req.body)
    assert without_at(req.body) == {
        "event": "failed", "flow": "f", "run_id": failed.run_id,
        "summary": "flow f: run failed: 1 change(s) failed: u3",
        "details": {"errors": [], "applied": 0, "failed": 1, "failures": [
            {"kind": "user", "op": "update", "name": "u3", "source_id": "s3",
             "error_class": "Rejected", "error": "schema says no"}]},
        "host": host}
    req = receiver.get()  # MAX_ATTEMPTS = 1: that failure quarantined u3 at once
    check_at(req.body)
    assert without_at(req.body) == {
        "event": "quarantined", "flow": "f", "run_id": failed.run_id,
        "summary": "flow f: 1 object(s) quarantined after repeated failures, held until "
                   "their source changes or syncd release: u3",
        "details": {"count": 1, "objects": [
            {"kind": "user", "name": "u3", "source_id": "s3", "op": "update", "attempts": 1,
             "error_class": "Rejected", "error": "schema says no"}]},
        "host": host}

    env.src.put("user", {"uid": "u4", "title": "new"}, "s4")
    env.dst.faults["update"] = fail_with(lambda: Fatal("target down"))
    aborted = env.run()
    assert aborted.result == "aborted"
    req = receiver.get()
    check_at(req.body)
    assert without_at(req.body) == {
        "event": "aborted", "flow": "f", "run_id": aborted.run_id,
        "summary": "flow f: run aborted: Fatal: target down (0 applied, 1 failed)",
        "details": {"errors": ["Fatal: target down"], "applied": 0, "failed": 1, "failures": [
            {"kind": "user", "op": "update", "name": "u4", "source_id": "s4",
             "error_class": "Fatal", "error": "target down"}]},
        "host": host}

    del env.dst.faults["update"]
    ok = env.run()
    assert ok.result == "ok" and ok.applied == 1
    req = receiver.get()
    check_at(req.body)
    assert without_at(req.body) == {
        "event": "recovered", "flow": "f", "run_id": ok.run_id,
        "summary": f"flow f recovered: the run ended ok after aborted since {since} "
                   "(1 object(s) still quarantined: syncd release)",
        "details": {"after": "aborted", "since": since, "quarantined": 1},
        "host": host}
    assert env.run().result == "ok"  # still ok: nothing to say
    env.daemon.alerts.close()  # delivers whatever is still queued
    assert receiver.requests.empty()


def test_refused_is_alerted_when_it_starts_and_when_its_reasons_change(
        make_env: Callable[..., Env], receiver: Receiver) -> None:
    env = make_env(webhook(receiver))
    env.run()
    env.refuse("s1", "s2")
    for _ in range(3):
        assert env.run().result == "refused"
    first = receiver.get().body
    assert first["event"] == "refused" and "2 users" in first["details"]["reasons"][0]
    env.refuse("s3")  # another user would go: the reasons change
    assert env.run().result == "refused"
    assert env.run().result == "refused"
    second = receiver.get().body
    assert second["event"] == "refused" and "3 users" in second["details"]["reasons"][0]
    env.restore("s1", "s2", "s3")
    assert env.run().result == "ok"
    recovered = receiver.get().body
    assert recovered["event"] == "recovered"
    assert recovered["details"] == {"after": "refused", "since": first["at"], "quarantined": 0}
    env.daemon.alerts.close()
    assert receiver.requests.empty()


def test_a_receiver_answering_500_twice_gets_the_same_event_three_times(
        make_env: Callable[..., Env], receiver: Receiver,
        logs: pytest.LogCaptureFixture) -> None:
    receiver.answers = [500, 500]
    env = make_env(webhook(receiver))
    env.run()
    env.refuse("s1", "s2")
    env.run()
    bodies = [receiver.get().body for _ in range(3)]
    assert bodies[0]["event"] == "refused" and bodies[0] == bodies[1] == bodies[2]
    env.daemon.alerts.close()
    assert receiver.requests.empty()
    retries = [r.getMessage() for r in logs.records if "failed (HTTP" in r.getMessage()]
    assert len(retries) == 2 and all("HTTP 500" in m for m in retries)
    assert f"{receiver.url}" in retries[0]
    assert not [r for r in logs.records if "not delivered" in r.getMessage()]


def test_a_final_answer_is_not_retried_and_the_next_event_still_goes_out(
        make_env: Callable[..., Env], receiver: Receiver,
        logs: pytest.LogCaptureFixture) -> None:
    receiver.answers = [400]
    env = make_env(webhook(receiver))
    env.run()
    env.refuse("s1", "s2")
    env.run()
    env.restore("s1", "s2")
    env.run()
    assert [receiver.get().body["event"] for _ in range(2)] == ["refused", "recovered"]
    env.daemon.alerts.close()
    assert receiver.requests.empty()
    (err,) = [r for r in logs.records if f"refused by {receiver.url}" in r.getMessage()]
    assert err.levelno == logging.ERROR and "HTTP 400" in err.getMessage()


def test_header_secrets_never_reach_the_logs_nor_a_payload(
        make_env: Callable[..., Env], receiver: Receiver,
        logs: pytest.LogCaptureFixture) -> None:
    secret = TOKEN.split()[1]
    receiver.answers = [500]  # its error page echoes the Authorization header back
    env = make_env(webhook(receiver))
    env.run()
    env.src.put("user", {"uid": "u3", "title": "new"}, "s3")
    # a peer that quotes the credential in its error message
    env.dst.faults["update"] = fail_with(lambda: Rejected(f"denied for {TOKEN}"))
    assert env.run().result == "failed"
    first, second = receiver.get(), receiver.get()
    assert first.headers["Authorization"] == TOKEN  # sent where it belongs
    assert first.body == second.body and first.body["event"] == "failed"
    assert secret not in json.dumps(first.body)
    assert "[redacted]" in first.body["details"]["failures"][0]["error"]
    env.daemon.alerts.close()
    assert any("HTTP 500" in r.getMessage() for r in logs.records)
    assert secret not in logs.text
    assert all(secret not in r.getMessage() for r in logs.records)


def test_events_and_flows_filter_what_is_sent(receiver: Receiver) -> None:
    alerts = Alerts(AlertsModel(webhooks=[WebhookModel(url=receiver.url)],
                                events=["failed", "recovered"], flows=["a"]))
    try:
        assert alerts.after_run(FlowResult("a", False, result="refused", refused=["x"]),
                                None) == []
        assert alerts.after_run(FlowResult("b", False, result="failed", errors=["y"]),
                                None) == []
        (failed,) = alerts.after_run(FlowResult("a", False, result="failed", errors=["y"]),
                                     None)
        assert failed.kind == "failed"
        (recovered,) = alerts.after_run(FlowResult("a", False, result="ok"), None)
        assert recovered.kind == "recovered" and recovered.details["after"] == "failed"
        assert [receiver.get().body["event"] for _ in range(2)] == ["failed", "recovered"]
    finally:
        alerts.close()
    assert receiver.requests.empty()


class Pending:
    """The part of the state store `recovered` looks at."""

    def __init__(self) -> None:
        self.counts = {"pending": 0, "quarantined": 0}

    def pending_counts(self, _flow: str) -> dict[str, int]:
        return dict(self.counts)


def test_recovered_waits_until_no_change_waits_for_a_retry(receiver: Receiver) -> None:
    alerts = Alerts(AlertsModel(webhooks=[WebhookModel(url=receiver.url)]))
    store = Pending()
    try:
        assert [e.kind for e in alerts.after_run(
            FlowResult("a", False, result="failed", errors=["read failed"]), store)] == [
            "failed"]
        store.counts["pending"] = 1  # ok, but a failed change is held until its retry
        assert alerts.after_run(FlowResult("a", False, result="ok"), store) == []
        store.counts = {"pending": 0, "quarantined": 2}
        (recovered,) = alerts.after_run(FlowResult("a", False, result="ok", run_id="r3"),
                                        store)
        assert recovered.details["quarantined"] == 2 and recovered.run_id == "r3"
        assert alerts.after_run(FlowResult("a", False, result="ok"), store) == []
    finally:
        alerts.close()


def test_a_reload_with_new_receivers_sends_to_them(receiver: Receiver) -> None:
    alerts = Alerts(AlertsModel(webhooks=[WebhookModel(url=receiver.url)]))
    other = Receiver()
    try:
        same = alerts.sinks
        alerts.configure(AlertsModel(webhooks=[WebhookModel(url=receiver.url)]))
        assert alerts.sinks is same  # unchanged [alerts]: the same receivers
        alerts.configure(AlertsModel(webhooks=[WebhookModel(url=other.url)]))
        alerts.after_run(FlowResult("a", False, result="refused", refused=["x"]), None)
        assert other.get().body["event"] == "refused"
    finally:
        alerts.close()
        other.close()
    assert receiver.requests.empty()


def test_a_crashed_run_is_a_failed_alert_once(receiver: Receiver) -> None:
    alerts = Alerts(AlertsModel(webhooks=[WebhookModel(url=receiver.url)]))
    try:
        assert len(alerts.run_error("a", "state store unavailable: disk full")) == 1
        assert alerts.run_error("a", "state store unavailable: disk full") == []
        body = receiver.get().body
        assert body["event"] == "failed" and body["run_id"] is None
        assert body["details"]["errors"] == ["state store unavailable: disk full"]
    finally:
        alerts.close()


@pytest.fixture
def _restore_signals() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


@pytest.mark.usefixtures("_restore_signals")
def test_a_receiver_that_never_answers_does_not_hold_up_the_sync_cycles(
        make_env: Callable[..., Env], receiver: Receiver) -> None:
    receiver.hanging = True
    env = make_env(webhook(receiver), schedule='[flows.f.schedule]\ninterval = "0.1s"')
    env.run()
    env.refuse("s1", "s2")  # refused from the next run on: one alert, then deduplicated
    d = env.daemon
    done = threading.Semaphore(0)
    inner = d.run_flow

    def counted(name: str) -> list[FlowResult]:
        try:
            return inner(name)
        finally:
            done.release()

    d.run_flow = counted  # type: ignore[method-assign]
    errors: list[BaseException] = []

    def scenario() -> None:
        try:
            first = receiver.get()  # the alert is on the wire, and gets no answer ...
            assert first.body["event"] == "refused"
            started = time.monotonic()
            for _ in range(3):  # ... while the flow goes on running on its schedule
                assert done.acquire(timeout=15), "the next sync cycle did not happen"
            assert time.monotonic() - started < 10
            assert receiver.requests.empty()
            receiver.release.set()
        except BaseException as exc:
            errors.append(exc)
        finally:
            d.request("stop")

    t = threading.Thread(target=scenario)
    t.start()
    assert d.run() == 0
    t.join(30)
    if errors:
        raise errors[0]
    assert receiver.requests.empty()
