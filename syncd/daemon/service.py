"""`syncd daemon`: run every flow on its schedule until told to stop.

Built on APScheduler 3.11's `BlockingScheduler` (the main thread runs the scheduler loop, flow
runs happen on its thread pool):

- Each flow is one job on its own trigger (``[flows.X.schedule]`` ``interval`` or ``cron``,
  optional ``jitter``; no schedule: every `DEFAULT_INTERVAL`), run once at startup.
  ``max_instances=1`` + ``coalesce=True``: a run that outlasts its interval is never joined by
  a second run of the same flow; the ticks it swallowed collapse into one later run.
- Flows that share a connector are serialised by a lock per connector name, taken in sorted
  order (so two flows can never deadlock), because one directory should not be hit by two
  syncs at once and two-way flows over the same pair must see each other's writes.
- Signals are only *queued* by their handlers (`queue.SimpleQueue.put` is reentrant-safe) and
  acted on by a control thread, so a SIGHUP never runs a reload inside a signal handler
  in the middle of the scheduler's own bookkeeping. SIGTERM/SIGINT set the stop event (the
  engine lets changes in flight finish, records them and ends the run "aborted"), then
  ``shutdown(wait=True)``. SIGHUP re-reads the config: invalid -> keep the running one and log
  an ERROR; valid -> reschedule.
- The run journal is pruned by a job of its own, at start and then daily: runs older than
  ``[state] journal_keep`` and their changes, each flow's last run excepted.
- systemd: READY=1 once jobs are scheduled, WATCHDOG=1 from a scheduler job every
  WatchdogSec/2, STATUS= with the last result per flow, RELOADING=1/READY=1 around reloads,
  STOPPING=1 (see `syncd.daemon.sdnotify`). Metrics: `syncd.daemon.metrics`. Alerts
  (``[alerts]``): `syncd.daemon.alerts`, told after each run, delivered in the background.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from apscheduler.events import EVENT_SCHEDULER_STARTED, SchedulerEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger

from syncd import config as config_mod
from syncd.config.crontab import cron_trigger
from syncd.config.crontab import crontab_weekdays as crontab_weekdays
from syncd.config.durations import parse_duration
from syncd.config.flows import Config
from syncd.config.schema import ScheduleModel
from syncd.cycle import engine
from syncd.cycle.result import FlowResult
from syncd.daemon.alerts import Alerts
from syncd.daemon.metrics import Metrics, parse_listen
from syncd.daemon.reporting import Reporting
from syncd.daemon.sdnotify import Notifier, watchdog_interval
from syncd.errors import ConfigError, StoreError, StoreLocked
from syncd.log import context as log_context
from syncd.state.opening import safe_url

if TYPE_CHECKING:
    from syncd.daemon.ownership import Ownership

log = logging.getLogger("syncd.daemon")

#: Flows without ``[flows.X.schedule]`` run this often.
DEFAULT_INTERVAL = "15m"
#: A run that starts late (host suspended, all workers busy) still happens within this many
#: seconds of its planned time; later than that it is dropped and the next tick takes over.
MISFIRE_GRACE_S = 600
#: Worker threads for flow runs; with max_instances=1 this caps concurrently running flows.
MAX_WORKERS = 32
#: How long a job waits for a connector lock before looking at the stop event again.
LOCK_POLL_S = 0.5
#: The journal is pruned at start and then this often.
PRUNE_INTERVAL_S = 86400
PRUNE_JOB = "prune-journal"

def trigger_for(schedule: ScheduleModel | None) -> BaseTrigger:
    """The APScheduler trigger for a flow's ``schedule`` (None: every DEFAULT_INTERVAL)."""
    if schedule is None:
        return IntervalTrigger(seconds=parse_duration(DEFAULT_INTERVAL))
    jitter = int(parse_duration(schedule.jitter)) if schedule.jitter else None
    if schedule.interval is not None:
        return IntervalTrigger(seconds=parse_duration(schedule.interval), jitter=jitter)
    assert schedule.cron is not None
    return cron_trigger(schedule.cron, jitter)


