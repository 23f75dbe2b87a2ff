"""Alerts: tell an admin when a flow needs attention, without watching Prometheus.

After each run the daemon hands the run's `FlowResult` (and the state store, opened read-only)
to `Alerts.after_run`, which derives the events and queues them for the receivers configured
in ``[alerts]`` (`syncd.daemon.delivery`: webhooks, a command), filtered by ``events`` and
``flows``:

- ``refused``: the safety check refused the plan (the reasons);
- ``quarantined``: objects quarantined by this run (failed `MAX_ATTEMPTS` times; names and
  errors), also in a run that ended ok (a collision quarantined while held);
- ``failed``: changes failed, a read failed, or the run could not happen (the state store is
  unavailable, the run crashed);
- ``aborted``: a ``Fatal`` error, a target taken for down, a stop request;
- ``recovered``: the first run that ends ok, with no change waiting for a retry, after a
  run that raised ``refused``, ``failed`` or ``aborted``.

Deduplication, per flow, in memory (`Tracker`): while a problem lasts, the same alert is not
sent again — a plan refused for the same reasons, the same changes failing with the same
error classes, an abort with the same errors. A different problem is sent, and so is
``recovered`` when it clears. A restart forgets: a problem still there is alerted once more
after it, and one that cleared across it gets no ``recovered``. Quarantine alerts name only
the objects quarantined by this run, so they never repeat.

The daemon is the only sender: `syncd run` reports through its exit code (1 failed or
aborted, 3 refused) and its output, which is what a cron job or a CI gate acts on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from syncd.config.schema import AlertsModel
from syncd.cycle.result import FlowResult
from syncd.daemon.delivery import Event, Sink, build_sinks
from syncd.redact import redact

log = logging.getLogger("syncd.alerts")
T = TypeVar("T")

#: Objects listed in one event at most (the count says how many there were).
MAX_LISTED = 50
PROBLEMS = ("refused", "failed", "aborted")


@dataclass(frozen=True)
class _Open:
    """The problem a flow is in: the last alert sent for it, and since when."""

    kind: str
    key: tuple[Any, ...]
    since: str


class Tracker:
    """Which flows are in trouble, so that a problem is alerted when it starts or changes
    and `recovered` when it clears (module docstring). Thread-safe: flows run in parallel."""

    def __init__(self) -> None:
        self._open: dict[str, _Open] = {}
        self._lock = threading.Lock()

    def problem(self, event: Event, key: tuple[Any, ...]) -> bool:
        """Record `event` as the flow's problem; False when it is the one already alerted."""
        with self._lock:
            cur = self._open.get(event.flow)
            if cur is not None and (cur.kind, cur.key) == (event.kind, key):
                return False
            self._open[event.flow] = _Open(event.kind, key, cur.since if cur else event.at)
            return True

    def is_open(self, flow: str) -> bool:
        with self._lock:
            return flow in self._open

    def ok(self, flow: str, run_id: str | None, quarantined: int) -> Event | None:
        """A clean run: the `recovered` event when the flow was in trouble."""
        with self._lock:
            cur = self._open.pop(flow, None)
        if cur is None:
            return None
        summary = f"flow {flow} recovered: the run ended ok after {cur.kind} since {cur.since}"
        if quarantined:
            summary += f" ({quarantined} object(s) still quarantined: syncd release)"
        return Event("recovered", flow, run_id, summary,
                     {"after": cur.kind, "since": cur.since, "quarantined": quarantined})


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def problem_event(res: FlowResult) -> tuple[Event, tuple[Any, ...]] | None:
    """The `refused`, `failed` or `aborted` event of a run, with its deduplication key."""
    flow, run_id = res.flow, res.run_id
    if res.result == "refused":
        first = res.refused[0] if res.refused else "no reason given"
        more = f" (and {len(res.refused) - 1} more)" if len(res.refused) > 1 else ""
        return (Event("refused", flow, run_id,
                      f"flow {flow}: plan refused by the safety check, nothing applied: "
                      f"{first}{more}", {"reasons": list(res.refused)}),
                tuple(res.refused))
    failures = [{"kind": f.change.kind, "op": f.change.op, "name": f.change.name,
                 "source_id": f.change.source_id, "error_class": f.error_class,
                 "error": f.message} for f in res.failures]
    details: dict[str, Any] = {"errors": list(res.errors), "applied": res.applied,
                               "failed": len(failures), "failures": failures[:MAX_LISTED]}
    if res.result == "aborted":
        why = res.errors[0] if res.errors else "no reason given"
        return (Event("aborted", flow, run_id, f"flow {flow}: run aborted: {why} "
                      f"({res.applied} applied, {len(failures)} failed)", details),
                tuple(res.errors))
    if res.result == "failed":
        parts = []
        if failures:
            parts.append(f"{len(failures)} change(s) failed: "
                         f"{_listed([str(f['name']) for f in failures])}")
        parts += res.errors
        key = (tuple(sorted({(f["kind"], f["source_id"], f["op"], f["error_class"])
                             for f in failures})), tuple(res.errors))
        return (Event("failed", flow, run_id, f"flow {flow}: run failed: " + "; ".join(
                    parts or ["no reason given"]), details), key)
    return None


