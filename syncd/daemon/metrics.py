"""Prometheus metrics for the daemon (``[metrics] listen = "127.0.0.1:9464"``).

Everything is recorded from what a run returns (`syncd.cycle.result.FlowResult`) and from the state
store after the run, in the daemon's own process, into a private registry (not the global
one: tests and reloads can build several). The HTTP endpoint (`syncd.daemon.web`) serves them
on ``/metrics`` and, given the config (the daemon's), the read-only status page on ``/`` and
``/status``; nothing is served when ``listen`` is not set.

Exposed (all labelled by ``flow`` unless said otherwise):

- ``syncd_run_duration_seconds`` histogram of run durations
- ``syncd_runs_total{result}`` runs by result (ok, failed, refused, aborted, error)
- ``syncd_last_run_result{syncd_last_run_result=...}`` the last result as an enum
- ``syncd_last_run_timestamp_seconds``, ``syncd_last_success_timestamp_seconds``
- ``syncd_changes_total{kind, op, result}`` changes applied / failed, from the run journal
- ``syncd_pending_objects{state}`` pending retries / quarantined (``Store.pending_counts``)
- ``syncd_cursor_age_seconds`` age of the flow's oldest incremental cursor (``Store.cursor_age``)
- ``syncd_target_http_429_total{target}`` HTTP 429 answers per target connector
- ``syncd_scim_requests_total{kind, method, status}`` requests received by the daemon's SCIM
  service provider (``[serve]``; kind: user, group, discovery, search, bulk, other), also
  shown on the status page
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable
from typing import Any, TypeVar
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram

from syncd.cycle.result import FlowResult

log = logging.getLogger("syncd.metrics")
T = TypeVar("T")

RESULTS = ["ok", "failed", "refused", "aborted", "error"]
#: Seconds; directory syncs range from sub-second no-op cycles to hour-long initial loads.
BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)


def parse_listen(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port); ValueError naming the problem."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"metrics.listen {text!r}: use host:port, e.g. 127.0.0.1:9464")
    return host.strip("[]"), int(port)


class Metrics:
    """The daemon's metrics; `serve` exposes them over HTTP, with the status page when
    `page` gives the current config."""

    def __init__(self, page: Callable[[], Any] | None = None) -> None:
        self.page = page
        self.registry = CollectorRegistry()
        r = self.registry
        self.duration = Histogram("syncd_run_duration_seconds", "Duration of flow runs",
                                  ["flow"], buckets=BUCKETS, registry=r)
        self.runs = Counter("syncd_runs", "Flow runs by result", ["flow", "result"], registry=r)
        self.last_result = Enum("syncd_last_run_result", "Result of the last run of a flow",
                                ["flow"], states=RESULTS, registry=r)
        self.last_run = Gauge("syncd_last_run_timestamp_seconds",
                              "When the last run of a flow finished", ["flow"], registry=r)
        self.last_success = Gauge("syncd_last_success_timestamp_seconds",
                                  "When a run of the flow last finished ok", ["flow"], registry=r)
        self.changes = Counter("syncd_changes", "Changes applied or failed",
                               ["flow", "kind", "op", "result"], registry=r)
        self.pending = Gauge("syncd_pending_objects",
                             "Objects waiting for a retry or quarantined after failures",
                             ["flow", "state"], registry=r)
        self.cursor_age = Gauge("syncd_cursor_age_seconds",
                                "Seconds since the flow's oldest incremental cursor moved",
                                ["flow"], registry=r)
        self.http_429 = Counter("syncd_target_http_429", "HTTP 429 (throttled) answers",
                                ["target"], registry=r)
        self.running_here = Gauge("syncd_flow_running_here",
                                  "1 when this instance runs the flow, 0 when another "
                                  "instance sharing the state store does", ["flow"],
                                  registry=r)
        self.scim_requests = Counter("syncd_scim_requests", "Requests received over SCIM",
                                     ["kind", "method", "status"], registry=r)
        #: (kind, status) -> requests, for the status page; None: not serving SCIM.
        self._received: Tally[tuple[str, str]] | None = None
        self._received_lock = threading.Lock()
        self._server: WSGIServer | None = None
        self.address: str | None = None

    # -- HTTP ------------------------------------------------------------------------------
    def serve(self, listen: str | None) -> None:
        """Serve on `listen` (stop serving when None); a no-op when the address is unchanged,
        so a reload with the same ``[metrics]`` keeps the socket."""
        if listen == self.address:
            return
        self.close()
        if listen is None:
            return
        from syncd.daemon.web import start_server

        host, port = parse_listen(listen)
        server = start_server(host, port, self.registry, self.page, self.received)
        self._server, self.address = server, listen
        log.info("metrics on http://%s/metrics%s", listen,
                 f", status page on http://{listen}/" if self.page is not None else "")

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self._server, self.address = None, None

    # -- recording -------------------------------------------------------------------------
    def flow_known(self, flow: str) -> None:
        """Make a scheduled flow's gauges visible before its first run finishes."""
        for state in ("pending", "quarantined"):
            self.pending.labels(flow, state)

    def record(self, res: FlowResult, target: str, store: Any | None) -> None:
        """Account one finished run; `store` (opened read-only) feeds the journal counts,
        pending objects and cursor age when it offers them."""
        flow = res.flow
        self.duration.labels(flow).observe(res.duration)
        self.runs.labels(flow, res.result).inc()
        self.last_result.labels(flow).state(res.result if res.result in RESULTS else "error")
        ts = time.time()
        self.last_run.labels(flow).set(ts)
        if res.result == "ok":
            self.last_success.labels(flow).set(ts)
        for (kind, op, result), n in change_counts(res, store).items():
            self.changes.labels(flow, kind, op, result).inc(n)
        # Connectors are opened per run, so `stats` counts this run only: it is the delta.
        throttled = int(res.target_stats.get("http_429", 0) or 0)
        if throttled > 0:
            self.http_429.labels(target).inc(throttled)
        self.refresh_store(flow, store)

    def serving(self) -> None:
        """The daemon serves SCIM: the status page shows what it received (zero so far)."""
        with self._received_lock:
            if self._received is None:
                self._received = Tally()

    def scim_request(self, kind: str, method: str, status: int) -> None:
        """One request answered by the SCIM service provider."""
        self.scim_requests.labels(kind, method, str(status)).inc()
        with self._received_lock:
            if self._received is None:
                self._received = Tally()
            self._received[(kind, str(status))] += 1

    def received(self) -> tuple[tuple[str, str, int], ...] | None:
        """(kind, status, requests) since the start, or None when not serving SCIM."""
        with self._received_lock:
            if self._received is None:
                return None
            return tuple((k, s, n) for (k, s), n in sorted(self._received.items()))

    def flow_here(self, flow: str, here: bool) -> None:
        """Whether this instance runs the flow (1) or another instance sharing the
        PostgreSQL store does (0): several daemons, each flow on exactly one of them."""
        self.running_here.labels(flow).set(1 if here else 0)

    def record_error(self, flow: str) -> None:
        """A run that never produced a result (crashed, store busy)."""
        self.runs.labels(flow, "error").inc()
        self.last_result.labels(flow).state("error")
        self.last_run.labels(flow).set(time.time())

    def refresh_store(self, flow: str, store: Any | None) -> None:
        counts: dict[str, int] = {"pending": 0, "quarantined": 0}
        pending_counts: Callable[[str], dict[str, int]] | None = getattr(
            store, "pending_counts", None)
        if pending_counts is not None:
            empty: dict[str, int] = {}
            counts.update(_safe(lambda: pending_counts(flow), empty))
        for state, n in counts.items():
            self.pending.labels(flow, state).set(n)
        cursor_age: Callable[[str], float | None] | None = getattr(store, "cursor_age", None)
        age = _safe(lambda: cursor_age(flow), None) if cursor_age is not None else None
        if age is not None:
            self.cursor_age.labels(flow).set(age)


