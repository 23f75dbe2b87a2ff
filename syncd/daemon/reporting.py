"""What the daemon tells about its runs: the log line after each run, the systemd STATUS=,
the metrics and alerts, and the quiet state of a flow that runs on another instance.

A mixin of `syncd.daemon.service.Daemon` (kept apart so the scheduling module stays small);
it uses the daemon's config, metrics, alerts, notifier and per-flow status.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

from syncd.config.flows import Config
from syncd.cycle.render import summary_line
from syncd.cycle.result import FlowResult
from syncd.daemon.alerts import Alerts
from syncd.daemon.metrics import Metrics
from syncd.daemon.sdnotify import Notifier

log = logging.getLogger("syncd.daemon")


class Reporting:
    config: Config
    metrics: Metrics
    alerts: Alerts
    notifier: Notifier
    _scheduled: dict[str, Any]
    _triggers: dict[str, Any]
    _status: dict[str, str]
    _status_guard: threading.Lock
    _where: dict[str, str]

    def _elsewhere(self, name: str, why: str) -> None:
        """The flow runs on another instance (or is left to one): the expected state of a
        flow this instance does not own. Status and metrics say so; the log only when it
        changes (not once per tick); no alert."""
        self.metrics.flow_here(name, False)
        self._set_status(name, why)
        if self._where.get(name) != why:
            self._where[name] = why
            log.info("flow %s: %s", name, why, extra={"flow": name})

    def _finished(self, cfg: Config, res: FlowResult) -> None:
        counts = summary_line(res.plan.summary()) if res.plan is not None else "no plan"
        line = (f"flow {res.flow} run {res.result}: {counts}; {res.applied} applied, "
                f"{len(res.failures)} failed, {res.duration:.2f}s")
        problems = res.errors + [f"refused: {r}" for r in res.refused]
        if problems:
            line += " — " + "; ".join(problems)
        line += self._next_run(res.flow)
        log.log(logging.INFO if res.result == "ok" else logging.WARNING, line,
                extra={"flow": res.flow, "run_id": res.run_id})
        when = datetime.now().strftime("%H:%M:%S")
        self._set_status(res.flow, f"{res.result} {res.applied} applied "
                                   f"{len(res.failures)} failed at {when}")
        flow = cfg.flows.get(res.flow)
        target = flow.target if flow is not None else ""
        store = self._open_store(cfg) if self.metrics.address or self.alerts.enabled else None
        try:
            self.metrics.record(res, target, store)
            self.alerts.after_run(res, store)
        finally:
            if store is not None:
                store.close()

    def _next_run(self, name: str) -> str:
        """``; next run 14:05:00`` (local time): an admin watching the journal knows when
        to expect the next line. From the flow's trigger, not the scheduler: asking the
        scheduler from a job takes its lock, which a shutdown holds while it waits for the
        job (a deadlock)."""
        trigger = getattr(self, "_triggers", {}).get(name)
        try:
            when = (trigger.get_next_fire_time(None, datetime.now(UTC))
                    if trigger is not None else None)
        except Exception:  # a log line must never fail a run
            when = None
        return f"; next run {when.astimezone():%H:%M:%S}" if when is not None else ""

    def _open_store(self, cfg: Config) -> Any | None:
        from syncd.state.store import Store

        try:
            return Store(cfg.state_url, readonly=True)
        except Exception as exc:  # metrics are best effort
            log.debug("metrics: cannot open the state store: %s", exc)
            return None

    def _run_error(self, name: str, why: str) -> None:
        self.metrics.record_error(name)
        self._set_status(name, f"error: {why} at {datetime.now().strftime('%H:%M:%S')}")

    def _set_status(self, flow: str, text: str) -> None:
        with self._status_guard:
            self._status[flow] = text
        self.notifier.status(self._status_text())

    def _status_text(self) -> str:
        with self._status_guard:
            parts = [f"{f}: {s}" for f, s in sorted(self._status.items())
                     if f in self.config.flows]
        return "; ".join(parts) or f"{len(self._scheduled)} flow(s) scheduled"
