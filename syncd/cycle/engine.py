"""Running flows: the entry points `run` and `run_flow`.

A flow run takes the flow's lock in the store, opens a journal row, runs one cycle (`push` or
`two_way`) and records the outcome, whatever happens: a refused safety check, a connector
that gave up, or a bug (journaled as failed, then raised). Dry run is simply "stop before
apply" with the store opened read-only: the plan shown is the plan a real run would execute.

The two-way cycle (`syncd.cycle.two_way`, with its merge, catch-up and streaming modules) is
imported by the first two-way flow run: a one-shot push run (cron) does not pay for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from syncd.config.flows import Config, Flow
from syncd.cycle.push import push_cycle
from syncd.cycle.result import Connectors, FlowResult, Options
from syncd.errors import ConnectorError, SafetyRefused
from syncd.log import context as log_context
from syncd.plan.value import Plan
from syncd.redact import redact
from syncd.state.locks import PgLockSession
from syncd.state.store import Store

log = logging.getLogger("syncd.engine")


def run(config: Config, *, flows: Sequence[str] | None = None, dry_run: bool = False,
        allow_deletes: bool = False, full: bool = False,
        progress: Callable[[str], None] | None = None,
        stop: threading.Event | None = None,
        review: Callable[[Plan], Plan] | None = None,
        locks: PgLockSession | None = None) -> list[FlowResult]:
    """Run flows once. Setting `stop` (SIGTERM in the daemon) lets the changes in flight
    finish and be recorded, submits no more, and ends the run as ``aborted``.
    `full` ignores stored cursors: a full read of every source (a reconcile).
    `locks`: a daemon's lock session, on which the runs take their flows' locks."""
    names = list(flows) if flows else list(config.flows)
    store = Store(config.state_url, readonly=dry_run, locks=locks)
    connectors = Connectors(config)
    try:
        return [run_flow(config.flows[n], store, connectors, dry_run=dry_run,
                         allow_deletes=allow_deletes, full=full, progress=progress, stop=stop,
                         review=review)
                for n in names if stop is None or not stop.is_set()]
    finally:
        connectors.close()
        store.close()


def run_flow(flow: Flow, store: Store, connectors: Connectors, *, dry_run: bool,
             allow_deletes: bool = False, full: bool = False,
             progress: Callable[[str], None] | None = None,
             stop: threading.Event | None = None,
             review: Callable[[Plan], Plan] | None = None) -> FlowResult:
    started = time.monotonic()
    res = FlowResult(flow.name, dry_run)
    store.lock(flow.name)  # StoreLocked propagates: the caller reports it
    try:
        if not dry_run:  # holding the lock, a run still "running" is one that died
            store.abandon_runs(flow.name)
        res.run_id = None if dry_run else store.start_run(flow.name)
        try:
            with log_context(run_id=res.run_id, flow=flow.name):
                cycle = push_cycle
                if flow.mode == "two_way":
                    from syncd.cycle.two_way import two_way_cycle

                    cycle = two_way_cycle
                cycle(flow, store, connectors, res,
                      Options(allow_deletes, full, progress, stop, review))
        except SafetyRefused as exc:
            res.result, res.refused = "refused", exc.reasons
        except ConnectorError as exc:
            res.result = "aborted"
            res.errors.append(f"{type(exc).__name__}: {exc}")
        except BaseException as exc:  # a bug must not leave the run journaled as "running"
            res.result = "failed"
            res.errors.append(redact(f"internal error: {type(exc).__name__}: {exc}"))
            raise
        finally:
            res.duration = time.monotonic() - started
            if res.run_id is not None:
                summary: dict[str, Any] = res.plan.summary() if res.plan is not None else {}
                error = redact("; ".join(res.errors + res.refused)) or None
                store.finish_run(res.run_id, res.result, {
                    "plan": summary, "applied": res.applied, "failed": len(res.failures),
                    "duration_s": round(res.duration, 3),
                    # which daemon ran it, when several share a PostgreSQL store
                    **({"instance": who} if (who := store.instance(flow.name)) else {}),
                    # a run let through is not counted in the safety window (plan.safety)
                    **({"allowed": True} if allow_deletes else {}),
                    # each reason on its own, for the status page
                    **({"refused": [redact(r) for r in res.refused]} if res.refused else {}),
                }, error)
        log.debug("flow %s %s: %s applied, %s failed in %.2fs", flow.name, res.result,
                  res.applied, len(res.failures), res.duration,
                  extra={"run_id": res.run_id, "flow": flow.name})
    finally:
        store.unlock(flow.name)
    return res

