"""The daemon prunes the run journal once at start and then daily (``[state] journal_keep``),
logging how much went; "forever" never prunes."""

from __future__ import annotations

import logging
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from syncd.state.store import Store
from tests.unit.test_journal import Journal, load


def test_the_daemon_prunes_at_start_and_logs_how_much(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from syncd.cycle import engine
    from syncd.cycle.result import FlowResult
    from syncd.daemon.service import PRUNE_INTERVAL_S, PRUNE_JOB, Daemon
    from tests.unit.test_daemon import Logs, drive, wait_for

    monkeypatch.setattr(engine, "run", lambda cfg, *, flows, **_: [FlowResult(flows[0], False)])
    state = tmp_path / "state.db"
    path = tmp_path / "syncd.toml"
    path.write_text(f'[state]\nurl = "sqlite:///{state}"\njournal_keep = "30d"\n'
                    '[connectors.s]\ntype = "memory"\ndirectory = "prune-s"\n'
                    '[connectors.d]\ntype = "memory"\ndirectory = "prune-d"\n'
                    '[flows.f]\nsource = "s"\ntarget = "d"\n'
                    '[flows.f.users.mapping]\nuserName = "uid"\n')
    now = datetime.now(UTC)
    old = [{"id": f"r{i}", "flow": "f", "started_at": now - timedelta(days=40 - i),
            "finished_at": None, "result": "ok", "summary": "{}", "error": None}
           for i in range(3)]
    store = Store(f"sqlite:///{state}")
    try:
        load(store, Journal(old, [{"id": 1, "run_id": "r0", "flow": "f", "kind": "user",
                                   "op": "create", "source_id": "s", "target_id": "t",
                                   "name": "ann", "detail": "{}", "result": "applied",
                                   "error": None, "at": old[0]["started_at"]}]))
    finally:
        store.close()
    logs = Logs()
    logger = logging.getLogger("syncd.daemon")
    level, logger.level = logger.level, logging.INFO
    logger.addHandler(logs)
    signals = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    d = Daemon(path)
    seen: dict[str, Any] = {}

    def pruned() -> list[str]:
        return [m for m in logs.messages(logging.INFO) if m.startswith("journal pruned")]

    def scenario() -> None:
        wait_for(lambda: bool(pruned()), what="the prune at start")
        job = d.scheduler.get_job(PRUNE_JOB)
        seen["next"] = job.next_run_time if job else None

    try:
        assert drive(d, scenario) == 0
    finally:
        logger.removeHandler(logs)
        logger.setLevel(level)
        for sig, handler in signals.items():
            signal.signal(sig, handler)
    (line,) = pruned()
    assert line.startswith("journal pruned: 2 run(s) and 1 change(s) older than 30d")
    assert PRUNE_INTERVAL_S - 60 < (seen["next"] - datetime.now(UTC)).total_seconds() \
        <= PRUNE_INTERVAL_S
    store = Store(f"sqlite:///{state}", readonly=True)
    try:
        assert [r["id"] for r in store.runs("f", 10)] == ["r2"]
    finally:
        store.close()


def test_forever_never_prunes(tmp_path: Path) -> None:
    from syncd.daemon.service import Daemon

    path = tmp_path / "syncd.toml"
    path.write_text(f'[state]\nurl = "sqlite:///{tmp_path / "s.db"}"\n'
                    'journal_keep = "forever"\n')
    assert Daemon(path).prune_journal() is None
