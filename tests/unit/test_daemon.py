"""The daemon's scheduling, locking, signals and reloads, with the engine replaced by a
recorder (real runs against real servers are in tests/e2e/test_daemon.py).

Each test runs the real `Daemon.run()` (APScheduler's BlockingScheduler) in the main thread,
and drives it from a helper thread that waits for observable conditions and always asks the
daemon to stop at the end, so a failing test cannot hang.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from syncd.config.crontab import crontab_weekdays
from syncd.config.flows import Config
from syncd.config.schema import ScheduleModel
from syncd.cycle import engine
from syncd.cycle.result import FlowResult
from syncd.daemon.service import DEFAULT_INTERVAL, PRUNE_JOB, Daemon, trigger_for
from syncd.errors import StoreLocked

CONNECTORS = """
[state]
url = "sqlite:///{state}"
[connectors.src1]
type = "memory"
directory = "d-src1"
[connectors.src2]
type = "memory"
directory = "d-src2"
[connectors.src3]
type = "memory"
directory = "d-src3"
[connectors.dst]
type = "memory"
directory = "d-dst"
[connectors.dst3]
type = "memory"
directory = "d-dst3"
"""


def flow(name: str, source: str, target: str, schedule: str = "") -> str:
    return (f'[flows.{name}]\nsource = "{source}"\ntarget = "{target}"\n{schedule}\n'
            f'[flows.{name}.users.mapping]\nuserName = "uid"\n')


def wait_for(cond: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        time.sleep(0.01)  # polling interval, not synchronisation


@dataclass
class Span:
    flow: str
    start: float
    end: float
    saw_stop: bool


class Recorder:
    """Stands in for `syncd.cycle.engine.run`: records each run's span; runs take `duration`
    seconds unless the stop event ends them early (as the engine does)."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.running: dict[str, int] = {}
        self.max_parallel: dict[str, int] = {}
        self.duration: dict[str, float] = {}
        self.raise_for: dict[str, BaseException] = {}
        self.lock = threading.Lock()

    def __call__(self, cfg: Config, *, flows: list[str], stop: threading.Event,
                 **_: Any) -> list[FlowResult]:
        (name,) = flows
        if name in self.raise_for:
            raise self.raise_for[name]
        with self.lock:
            self.running[name] = self.running.get(name, 0) + 1
            self.max_parallel[name] = max(self.max_parallel.get(name, 0), self.running[name])
        start = time.monotonic()
        stopped = stop.wait(self.duration.get(name, 0.0))
        end = time.monotonic()
        with self.lock:
            self.running[name] -= 1
            self.spans.append(Span(name, start, end, stopped))
        return [FlowResult(name, False, result="aborted" if stopped else "ok", applied=1,
                           duration=end - start, run_id=f"r{len(self.spans)}")]

    def runs(self, name: str) -> list[Span]:
        with self.lock:
            return [s for s in self.spans if s.flow == name]


def overlaps(a: Span, b: Span) -> bool:
    return a.start < b.end and b.start < a.end


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder()
    monkeypatch.setattr(engine, "run", rec)
    return rec


@pytest.fixture(autouse=True)
def _restore_signals() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


class Logs(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, level: int = logging.DEBUG) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]


@pytest.fixture
def logs() -> Iterator[Logs]:
    h = Logs()
    lg = logging.getLogger("syncd.daemon")
    old = lg.level
    lg.addHandler(h)
    lg.setLevel(logging.DEBUG)
    yield h
    lg.removeHandler(h)
    lg.setLevel(old)


def write(tmp: Path, *flows: str) -> Path:
    path = tmp / "syncd.toml"
    path.write_text(CONNECTORS.format(state=tmp / "state.db") + "\n".join(flows))
    return path


def drive(d: Daemon, scenario: Callable[[], None]) -> int:
    """Run the daemon in this (main) thread while `scenario` runs beside it."""
    errors: list[BaseException] = []

    def go() -> None:
        try:
            scenario()
        except BaseException as exc:
            errors.append(exc)
        finally:
            d.request("stop")

    t = threading.Thread(target=go)
    t.start()
    code = d.run()
    t.join(timeout=30)
    if errors:
        raise errors[0]
    return code


HOURLY = '[flows.{}.schedule]\ninterval = "1h"'


def test_every_flow_runs_once_at_startup_then_waits_for_its_schedule(
        tmp_path: Path, recorder: Recorder) -> None:
    d = Daemon(write(tmp_path, flow("a", "src1", "dst", HOURLY.format("a")),
                     flow("b", "src3", "dst3")))

    seen: dict[str, Any] = {}

    def scenario() -> None:
        wait_for(lambda: len(recorder.spans) == 2, what="both startup runs")
        time.sleep(0.3)  # a window in which a wrongly scheduled second run would show
        seen.update({j.id: j.next_run_time for j in d.scheduler.get_jobs()})
    assert drive(d, scenario) == 0
    assert sorted(s.flow for s in recorder.spans) == ["a", "b"]
    now = datetime.now(UTC)
    assert set(seen) == {"flow:a", "flow:b", PRUNE_JOB}
    assert 3500 < (seen["flow:a"] - now).total_seconds() <= 3600
    assert 850 < (seen["flow:b"] - now).total_seconds() <= 900  # the 15 min default


