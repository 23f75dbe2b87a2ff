"""sd_notify: the wire format on a real unix datagram socket (path and abstract namespace),
and what the daemon tells systemd over its lifetime."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.cycle import engine
from syncd.daemon.sdnotify import Notifier, socket_address, watchdog_interval
from syncd.daemon.service import Daemon
from tests.unit.test_daemon import HOURLY, Recorder, drive, flow, wait_for, write


class Listener:
    """A datagram socket standing in for systemd's notify socket."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(socket_address(address))
        self.sock.settimeout(0.05)
        self.messages: list[list[str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.append(data.decode().split("\n"))

    def fields(self) -> list[str]:
        return [f for m in list(self.messages) for f in m]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[Listener]:
    lst = Listener(str(tmp_path / "notify.sock"))
    yield lst
    lst.close()


def test_notify_to_a_path_socket(listener: Listener) -> None:
    n = Notifier(listener.address)
    assert n.enabled
    assert n.ready("all\nfine")
    assert n.watchdog()
    wait_for(lambda: len(listener.messages) == 2)
    assert listener.messages[0] == ["READY=1", "STATUS=all fine"]
    assert listener.messages[1] == ["WATCHDOG=1"]


def test_notify_to_an_abstract_socket() -> None:
    lst = Listener(f"@syncd-test-{uuid.uuid4().hex}")
    try:
        n = Notifier(lst.address)
        assert n.reloading() and n.stopping("bye")
        wait_for(lambda: len(lst.messages) == 2)
        assert lst.messages[0][0] == "RELOADING=1"
        assert lst.messages[0][1].startswith("MONOTONIC_USEC=")
        assert int(lst.messages[0][1].split("=")[1]) > 0
        assert lst.messages[1] == ["STOPPING=1", "STATUS=bye"]
    finally:
        lst.close()


def test_without_notify_socket_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled and not n.ready() and not n.watchdog()


def test_a_vanished_socket_does_not_raise(tmp_path: Path) -> None:
    assert Notifier(str(tmp_path / "nobody-listens")).ready() is False


def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    assert watchdog_interval() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    monkeypatch.setenv("WATCHDOG_USEC", "garbage")
    assert watchdog_interval() is None


def test_daemon_lifecycle_notifications(tmp_path: Path, listener: Listener,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    rec = Recorder()
    monkeypatch.setattr(engine, "run", rec)
    monkeypatch.setenv("NOTIFY_SOCKET", listener.address)
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # ping every 50 ms
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    path = write(tmp_path, flow("a", "src1", "dst", HOURLY.format("a")))
    d = Daemon(path)

    def scenario() -> None:
        wait_for(lambda: "READY=1" in listener.fields(), what="READY=1")
        wait_for(lambda: listener.fields().count("WATCHDOG=1") >= 3, what="watchdog pings")
        wait_for(lambda: any(f.startswith("STATUS=a: ok 1 applied") for f in listener.fields()),
                 what="STATUS with the run")
        d.request("reload")
        wait_for(lambda: "RELOADING=1" in listener.fields(), what="RELOADING=1")
        wait_for(lambda: listener.fields().count("READY=1") == 2, what="READY after reload")

    assert drive(d, scenario) == 0
    wait_for(lambda: "STOPPING=1" in listener.fields(), what="STOPPING=1")
    fields = listener.fields()
    first_ready = fields.index("READY=1")
    assert fields.index("RELOADING=1") > first_ready
    assert fields.index("STOPPING=1") > fields.index("RELOADING=1")
    # READY=1 comes only once the jobs are scheduled: the scheduler started them
    assert not [f for f in fields[:first_ready] if f.startswith("STATUS=a:")]
    time.sleep(0.2)  # after shutdown the watchdog job is gone: no further pings
    n = fields.count("WATCHDOG=1")
    time.sleep(0.2)
    assert listener.fields().count("WATCHDOG=1") == n
