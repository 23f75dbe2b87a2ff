"""Which flows this daemon runs when several instances share one PostgreSQL state store.

Every instance schedules every flow; on each tick it first asks whether the flow is its own:

- **Lease.** An instance owns a flow while it holds the flow's lease, an advisory lock
  (`syncd.state.locks.lease_key`) on its lock session, kept between runs for as long as the
  instance lives. The run itself still takes the flow's run lock, on the same session, and
  checks it before each apply batch, so the lease only decides *who*, never *whether two*.
- **Spread.** An instance takes an unowned flow only while it owns fewer than its fair share,
  ceil(flows / live instances) (live instances = daemon lock sessions connected to the
  store). After a run, an instance that owns more than its share, or two more than the least
  loaded live instance while every flow is owned (leases are counted per session in
  `pg_locks`), hands that flow over
  (releases its lease); another instance takes it at its next tick. So the load evens out to
  within one flow when an instance joins. A flow that stays unowned for a whole tick
  (instances configured with different flows) is taken over the share.
- **Failover.** A dead instance's session ends (kill -9: at once; a vanished host:
  `LEASE_TIMEOUT_S`), PostgreSQL releases its leases, it no longer counts as live, and the
  others take its flows at their next tick: within one interval (+ `LEASE_TIMEOUT_S` when the
  host vanished). An instance whose own session died (connection cut) leaves the flows it
  lost to the others for one tick before it may take them again: it may be the unhealthy one.

Nothing here is an error: a flow running on another instance is the expected state, said in
the status and the log (once per change of owner), never alerted.
"""

from __future__ import annotations

import logging
import math
import threading

from syncd.state.locks import PgLockSession, lease_key

log = logging.getLogger("syncd.daemon")


def fair_share(flows: int, instances: int) -> int:
    """How many flows one of `instances` live instances takes before leaving the rest."""
    return max(1, math.ceil(flows / max(1, instances)))


class Ownership:
    """This instance's leases on one lock session (`syncd.state.locks.PgLockSession`)."""

    def __init__(self, session: PgLockSession) -> None:
        self.session = session
        self.owned: set[str] = set()
        self._generation = session.generation
        self._yielding: set[str] = set()  # lost with the session: skip one tick
        self._unowned: set[str] = set()  # seen with nobody's lease at the last tick
        self._guard = threading.RLock()

    @property
    def name(self) -> str:
        return self.session.name

    def claim(self, flow: str, flows: int) -> str | None:
        """None when this instance runs `flow` now (it holds its lease); otherwise why not,
        in words for the status (``running on syncd daemon HOST:PID``). `flows`: how many
        flows are scheduled. Raises `StoreError` when the store cannot be reached."""
        key = lease_key(flow)
        with self._guard:
            self._forget_if_reconnected()
            if flow in self.owned:
                if self.session.holds(key):
                    return None
                self.owned.discard(flow)  # its session ended meanwhile
                self._yielding.add(flow)
            if flow in self._yielding:
                self._yielding.discard(flow)
                return (f"left to the other instances for one tick (this instance "
                        f"{self.name} lost its lease)")
            instances = len(self.session.leases())
            share = fair_share(flows, instances)
            if len(self.owned) >= share and flow not in self._unowned:
                holder = self.session.holder(key)
                if holder is not None:
                    return f"running on {holder}"
                self._unowned.add(flow)  # nobody took it: the next tick does, share or not
                return (f"left to the other instances ({self.name} runs {len(self.owned)} "
                        f"flow(s), its fair share of {flows} over {instances} instance(s))")
            self._unowned.discard(flow)
            if not self.session.try_lock(key):
                return f"running on {self.session.holder(key) or 'another instance'}"
            self._forget_if_reconnected(keep=flow)
            self.owned.add(flow)
            log.info("flow %s: owned by this instance (%s) now", flow, self.name,
                     extra={"flow": flow})
            return None

    def after_run(self, flow: str, flows: int) -> None:
        """After a run of an owned flow: a lease lost during the run is left to the others for
        one tick; an instance over its fair share hands this flow over."""
        key = lease_key(flow)
        with self._guard:
            if flow not in self.owned:
                return
            try:
                if not self.session.holds(key):
                    self.owned.discard(flow)
                    self._yielding.add(flow)
                    log.warning("flow %s: this instance (%s) lost its lease; the other "
                                "instances take it over", flow, self.name, extra={"flow": flow})
                    return
                loads = self.session.leases()
            except Exception as exc:  # the store is down: the next claim says so
                log.debug("flow %s: ownership not rebalanced: %s", flow, exc)
                return
            share = fair_share(flows, len(loads))
            least = min(n for _, n in loads)
            settled = sum(n for _, n in loads) >= flows  # nothing left for the least loaded
            if len(self.owned) > share or (settled and len(self.owned) - least >= 2):
                self.release(flow)
                log.info("flow %s: handed over (this instance %s ran %d flow(s); %d live "
                         "instance(s), fair share %d, the least loaded runs %d)", flow,
                         self.name, len(self.owned) + 1, len(loads), share, least,
                         extra={"flow": flow})

    def release(self, flow: str) -> None:
        """Give `flow` up (unscheduled, handed over): another instance may take it."""
        with self._guard:
            self.owned.discard(flow)
            self.session.unlock(lease_key(flow))

    def _forget_if_reconnected(self, keep: str | None = None) -> None:
        """A new session holds none of the old one's leases."""
        if self.session.generation != self._generation:
            self._generation = self.session.generation
            self._yielding |= self.owned - {keep}
            self.owned.clear()

    def close(self) -> None:
        """Ends the session: every lease is released for the other instances at once."""
        self.session.close()