def change_counts(res: FlowResult, store: Any | None) -> dict[tuple[str, str, str], int]:
    """(kind, op, applied|failed) -> n for one run.

    The run journal is the truth (a stopped run applied only part of its plan); without a
    journal, a run that went to the end is reconstructed from its plan minus its failures.
    """
    if res.run_id is not None and store is not None:
        from_journal = _safe(lambda: _journal_counts(store, res.run_id or ""), None)
        if from_journal is not None:
            return from_journal
    out: dict[tuple[str, str, str], int] = {}
    failed = {f.change.id for f in res.failures}
    for f in res.failures:
        key = (f.change.kind, f.change.op, "failed")
        out[key] = out.get(key, 0) + 1
    if res.plan is not None and res.result != "aborted" and not res.dry_run:
        for c in res.plan.changes:
            if c.id not in failed:
                key = (c.kind, c.op, "applied")
                out[key] = out.get(key, 0) + 1
    return out


def _journal_counts(store: Any, run_id: str) -> dict[tuple[str, str, str], int] | None:
    counts = getattr(store, "change_counts", None)
    if counts is not None:
        return dict(counts(run_id))
    engine = getattr(store, "engine", None)
    if engine is None:
        return None
    from sqlalchemy import text

    q = text('SELECT kind, op, result, count(*) FROM "change" WHERE run_id = :r '
             "GROUP BY kind, op, result")
    with engine.connect() as conn:
        return {(k, o, r): int(n) for k, o, r, n in conn.execute(q, {"r": run_id})}


def _safe(fn: Callable[[], T], default: T) -> T:
    """Metrics are best effort: a store hiccup must not fail the run that was just done."""
    try:
        return fn()
    except Exception as exc:
        log.debug("metrics: %s", exc)
        return default
