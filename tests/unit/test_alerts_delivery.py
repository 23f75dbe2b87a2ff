"""Alert receivers on their own threads: the command hook (stdin, no shell, killed at its
timeout) and the bounded queue that drops the oldest event. No sleeps: waits are on events
and joins with timeouts."""

from __future__ import annotations

import json
import logging
import os
import select
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.daemon import delivery
from syncd.daemon.delivery import CommandSink, Event, Sink


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    lg = logging.getLogger("syncd")
    old = lg.level, lg.propagate
    lg.addHandler(caplog.handler)
    lg.setLevel(logging.DEBUG)
    lg.propagate = False
    caplog.handler.setLevel(logging.DEBUG)
    yield caplog
    lg.removeHandler(caplog.handler)
    lg.level, lg.propagate = old


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def event(n: int = 0) -> Event:
    return Event("refused", "corp-to-app", f"run{n}", f"flow corp-to-app: refused {n}",
                 {"reasons": [f"reason {n}"]})


def test_the_command_gets_the_event_as_json_on_stdin(tmp_path: Path) -> None:
    out = tmp_path / "got.json"
    hook = script(tmp_path, "notify", 'cat > "$1"\n')
    sink = CommandSink([str(hook), str(out)], timeout=10)
    ev = event(1)
    sink.put(ev)
    sink.close(timeout=15)  # joins the worker: the command has run
    assert json.loads(out.read_text()) == ev.payload()
    assert ev.payload()["details"] == {"reasons": ["reason 1"]}


def test_the_command_runs_without_a_shell(tmp_path: Path) -> None:
    out = tmp_path / "args"
    hook = script(tmp_path, "notify", 'printf "%s\\n" "$@" > "$1"\n')
    sink = CommandSink([str(hook), str(out), "$HOME", "a b;c"], timeout=10)
    sink.put(event())
    sink.close(timeout=15)
    assert out.read_text().splitlines() == [str(out), "$HOME", "a b;c"]


def test_a_hanging_command_is_killed_at_its_timeout(tmp_path: Path,
                                                    logs: pytest.LogCaptureFixture) -> None:
    pids = tmp_path / "pids"
    # the hook and a child of its own: the whole process group goes
    hook = script(tmp_path, "hang", f'sleep 60 &\necho $$ $! > "{pids}"\nwait\n')
    sink = CommandSink([str(hook)], timeout=0.5)
    started = time.monotonic()
    sink.put(event())
    sink.close(timeout=20)
    assert time.monotonic() - started < 10
    assert not sink._thread.is_alive()
    for pid in map(int, pids.read_text().split()):
        assert not alive(pid), pid
    (rec,) = [r for r in logs.records if "was killed" in r.getMessage()]
    assert rec.levelno == logging.ERROR and "within 0.5s" in rec.getMessage()


def alive(pid: int, within: float = 5.0) -> bool:
    """Still running `within` seconds from now: waits on a pidfd, which becomes readable when
    the process has exited (a zombie that is not ours to reap counts as gone)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        ready, _, _ = select.select([fd], [], [], within)
        return not ready
    finally:
        os.close(fd)


def test_a_failing_command_is_logged_with_its_stderr_and_the_next_event_runs(
        tmp_path: Path, logs: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "got"
    hook = script(tmp_path, "notify", f'echo "no route to pager" >&2\n'
                                      f'cat >> "{out}"\nexit 3\n')
    sink = CommandSink([str(hook)], timeout=10)
    sink.put(event(1))
    sink.put(event(2))
    sink.close(timeout=15)
    assert out.read_text().count('"event": "refused"') == 2
    errors = [r.getMessage() for r in logs.records if "exited with 3" in r.getMessage()]
    assert len(errors) == 2 and "no route to pager" in errors[0]


def test_a_command_that_cannot_start_is_logged(tmp_path: Path,
                                               logs: pytest.LogCaptureFixture) -> None:
    sink = CommandSink([str(tmp_path / "gone")], timeout=10)
    sink.put(event())
    sink.close(timeout=15)
    assert any("cannot run" in r.getMessage() for r in logs.records)


class Blocking(Sink):
    """Records what it delivers; the first delivery waits for `go`."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.go = threading.Event()
        self.delivered: list[str] = []
        super().__init__("test")

    def deliver(self, ev: Event) -> None:
        self.started.set()
        assert self.go.wait(15)
        self.delivered.append(ev.summary)


def test_a_full_queue_drops_the_oldest_event_with_a_warning(
        monkeypatch: pytest.MonkeyPatch, logs: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(delivery, "QUEUE_SIZE", 3)
    sink = Blocking()
    sink.put(event(0))
    assert sink.started.wait(15)  # event 0 is being delivered; the queue is empty
    for n in range(1, 5):
        sink.put(event(n))  # 1 2 3 fill it, 4 pushes 1 out
    sink.go.set()
    sink.close(timeout=15)
    assert sink.delivered == [f"flow corp-to-app: refused {n}" for n in (0, 2, 3, 4)]
    (warning,) = [r for r in logs.records if "queue full" in r.getMessage()]
    assert warning.levelno == logging.WARNING and "run1" not in warning.getMessage()
    assert "refused for flow corp-to-app" in warning.getMessage()


def test_close_gives_up_on_a_receiver_that_takes_too_long(
        logs: pytest.LogCaptureFixture) -> None:
    sink = Blocking()
    sink.put(event(0))
    sink.put(event(1))
    assert sink.started.wait(15)
    started = time.monotonic()
    sink.close(timeout=0.2)
    assert time.monotonic() - started < 5
    assert any("gave up" in r.getMessage() and "1 queued" in r.getMessage()
               for r in logs.records)
    sink.go.set()
    sink._thread.join(15)
    assert sink.delivered == ["flow corp-to-app: refused 0"]  # abandoned: 1 is not sent


def test_shown_url_drops_the_query_and_credentials() -> None:
    assert (delivery.shown_url("https://user:pw@hooks.example.com:8443/a/b?code=s3cret")
            == "https://hooks.example.com:8443/a/b")
    assert delivery.shown_url("http://[::1]:9000/x?t=1") == "http://[::1]:9000/x"


def test_payload_masks_registered_secrets_everywhere() -> None:
    from syncd.redact import register

    register("pager-secret-991")
    ev = Event("failed", "f", None, "boom pager-secret-991",
               {"errors": ["x pager-secret-991"], "nested": {"e": ["pager-secret-991"]}})
    text = json.dumps(ev.payload())
    assert "pager-secret-991" not in text and text.count("[redacted]") == 3
    assert ev.payload()["host"] == os.uname().nodename
