"""Minimal sd_notify(3): tell systemd about readiness, reloads, shutdown, status and liveness.

No dependency (python-systemd needs libsystemd headers to build): the protocol is one unix
datagram of ``KEY=VALUE`` lines to the socket named by ``$NOTIFY_SOCKET``, which may be a path
or, with a leading ``@``, a name in the abstract namespace. Outside systemd (no
``$NOTIFY_SOCKET``) every call is a cheap no-op, so the daemon code never asks "am I under
systemd?". Sending never raises: a lost notification must not take the daemon down.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("syncd.sdnotify")

#: systemd shows STATUS= in `systemctl status`; long texts are truncated there anyway.
MAX_STATUS = 1000


def socket_address(path: str) -> str | bytes:
    """`$NOTIFY_SOCKET` as a connect() address: ``@name`` is ``\\0name`` (abstract)."""
    if path.startswith("@"):
        return b"\0" + path[1:].encode()
    return path


def watchdog_interval() -> float | None:
    """How often to ping the watchdog (half of WatchdogSec=, as sd_watchdog_enabled(3)
    recommends), or None when the watchdog is off or meant for another process."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2 / 1_000_000 if value > 0 else None


class Notifier:
    """Sends notifications to `address` (default: ``$NOTIFY_SOCKET``)."""

    def __init__(self, address: str | None = None) -> None:
        self.address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=VALUE`` fields in one datagram; True when it was sent."""
        if not self.address:
            return False
        payload = "\n".join(fields).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(payload, socket_address(self.address))
        except OSError as exc:
            log.debug("sd_notify to %s failed: %s", self.address, exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *self._status(status))

    def reloading(self) -> bool:
        # MONOTONIC_USEC lets systemd (>= 253) tell this reload from an earlier one.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *self._status(status))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.notify(*self._status(text))

    @staticmethod
    def _status(text: str | None) -> list[str]:
        if text is None:
            return []
        one_line = " ".join(text.split())  # a newline would start a new field
        return [f"STATUS={one_line[:MAX_STATUS]}"]

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