def test_a_flow_never_overlaps_itself_when_runs_outlast_the_interval(
        tmp_path: Path, recorder: Recorder) -> None:
    recorder.duration["a"] = 0.7
    d = Daemon(write(tmp_path, flow("a", "src1", "dst",
                                    '[flows.a.schedule]\ninterval = "0.2s"')))

    # Count jobs in flight *before* the connector locks, which would serialise them too:
    # this is APScheduler's max_instances at work, not the locks.
    in_job = {"now": 0, "max": 0}
    guard = threading.Lock()
    inner = d.run_flow

    def counted(name: str) -> list[FlowResult]:
        with guard:
            in_job["now"] += 1
            in_job["max"] = max(in_job["max"], in_job["now"])
        try:
            return inner(name)
        finally:
            with guard:
                in_job["now"] -= 1

    d.run_flow = counted  # type: ignore[method-assign]

    def scenario() -> None:
        wait_for(lambda: len(recorder.runs("a")) >= 3, what="three runs")
    assert drive(d, scenario) == 0
    runs = sorted(recorder.runs("a"), key=lambda s: s.start)
    assert recorder.max_parallel["a"] == 1
    assert in_job["max"] == 1
    for x, y in itertools.pairwise(runs):
        assert not overlaps(x, y), (x, y)


def test_flows_sharing_a_connector_are_serialised_others_run_in_parallel(
        tmp_path: Path, recorder: Recorder) -> None:
    for name in ("a", "b", "c"):
        recorder.duration[name] = 0.4
    d = Daemon(write(tmp_path, flow("a", "src1", "dst", HOURLY.format("a")),
                     flow("b", "src2", "dst", HOURLY.format("b")),
                     flow("c", "src3", "dst3", HOURLY.format("c"))))

    def scenario() -> None:
        wait_for(lambda: len(recorder.spans) == 3, what="three runs")
    assert drive(d, scenario) == 0
    (a,), (b,), (c,) = recorder.runs("a"), recorder.runs("b"), recorder.runs("c")
    assert not overlaps(a, b), "a and b share the connector dst"
    assert overlaps(c, a) or overlaps(c, b), "c shares nothing and should not wait"


def test_sigterm_stops_the_run_in_flight_and_waits_for_it(
        tmp_path: Path, recorder: Recorder) -> None:
    recorder.duration["a"] = 60.0
    d = Daemon(write(tmp_path, flow("a", "src1", "dst")))

    def scenario() -> None:
        wait_for(lambda: recorder.running.get("a") == 1, what="run in flight")
        os.kill(os.getpid(), signal.SIGTERM)
    started = time.monotonic()
    assert drive(d, scenario) == 0
    returned = time.monotonic()
    (run,) = recorder.runs("a")
    assert run.saw_stop and run.end <= returned
    assert returned - started < 10
    assert d.stop.is_set()


def test_sighup_with_broken_config_keeps_running_the_old_one(
        tmp_path: Path, recorder: Recorder, logs: Logs) -> None:
    path = write(tmp_path, flow("a", "src1", "dst", HOURLY.format("a")))
    d = Daemon(path)
    before = d.config

    seen: dict[str, Any] = {}

    def scenario() -> None:
        wait_for(lambda: len(recorder.spans) == 1, what="startup run")
        path.write_text(path.read_text().replace('interval = "1h"', 'cron = "not a cron"'))
        os.kill(os.getpid(), signal.SIGHUP)
        wait_for(lambda: any("reload failed" in m for m in logs.messages(logging.ERROR)),
                 what="the reload error")
        seen.update({j.id: j.trigger for j in d.scheduler.get_jobs()})
    assert drive(d, scenario) == 0
    assert d.config is before
    assert set(seen) == {"flow:a", PRUNE_JOB}
    assert isinstance(seen["flow:a"], IntervalTrigger)
    assert seen["flow:a"].interval.total_seconds() == 3600
    (err,) = [m for m in logs.messages(logging.ERROR) if "reload failed" in m]
    assert "flows.a.schedule" in err and "cron" in err


