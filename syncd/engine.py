"""One sync cycle: read, scope, map, match, plan, check, apply, journal.

This is the imperative shell around the pure planner. Dry run is simply "stop before apply"
(and open the store read-only): the plan shown is the plan a real run would execute.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from syncd import registry
from syncd.apply import Applier, Failure
from syncd.config import Config, Flow, KindFlow
from syncd.connector import Connector
from syncd.errors import ConnectorError, Fatal, Retriable, SafetyRefused
from syncd.log import context as log_context
from syncd.mapping import MappingError
from syncd.model import Entry, Kind, Value
from syncd.plan import Hold, Plan
from syncd.planner import Item, KindInput, match_value, plan_flow
from syncd.policy import check
from syncd.store import Store

log = logging.getLogger("syncd.engine")

#: Up to this many unlinked entries are matched with one `find` per entry; above it the
#: target is listed once and matched in memory (initial syncs).
FIND_LIMIT = 50


@dataclass
class FlowResult:
    flow: str
    dry_run: bool
    plan: Plan | None = None
    result: str = "ok"  # ok | failed | refused | aborted
    failures: list[Failure] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    applied: int = 0
    run_id: str | None = None
    duration: float = 0.0
    names: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: Counters the target connector exposes as `stats` (e.g. {"http_429": 3}), for metrics.
    target_stats: dict[str, int] = field(default_factory=dict)


class Connectors:
    """Opens each configured connector once per cycle, shared by the flows that use it."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._open: dict[str, Connector] = {}

    def get(self, name: str) -> Connector:
        if name not in self._open:
            spec = self.config.connectors[name]
            cls = registry.load(spec.type)
            conn = cls(name, spec.config)  # type: ignore[call-arg]
            conn.open()
            self._open[name] = conn
        return self._open[name]

    def close(self) -> None:
        for c in self._open.values():
            try:
                c.close()
            except Exception:  # closing must never hide the run's real outcome
                log.debug("error closing %s", c.name, exc_info=True)
        self._open.clear()


def run(config: Config, *, flows: Sequence[str] | None = None, dry_run: bool = False,
        allow_deletes: bool = False, progress: Callable[[str], None] | None = None,
        stop: threading.Event | None = None) -> list[FlowResult]:
    """Run flows once. Setting `stop` (SIGTERM in the daemon) lets the changes in flight
    finish and be recorded, submits no more, and ends the run as ``aborted``."""
    names = list(flows) if flows else list(config.flows)
    store = Store(config.state_url, readonly=dry_run)
    connectors = Connectors(config)
    try:
        store.lock()
        return [run_flow(config.flows[n], store, connectors, dry_run=dry_run,
                         allow_deletes=allow_deletes, progress=progress, stop=stop)
                for n in names if stop is None or not stop.is_set()]
    finally:
        connectors.close()
        store.close()


def run_flow(flow: Flow, store: Store, connectors: Connectors, *, dry_run: bool,
             allow_deletes: bool = False, progress: Callable[[str], None] | None = None,
             stop: threading.Event | None = None) -> FlowResult:
    started = time.monotonic()
    res = FlowResult(flow.name, dry_run)
    run_id = None if dry_run else store.start_run(flow.name)
    res.run_id = run_id
    try:
        with log_context(run_id=run_id, flow=flow.name):
            _cycle(flow, store, connectors, res, allow_deletes, progress, stop)
    except SafetyRefused as exc:
        res.result, res.refused = "refused", exc.reasons
    except ConnectorError as exc:
        res.result = "aborted"
        res.errors.append(f"{type(exc).__name__}: {exc}")
    res.duration = time.monotonic() - started
    if run_id is not None:
        summary: dict[str, Any] = res.plan.summary() if res.plan is not None else {}
        error = "; ".join(res.errors + res.refused) or None
        store.finish_run(run_id, res.result, {"plan": summary, "applied": res.applied,
                                              "failed": len(res.failures)}, error)
    return res


