"""What a cycle is given and gives back: the options of a run, the connectors it opens
(once per cycle, shared by its flows) and the `FlowResult` reported for each flow."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from syncd import registry
from syncd.config.flows import Config
from syncd.connector import Connector
from syncd.cycle.session import Failure
from syncd.plan.value import Plan

log = logging.getLogger("syncd.engine")

#: Members listed by name per member list of a change in the text output; the rest counted.
MEMBERS_SHOWN = 50


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
    #: How each kind was read this run: "full" or "incremental".
    reads: dict[str, str] = field(default_factory=dict)
    #: Counters the target connector exposes as `stats` (e.g. {"http_429": 3}), for metrics.
    target_stats: dict[str, int] = field(default_factory=dict)
    #: Target ids of referenced objects (a manager) -> their names, for showing plans.
    ref_names: dict[str, str] = field(default_factory=dict)


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


@dataclass(frozen=True)
class Options:
    allow_deletes: bool = False
    full: bool = False
    progress: Callable[[str], None] | None = None
    stop: threading.Event | None = None
    #: Applying a saved plan (`syncd.cycle.saved`): the freshly computed plan goes through
    #: this before the safety check, which keeps only the reviewed changes still valid; no
    #: page is applied while reading, and no cursor moves (what was left out is planned
    #: again by the next run).
    review: Callable[[Plan], Plan] | None = None
