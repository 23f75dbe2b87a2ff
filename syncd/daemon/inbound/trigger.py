"""Debounced triggers: a received change runs the flows reading the directory within about a
second, once per burst of requests rather than once per request.

`Debounced` calls its action once changes stop arriving for `quiet` seconds (at most `most`
seconds after the first of a burst), in one background thread of its own; a change that
arrives while the action runs triggers one more call after it. One thread per action: two
calls of one action never overlap. ``syncd serve --run-flows`` runs the flows with it; the
daemon keeps one per flow and calls `Daemon.run_flow`, whose connector locks also keep a
triggered run and a scheduled run of the same flow apart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("syncd.serve")


class Debounced:
    def __init__(self, action: Callable[[], object], *, name: str, quiet: float = 0.2,
                 most: float = 1.0) -> None:
        self.action, self.name, self.quiet, self.most = action, name, quiet, most
        self._changed = threading.Event()
        self._stop = threading.Event()
        self._last = 0.0
        self._thread = threading.Thread(target=self._loop, name=f"trigger-{name}",
                                        daemon=True)
        self._thread.start()

    def changed(self) -> None:
        self._last = time.monotonic()
        self._changed.set()

    def stop(self, timeout: float = 30.0) -> None:
        """No further calls; waits for a call in progress (up to `timeout`)."""
        self._stop.set()
        self._changed.set()
        self._thread.join(timeout=timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._changed.wait()
            if self._stop.is_set():
                return
            first = time.monotonic()
            while (time.monotonic() - self._last < self.quiet
                   and time.monotonic() - first < self.most and not self._stop.is_set()):
                self._stop.wait(0.05)  # the debounce window itself, not a synchronisation
            if self._stop.is_set():
                return
            self._changed.clear()
            try:
                self.action()
            except Exception as exc:  # the next change tries again
                log.error("%s after received changes failed: %s: %s", self.name,
                          type(exc).__name__, exc)