def _cycle(flow: Flow, store: Store, connectors: Connectors, res: FlowResult,
           allow_deletes: bool, progress: Callable[[str], None] | None,
           stop: threading.Event | None = None) -> None:
    source = connectors.get(flow.source)
    target = connectors.get(flow.target)
    inputs: list[KindInput] = []
    held: list[Hold] = []
    seen: dict[str, int] = {}
    user_ids: frozenset[str] | None = None
    for kf in flow.kinds:  # users first: groups restrict members to in-scope users
        items, complete, n_seen, k_held = _read_source(source, kf, res)
        held += k_held
        seen[kf.kind] = n_seen
        links = store.links(flow.name, kf.kind)
        for path in sorted(set(kf.mapping.paths) & target.capabilities.unsupported(kf.kind)):
            res.warnings.append(f"{flow.target} does not support {kf.kind} attribute {path!r}: "
                                f"it is not sent")
        unlinked = [it for sid, it in items.items() if sid not in links]
        candidates = _candidates(target, kf, unlinked) if unlinked and kf.match else {}
        universe = user_ids if kf.kind == "group" else None
        inputs.append(KindInput(
            kf.kind, items, links, kf.match, kf.deprovision, kf.mapping.on_create_only,
            candidates, complete, universe))
        if kf.kind == "user":
            user_ids = frozenset(items)
            res.names.update({sid: it.name for sid, it in items.items()})
    plan = plan_flow(flow.name, inputs)
    plan = Plan(plan.flow, plan.changes, plan.held + tuple(held), plan.notes, plan.linked)
    res.plan = plan
    check(plan, flow.safety, seen=seen, allow_deletes=allow_deletes)
    if res.dry_run or not plan.changes:
        return
    assert res.run_id is not None
    outcome = Applier(flow, target, store, res.run_id, progress, stop).apply(plan)
    res.applied, res.failures = outcome.applied, outcome.failures
    res.target_stats = dict(getattr(target, "stats", {}) or {})
    if outcome.stopped:
        res.result = "aborted"
        res.errors.append("stopped before the plan was fully applied (shutdown requested)")
    elif outcome.fatal:
        res.result = "aborted"
        res.errors.append(f"Fatal: {outcome.fatal}")
    elif outcome.failures:
        res.result = "failed"


def _read_source(source: Connector, kf: KindFlow, res: FlowResult
                 ) -> tuple[dict[str, Item], bool, int, list[Hold]]:
    """Stream the source, keeping only scoped and mapped values (not raw entries)."""
    attributes = sorted(kf.mapping.source_attributes() | kf.scope.source_attributes())
    implicit_active = kf.kind == "user" and "active" not in kf.mapping.paths
    items: dict[str, Item] = {}
    held: list[Hold] = []
    complete, seen = True, 0
    try:
        for batch in source.read(kf.kind, None, attributes):
            complete = complete and batch.complete
            for e in batch.entries:
                seen += 1
                if not kf.scope.contains(e.raw):
                    continue
                try:
                    attrs: dict[str, Value] = kf.mapping.map(e.raw)
                except MappingError as exc:
                    held.append(Hold(kf.kind, e.external_id, e.name or e.external_id, str(exc)))
                    continue
                if implicit_active:
                    attrs["active"] = True
                items[e.external_id] = Item(e.external_id, _label(e, attrs), attrs, e.members)
    except (Fatal, Retriable) as exc:
        complete = False
        res.result = "failed"
        res.errors.append(f"reading {kf.kind}s from {source.name} failed: {exc}")
    return items, complete, seen, held


def _label(e: Entry, attrs: dict[str, Value]) -> str:
    for key in ("userName", "displayName"):
        v = attrs.get(key)
        if isinstance(v, str) and v:
            return v
    return e.name or e.external_id


def _candidates(target: Connector, kf: KindFlow, unlinked: list[Item]
                ) -> dict[tuple[str, str], list[Entry]]:
    """Target objects that could be adopted, indexed by (match key, normalised value).

    A failure here is Fatal for the flow: creating without having been able to look for
    an existing object is exactly how duplicates happen.
    """
    index: dict[tuple[str, str], list[Entry]] = {}
    kind: Kind = kf.kind
    if len(unlinked) > FIND_LIMIT:
        for batch in target.read(kind, None, None):
            for e in batch.entries:
                for key in kf.match:
                    mv = match_value(e.attrs.get(key))
                    if mv is not None:
                        index.setdefault((key, mv), []).append(e)
        return index
    for it in unlinked:
        for key in kf.match:
            value = it.attrs.get(key)
            mv = match_value(value)
            if mv is None or (key, mv) in index:
                continue
            raw = value[0] if isinstance(value, tuple) else value
            index[(key, mv)] = [e for e in target.find(kind, key, str(raw))
                                if match_value(e.attrs.get(key)) == mv]
    return index
