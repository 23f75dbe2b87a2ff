"""Running an applier's tasks: a bounded window of work in flight on a thread pool.

Shared by the staged `Applier.apply` and by streamed full reads (`syncd.cycle.stream`), which plan
a page while the previous one is being written: the window is what paces the reader by the
target, so memory stays at a few pages however large the directory is.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Protocol

from syncd.config.flows import Flow
from syncd.cycle.write_back import _Outcome
from syncd.errors import Unreachable
from syncd.plan.value import Change

log = logging.getLogger("syncd.apply")
#: Outcomes accounted before their links and journal rows are written in one transaction.
FLUSH_EVERY = 200


@dataclass
class Failure:
    change: Change
    error_class: str
    message: str
    retriable: bool = False
    retry_after: float | None = None


@dataclass
class ApplyResult:
    applied: int = 0
    failures: list[Failure] = field(default_factory=list)
    fatal: str | None = None
    stopped: bool = False


class Applier(Protocol):
    """What a session needs of `syncd.cycle.apply.Applier` (a protocol, so this module does
    not import the applier that creates sessions)."""

    flow: Flow
    concurrency: int
    stop: threading.Event
    progress: Callable[[str], None] | None

    def _run_task(self, task: list[Change]) -> list[_Outcome]: ...

    def _account(self, out: _Outcome, result: ApplyResult) -> None: ...

    def _flush(self, outcomes: list[_Outcome]) -> None: ...

    def lock_lost(self) -> str | None: ...


def _enter(ctx: contextvars.Context) -> None:
    """Worker threads inherit the run's log context (run_id, flow)."""
    for var, value in ctx.items():
        var.set(value)

#: Changes in a row that could not reach their peer at all before it is taken for down: the
#: rest of the plan is not submitted (each change would spend its own retry budget on a dead
#: server: 14 minutes for 300 creates), the run is aborted and the next run converges.
DOWN_AFTER = 3


class Session:
    """Runs an applier's tasks on its thread pool with at most 2 x concurrency in flight.

    `submit` blocks while the window is full, accounting finished work (links and journal
    flushed every `FLUSH_EVERY` outcomes), so whoever feeds it — the staged `apply`, or a
    streamed read planning page by page — is paced by the target.
    """

    def __init__(self, applier: Applier, total: int | None) -> None:
        self.applier, self.total = applier, total
        self.result = ApplyResult()
        self.done = 0
        self.on_done: Callable[[_Outcome], None] | None = None
        self._running: set[Future[list[_Outcome]]] = set()
        self._outcomes: list[_Outcome] = []
        self._last = self._started = time.monotonic()
        self._pool: ThreadPoolExecutor | None = None
        self._unreachable = 0  # consecutive outcomes that could not reach the peer

    def __enter__(self) -> Session:
        self._pool = ThreadPoolExecutor(self.applier.concurrency, thread_name_prefix="apply",
                                        initializer=_enter,
                                        initargs=(contextvars.copy_context(),))
        return self

    def __exit__(self, *exc: object) -> None:
        """Finish and record the work in flight, also when the feeder failed (its error
        is the one that propagates): what was applied keeps its link and journal line."""
        try:
            self.drain()
        except Exception:
            if exc[0] is None:
                raise
            log.warning("recording the changes in flight failed", exc_info=True)
        finally:
            assert self._pool is not None
            self._pool.shutdown(wait=True)

    @property
    def halted(self) -> bool:
        """A Fatal error or a stop request: submit nothing more."""
        return self.result.fatal is not None or self.result.stopped

    def submit(self, task: list[Change]) -> bool:
        """Queue one task; False (and nothing queued) once the run is halted."""
        assert self._pool is not None
        while len(self._running) >= self.applier.concurrency * 2:
            self._wait()
        if self.applier.stop.is_set():
            self.result.stopped = True
        if self.halted:
            return False
        self._running.add(self._pool.submit(self._run_task, task))
        return True

    def drain(self) -> None:
        while self._running:
            self._wait()
        self._flush()
        if self.applier.stop.is_set() and (self.total is None or self.done < self.total):
            self.result.stopped = True

    def _wait(self) -> None:
        finished, self._running = wait(self._running, return_when=FIRST_COMPLETED)
        for fut in finished:
            for out in fut.result():
                self._outcomes.append(out)
                self.done += 1
                self.applier._account(out, self.result)
                self._note_reachability(out)
                if self.on_done is not None:
                    self.on_done(out)
        if len(self._outcomes) >= FLUSH_EVERY:
            self._flush()
        progress = self.applier.progress
        if progress and time.monotonic() - self._last > 2 and (self.total or 200) >= 200:
            self._last = time.monotonic()
            of = f"/{self.total}" if self.total is not None else ""
            progress(f"{self.applier.flow.name}: {self.done}{of} changes applied "
                     f"({len(self.result.failures)} failed){self._eta()}")

    def _eta(self, now: float | None = None) -> str:
        """``, about 3m12s left`` from the rate so far, when the total is known."""
        elapsed = (time.monotonic() if now is None else now) - self._started
        if self.total is None or not self.done or self.done >= self.total or elapsed <= 0:
            return ""
        left = round((self.total - self.done) * elapsed / self.done)
        return f", about {left // 60}m{left % 60:02d}s left" if left >= 60 else (
            f", about {left}s left")

    def _note_reachability(self, out: _Outcome) -> None:
        """A few changes in a row that got no answer at all: the peer is down; halt."""
        if not isinstance(out.error, Unreachable):
            self._unreachable = 0
            return
        self._unreachable += 1
        if self._unreachable >= DOWN_AFTER and self.result.fatal is None:
            self.result.fatal = (f"the peer is down: {self._unreachable} changes in a row "
                                 f"could not reach it (last: {out.error}); nothing more is "
                                 f"submitted, the next run picks up from here")
            log.error(self.result.fatal)

    def _run_task(self, task: list[Change]) -> list[_Outcome]:
        """On a worker, right before the batch writes: is the flow's lock still ours? (One
        query on the lock's own connection.) Checked here rather than at submit, because a
        task can wait in the pool's queue (or the process be frozen) while the lock goes.
        Lost -> a Fatal: this batch and every later one write nothing (they are not
        journaled: they never happened), the changes already under way are recorded, the
        cursor is not advanced and the run's journal says why."""
        lost = self.applier.lock_lost()
        if lost is not None:
            if self.result.fatal is None:
                self.result.fatal = lost
                log.error(lost)
            return []
        return self.applier._run_task(task)

    def _flush(self) -> None:
        if self._outcomes:
            self.applier._flush(self._outcomes)
            self._outcomes = []