def test_sighup_with_good_config_reschedules(tmp_path: Path, recorder: Recorder,
                                             logs: Logs) -> None:
    path = write(tmp_path, flow("a", "src1", "dst", HOURLY.format("a")),
                 flow("gone", "src2", "dst", HOURLY.format("gone")))
    d = Daemon(path)
    seen: dict[str, Any] = {}

    def scenario() -> None:
        wait_for(lambda: len(recorder.spans) == 2, what="startup runs")
        write(tmp_path, flow("a", "src1", "dst", '[flows.a.schedule]\ncron = "5 4 * * 1-5"'),
              flow("new", "src3", "dst3", HOURLY.format("new")))
        os.kill(os.getpid(), signal.SIGHUP)
        wait_for(lambda: len(recorder.runs("new")) == 1, what="the new flow's first run")
        seen["jobs"] = {j.id: j for j in d.scheduler.get_jobs()}
    assert drive(d, scenario) == 0
    jobs = seen["jobs"]
    assert set(jobs) == {"flow:a", "flow:new", PRUNE_JOB}
    trigger = jobs["flow:a"].trigger
    assert isinstance(trigger, CronTrigger)
    nxt = trigger.get_next_fire_time(None, datetime(2024, 1, 6, 12, tzinfo=UTC))  # a Saturday
    assert nxt is not None and nxt.weekday() == 0 and (nxt.hour, nxt.minute) == (4, 5)
    assert len(recorder.runs("a")) == 1, "an unchanged flow is not re-run by a reload"
    assert any(m.startswith("reloaded") for m in logs.messages(logging.INFO))


def test_a_failing_run_is_logged_and_the_daemon_goes_on(
        tmp_path: Path, recorder: Recorder, logs: Logs) -> None:
    recorder.raise_for["a"] = StoreLocked("flow 'a' is already running")
    recorder.raise_for["b"] = RuntimeError("boom")
    d = Daemon(write(tmp_path, flow("a", "src1", "dst", HOURLY.format("a")),
                     flow("b", "src2", "dst3", HOURLY.format("b")),
                     flow("c", "src3", "dst", HOURLY.format("c"))))

    def scenario() -> None:
        wait_for(lambda: len(recorder.runs("c")) == 1, what="flow c")
        wait_for(lambda: sum("not run" in m or "crashed" in m
                             for m in logs.messages(logging.WARNING)) == 2, what="two errors")
    assert drive(d, scenario) == 0
    assert "state store busy" in d._status["a"] and "RuntimeError" in d._status["b"]


def test_run_summary_is_logged_at_info_with_the_counts(
        tmp_path: Path, recorder: Recorder, logs: Logs) -> None:
    d = Daemon(write(tmp_path, flow("a", "src1", "dst", HOURLY.format("a"))))

    def scenario() -> None:
        wait_for(lambda: any("flow a run ok" in m for m in logs.messages(logging.INFO)),
                 what="summary line")
    assert drive(d, scenario) == 0
    (rec,) = [r for r in logs.records if "flow a run ok" in r.getMessage()]
    assert rec.levelno == logging.INFO
    assert "1 applied, 0 failed" in rec.getMessage()
    assert re.search(r"; next run \d\d:\d\d:\d\d$", rec.getMessage()), rec.getMessage()
    assert getattr(rec, "flow", None) == "a" and getattr(rec, "run_id", None) == "r1"


# -- triggers -------------------------------------------------------------------------------


@pytest.mark.parametrize(("field", "expected"), [
    ("*", "*"),
    ("1-5", "mon,tue,wed,thu,fri"),
    ("0", "sun"),
    ("7", "sun"),
    ("0,6", "sun,sat"),
    ("5-7", "sun,fri,sat"),
    ("*/2", "sun,tue,thu,sat"),
    ("1/3", "mon,thu"),
    ("MON-wed", "mon,tue,wed"),
])
def test_crontab_weekdays_use_crontab_numbering(field: str, expected: str) -> None:
    assert crontab_weekdays(field) == expected


@pytest.mark.parametrize("field", ["8", "5-1", "xyz", "1/0"])
def test_bad_weekdays_are_refused(field: str) -> None:
    with pytest.raises(ValueError):
        crontab_weekdays(field)


def test_triggers_from_schedule() -> None:
    default = trigger_for(None)
    assert isinstance(default, IntervalTrigger)
    assert default.interval.total_seconds() == 15 * 60 and DEFAULT_INTERVAL == "15m"
    every = trigger_for(ScheduleModel(interval="5m", jitter="30s"))
    assert isinstance(every, IntervalTrigger)
    assert every.interval.total_seconds() == 300 and every.jitter == 30
    cron = trigger_for(ScheduleModel(cron="30 2 * * 0"))  # Sundays at 02:30, crontab style
    assert isinstance(cron, CronTrigger)
    nxt = cron.get_next_fire_time(None, datetime(2024, 1, 3, tzinfo=UTC))  # a Wednesday
    assert nxt is not None and nxt.weekday() == 6 and (nxt.hour, nxt.minute) == (2, 30)