def _job_id(flow: str) -> str:
    return f"flow:{flow}"


class Daemon(Reporting):
    """One config file, scheduled. `run()` blocks until SIGTERM/SIGINT and returns 0."""

    def __init__(self, config_path: str | Path, *, notifier: Notifier | None = None) -> None:
        self.config_path = Path(config_path)
        # ConfigError: the caller exits 2
        self.config: Config = config_mod.load(self.config_path, service=True)
        if self.config.metrics.listen:
            parse_listen(self.config.metrics.listen)
        self.stop = threading.Event()
        self.notifier = notifier or Notifier()
        self.metrics = Metrics(page=lambda: self.config)  # the status page reads the store
        self.alerts = Alerts(self.config.alerts)
        self.scheduler = BlockingScheduler(
            executors={"default": ThreadPoolExecutor(MAX_WORKERS),
                       "control": ThreadPoolExecutor(1)},
            job_defaults={"coalesce": True, "max_instances": 1,
                          "misfire_grace_time": MISFIRE_GRACE_S})
        self._commands: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._running = threading.Event()
        self._scheduled: dict[str, ScheduleModel | None] = {}
        self._triggers: dict[str, Any] = {}  # per flow, for "next run" in the logs
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._status: dict[str, str] = {}
        self._status_guard = threading.Lock()
        #: The SCIM service provider when ``[serve]`` is configured (`syncd.daemon.receiving`).
        self.receiver: Any = None
        #: On PostgreSQL: this instance's leases (`syncd.daemon.ownership`), set by `run`.
        self.ownership: Ownership | None = None
        self._where: dict[str, str] = {}  # flows running elsewhere: why, as last logged

    # -- lifecycle -------------------------------------------------------------------------
    def check_store(self) -> None:
        """Open the state store once before scheduling anything (creating it if new), so a
        store that cannot work — corrupt, unwritable, disk full, database down — stops the
        start with one clear `StoreError` instead of an error per flow per tick."""
        from syncd.state.store import Store

        Store(self.config.state_url).close()

    def run(self) -> int:
        self._own()
        self._schedule(self.config)
        self.scheduler.add_job(self.prune_journal, IntervalTrigger(seconds=PRUNE_INTERVAL_S),
                               id=PRUNE_JOB, name="prune the run journal",
                               next_run_time=datetime.now(UTC))
        self.metrics.serve(self.config.metrics.listen)
        if self.config.serve is not None:
            self._receive()
        interval = watchdog_interval()
        if interval is not None:
            self.scheduler.add_job(self.notifier.watchdog, IntervalTrigger(seconds=interval),
                                   id="watchdog", executor="control",
                                   next_run_time=datetime.now(UTC))
        self.scheduler.add_listener(self._started, EVENT_SCHEDULER_STARTED)
        control = threading.Thread(target=self._control_loop, name="control", daemon=True)
        control.start()
        self.install_signal_handlers()
        self.scheduler.start()  # blocks until _shutdown() (from the control thread)
        control.join(timeout=10)
        if self.ownership is not None:
            self.ownership.close()  # the other instances take its flows at their next tick
        self.metrics.close()
        self.alerts.close()  # the last alerts (a run aborted by the stop) go out first
        log.info("stopped")
        self.notifier.close()
        return 0

    def _own(self) -> None:
        """On a PostgreSQL store, flows are spread over the daemons sharing it: open this
        instance's lock session now, so the others count it before the first ticks."""
        if not self.config.state_url.startswith("postgres"):
            return
        from syncd.daemon.ownership import Ownership
        from syncd.state.locks import DAEMON, session_for

        self.ownership = Ownership(session_for(self.config.state_url, DAEMON))
        try:
            n = len(self.ownership.session.leases())
            log.info("instance %s: %d daemon instance(s) share the state store",
                     self.ownership.name, n)
        except StoreError as exc:  # each tick says it again until the database is back
            log.error("instance %s: %s", self.ownership.name, exc)

    def _receive(self) -> None:
        """Serve SCIM too: received changes run their flows (`syncd.daemon.receiving`)."""
        from syncd.daemon.receiving import Receiver

        self.receiver = Receiver(lambda: self.config, self.run_flow, self.metrics)
        self.receiver.start()  # OSError (address in use): the command exits 1
        self.scheduler.add_job(self.receiver.prune, IntervalTrigger(seconds=PRUNE_INTERVAL_S),
                               id="prune-tombstones", name="prune received tombstones",
                               next_run_time=datetime.now(UTC))

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGHUP, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._commands.put("reload" if signum == signal.SIGHUP else "stop")

    def request(self, command: str) -> None:
        """Queue ``"reload"`` or ``"stop"`` as a signal would (for embedding and tests)."""
        self._commands.put(command)

    def _started(self, _event: SchedulerEvent) -> None:
        self._running.set()
        n = len(self._scheduled)
        log.info("daemon started: %d flow(s) scheduled from %s, state store %s", n,
                 self.config_path, safe_url(self.config.state_url))
        self.notifier.ready(f"{n} flow(s) scheduled")

    def _control_loop(self) -> None:
        self._running.wait()
        while True:
            command = self._commands.get()
            if command == "reload":
                self.reload()
            elif command == "stop":
                self._shutdown()
                return

    def _shutdown(self) -> None:
        log.info("stopping: changes in flight finish and are recorded, nothing new starts")
        if self.receiver is not None:
            self.receiver.stop_serving()  # requests in flight are answered first
        self.stop.set()
        if self.receiver is not None:
            self.receiver.close()
        self.notifier.stopping("stopping: finishing changes in flight")
        done = threading.Event()
        interval = watchdog_interval()
        if interval is not None:  # the watchdog job stops with the scheduler; keep pinging
            threading.Thread(target=self._ping_until, args=(done, interval), daemon=True).start()
        try:
            self.scheduler.shutdown(wait=True)
        finally:
            done.set()

    def _ping_until(self, done: threading.Event, interval: float) -> None:
        while not done.wait(interval):
            self.notifier.watchdog()

    # -- configuration ---------------------------------------------------------------------
    def reload(self) -> bool:
        """Re-read the config file; keep the running config when the new one is invalid."""
        self.notifier.reloading()
        log.info("reloading %s", self.config_path)
        try:
            new = config_mod.load(self.config_path, service=True)
            if new.metrics.listen:
                parse_listen(new.metrics.listen)
        except (ConfigError, ValueError) as exc:
            log.error("reload failed, still running the previous config: %s", exc)
            self.notifier.ready(self._status_text())
            return False
        self.config = new
        self.alerts.configure(new.alerts)
        self._schedule(new)
        if self.receiver is not None:
            self.receiver.reload(new)
        elif new.serve is not None:
            log.warning("[serve] was added: the daemon serves SCIM once it is restarted")
        try:
            self.metrics.serve(new.metrics.listen)
        except OSError as exc:
            log.error("metrics: cannot listen on %s: %s", new.metrics.listen, exc)
        log.info("reloaded: %d flow(s) scheduled", len(self._scheduled))
        self.notifier.ready(self._status_text())
        return True

    def _schedule(self, cfg: Config) -> None:
        """Make the jobs match `cfg`: new flows run now, changed schedules are re-triggered,
        removed flows are unscheduled (a run in progress finishes)."""
        for name in sorted(set(self._scheduled) - set(cfg.flows)):
            self.scheduler.remove_job(_job_id(name))
            del self._scheduled[name]
            if self.ownership is not None:
                self.ownership.release(name)
            log.info("flow %s unscheduled", name, extra={"flow": name})
        for name, flow in cfg.flows.items():
            trigger = trigger_for(flow.schedule)
            if name not in self._scheduled:
                self.scheduler.add_job(self.run_flow, trigger, args=[name], id=_job_id(name),
                                       name=f"flow {name}", next_run_time=datetime.now(UTC),
                                       replace_existing=True)
                self.metrics.flow_known(name)
            elif self._scheduled[name] != flow.schedule:
                self.scheduler.reschedule_job(_job_id(name), trigger=trigger)
            else:
                continue
            self._scheduled[name] = flow.schedule
            self._triggers[name] = trigger
            log.info("flow %s scheduled: %s", name, trigger, extra={"flow": name})

    # -- one run ---------------------------------------------------------------------------
    def run_flow(self, name: str) -> list[FlowResult]:
        """The job: one run of one flow under its connector locks. Never raises (a job
        exception would only be logged by APScheduler, without our context)."""
        cfg = self.config
        flow = cfg.flows.get(name)
        if flow is None or self.stop.is_set():
            return []
        ownership = self.ownership
        try:
            elsewhere = ownership.claim(name, len(cfg.flows)) if ownership is not None else None
        except StoreError as exc:  # the database is down: as for a run
            log.error("flow %s not run: %s", name, exc, extra={"flow": name})
            self._run_error(name, "state store unavailable")
            self.alerts.run_error(name, f"state store unavailable: {exc}")
            return []
        if elsewhere is not None:
            self._elsewhere(name, elsewhere)
            return []
        locks = self._acquire({flow.source, flow.target})
        if locks is None:
            return []
        try:
            with log_context(flow=name):
                results = engine.run(cfg, flows=[name], stop=self.stop,
                                     locks=ownership.session if ownership else None)
        except StoreLocked as exc:
            if ownership is not None and exc.holder is not None:
                self._elsewhere(name, f"running on {exc.holder}")  # expected, not an error
                return []
            log.warning("flow %s not run: %s", name, exc, extra={"flow": name})
            self._run_error(name, "state store busy")
            return []
        except StoreError as exc:  # corrupt, unwritable, full, or the database is down
            log.error("flow %s not run: %s", name, exc, extra={"flow": name})
            self._run_error(name, "state store unavailable")
            self.alerts.run_error(name, f"state store unavailable: {exc}")
            return []
        except Exception as exc:
            log.exception("flow %s: run crashed: %s", name, type(exc).__name__,
                          extra={"flow": name})
            self._run_error(name, f"crashed ({type(exc).__name__})")
            self.alerts.run_error(name, f"run crashed: {type(exc).__name__}: {exc}")
            return []
        finally:
            for lock in reversed(locks):
                lock.release()
            if ownership is not None:
                ownership.after_run(name, len(cfg.flows))
        self._where.pop(name, None)
        self.metrics.flow_here(name, True)
        for res in results:
            self._finished(cfg, res)
        return results

    def prune_journal(self) -> tuple[int, int] | None:
        """The job: delete the runs older than ``[state] journal_keep`` and their changes
        (each flow's last run stays), logging how many went; (runs, changes), or None when
        nothing was pruned. Never raises: a store that cannot be written now is tried again
        the next day."""
        from syncd.state.store import Store

        cfg = self.config  # read per run: a reload may change journal_keep
        keep = cfg.journal_keep_seconds
        if keep is None or self.stop.is_set():
            return None
        started = time.monotonic()
        try:
            store = Store(cfg.state_url)
            try:
                runs, changes = store.prune_journal(datetime.now(UTC) - timedelta(seconds=keep))
            finally:
                store.close()
        except Exception as exc:
            log.error("journal not pruned: %s: %s", type(exc).__name__, exc)
            return None
        log.info("journal pruned: %d run(s) and %d change(s) older than %s "
                 "(state.journal_keep), %.2fs", runs, changes, cfg.journal_keep,
                 time.monotonic() - started)
        return runs, changes

    def _acquire(self, connectors: Iterable[str]) -> list[threading.Lock] | None:
        held: list[threading.Lock] = []
        for name in sorted(set(connectors)):
            with self._locks_guard:
                lock = self._locks.setdefault(name, threading.Lock())
            while not lock.acquire(timeout=LOCK_POLL_S):
                if self.stop.is_set():
                    for h in reversed(held):
                        h.release()
                    return None
            held.append(lock)
        return held