def quarantined_event(res: FlowResult, store: Any | None) -> Event | None:
    """Objects this run quarantined: pending rows now quarantined that this run tried (a
    failed change) or held as a collision — not the ones quarantined before it."""
    pending: Callable[[str], dict[str, Any]] | None = getattr(store, "pending", None)
    if pending is None:
        return None
    tried = {(f.change.kind, f.change.source_id) for f in res.failures}
    if res.plan is not None:
        tried |= {(h.kind, h.source_id) for h in res.plan.held if h.code == "collision"}
    if not tried:
        return None
    none: list[Any] = []
    rows = _safe(lambda: list(pending(res.flow).values()), none)
    hit = sorted((p for p in rows if p.quarantined and (p.kind, p.source_id) in tried),
                 key=lambda p: (p.kind, p.name.casefold(), p.source_id))
    if not hit:
        return None
    objects = [{"kind": p.kind, "name": p.name, "source_id": p.source_id, "op": p.op,
                "attempts": p.attempts, "error_class": p.error_class, "error": p.error}
               for p in hit]
    return Event("quarantined", res.flow, res.run_id,
                 f"flow {res.flow}: {len(hit)} object(s) quarantined after repeated "
                 f"failures, held until their source changes or syncd release: "
                 f"{_listed([p.name or p.source_id for p in hit])}",
                 {"count": len(hit), "objects": objects[:MAX_LISTED]})


def _counts(store: Any | None, flow: str) -> dict[str, int]:
    counts: Callable[[str], dict[str, int]] | None = getattr(store, "pending_counts", None)
    empty: dict[str, int] = {}
    return _safe(lambda: counts(flow), empty) if counts is not None else empty


def _safe(fn: Callable[[], T], default: T) -> T:
    """Alerts are best effort: a store hiccup must not fail the run that was just done."""
    try:
        return fn()
    except Exception as exc:
        log.warning("alerts: cannot read the state store: %s: %s", type(exc).__name__, exc)
        return default


class Alerts:
    """The daemon's alerts: the `Tracker`, the ``[alerts]`` filters and the receivers."""

    def __init__(self, cfg: AlertsModel) -> None:
        self.cfg = cfg
        self.tracker = Tracker()
        self.sinks: list[Sink] = build_sinks(cfg)

    @property
    def enabled(self) -> bool:
        return bool(self.sinks)

    def configure(self, cfg: AlertsModel) -> None:
        """After a reload: new receivers when ``[alerts]`` changed (the old ones deliver
        what they hold in the background); what the tracker knows is kept."""
        if cfg == self.cfg:
            return
        old, self.cfg, self.sinks = self.sinks, cfg, build_sinks(cfg)
        for sink in old:
            threading.Thread(target=sink.close, name="alerts close", daemon=True).start()

    def after_run(self, res: FlowResult, store: Any | None) -> list[Event]:
        """The per-run hook: derive, deduplicate and queue this run's events (returned).
        Cheap and non-blocking: delivery happens on the receivers' threads. Never raises."""
        if not self.enabled or res.dry_run:
            return []
        try:
            return self._send(self._events(res, store))
        except Exception:
            log.exception("alerts: flow %s: no alert derived from run %s", res.flow, res.run_id)
            return []

    def _events(self, res: FlowResult, store: Any | None) -> list[Event]:
        events: list[Event] = []
        found = problem_event(res)
        if found is not None and self.tracker.problem(*found):
            events.append(found[0])
        quarantined = quarantined_event(res, store)
        if quarantined is not None:
            events.append(quarantined)
        if res.result != "ok" or not self.tracker.is_open(res.flow):
            return events
        counts = _counts(store, res.flow)  # only now: it reads the flow's pending rows
        if not counts.get("pending", 0):
            recovered = self.tracker.ok(res.flow, res.run_id, counts.get("quarantined", 0))
            if recovered is not None:
                events.append(recovered)
        return events

    def run_error(self, flow: str, why: str) -> list[Event]:
        """A run that never produced a result: the state store unavailable, a crash."""
        if not self.enabled:
            return []
        event = Event("failed", flow, None, f"flow {flow}: run failed: {why}",
                      {"errors": [why], "applied": 0, "failed": 0, "failures": []})
        return self._send([event] if self.tracker.problem(event, ((), (why,))) else [])

    def _send(self, events: list[Event]) -> list[Event]:
        cfg = self.cfg
        out = [e for e in events if e.kind in cfg.events
               and (cfg.flows is None or e.flow in cfg.flows)]
        for event in out:
            log.info("alert %s for flow %s: %s", event.kind, event.flow, redact(event.summary),
                     extra={"flow": event.flow, "run_id": event.run_id})
            for sink in self.sinks:
                sink.put(event)
        return out

    def close(self) -> None:
        """At shutdown: deliver what is queued, within `delivery.DRAIN_S` for all."""
        threads = [threading.Thread(target=s.close, daemon=True) for s in self.sinks]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
