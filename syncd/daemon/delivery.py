"""Delivering alerts: one background worker per receiver, so a slow or dead receiver delays
neither a sync cycle nor the other receivers.

Each receiver (`WebhookSink`, `CommandSink`) has a bounded queue of `QUEUE_SIZE` events: when
it is full the oldest event is dropped with a WARNING (a receiver that has been down for hours
gets the latest news, not the first). Whatever happens on the way out is logged — with the
receiver's URL (without its query string) or program, never a header value — and never
raised: alerts must not take the daemon down.

- A webhook gets one JSON POST per event; a connection error, a timeout, HTTP 408, 425, 429
  or 5xx is retried (`ATTEMPTS` in all, backoff `BACKOFF_S` doubling, ``Retry-After``
  honoured), all within `TOTAL_S` per event; other answers are final. Redirects are not
  followed. TLS is verified unless ``tls_verify = false`` (``ca_file`` replaces the system
  store).
- A command is run once per event with the payload on stdin, no shell, in a session of its
  own; after ``command_timeout`` its whole process group is killed.

Every text in a payload passes through `syncd.redact` first (`Event.payload`): a peer may
have echoed a secret into an error message.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from syncd.config.durations import parse_duration
from syncd.config.schema import AlertsModel, WebhookModel
from syncd.redact import redact

log = logging.getLogger("syncd.alerts")

#: Events waiting per receiver; beyond it the oldest is dropped.
QUEUE_SIZE = 100
#: Tries of one POST, the first wait between them (doubling), and the bound on all of them.
ATTEMPTS = 4
BACKOFF_S = 1.0
TOTAL_S = 30.0
#: Seconds one request may take at most (connect, send, each read).
REQUEST_TIMEOUT_S = 10.0
#: Statuses worth another try; any other non-2xx answer is final.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
#: How long `close` lets the queues drain (a stopping daemon's last alerts).
DRAIN_S = 10.0
USER_AGENT = "syncd-alerts/1"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v) for v in value]
    return value


@dataclass(frozen=True)
class Event:
    """One alert: `kind` is one of `syncd.config.schema.ALERT_EVENTS`."""

    kind: str
    flow: str
    run_id: str | None
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    at: str = field(default_factory=_now)

    def payload(self) -> dict[str, Any]:
        """The document every receiver gets (README: *Alerts*), secrets masked."""
        return _redacted({"event": self.kind, "flow": self.flow, "run_id": self.run_id,
                          "at": self.at, "summary": self.summary, "details": self.details,
                          "host": socket.gethostname()})

    def body(self) -> bytes:
        return json.dumps(self.payload(), ensure_ascii=False).encode()


class Sink:
    """A receiver with its own bounded queue and worker thread."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._queue: collections.deque[Event] = collections.deque()
        self._cond = threading.Condition()
        self._closing = False
        #: Set when a closing worker must give up its retries now.
        self._abandon = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"alerts {label}", daemon=True)
        self._thread.start()

    def put(self, event: Event) -> None:
        with self._cond:
            if len(self._queue) >= QUEUE_SIZE:
                dropped = self._queue.popleft()
                log.warning("alerts to %s: queue full (%d), dropped the oldest: %s for flow %s "
                            "at %s", self.label, QUEUE_SIZE, dropped.kind, dropped.flow,
                            dropped.at)
            self._queue.append(event)
            self._cond.notify()

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is queued within `timeout` (`DRAIN_S`), then give up (the thread is
        a daemon)."""
        timeout = DRAIN_S if timeout is None else timeout
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._abandon.set()
            with self._cond:
                left = len(self._queue)
            log.warning("alerts to %s: gave up after %.0fs; %d queued alert(s) not sent",
                        self.label, timeout, left)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                event = self._queue.popleft()
            if self._abandon.is_set():
                continue
            try:
                self.deliver(event)
            except Exception as exc:  # never let one alert end the worker
                log.error("alert %s for flow %s to %s: %s: %s", event.kind, event.flow,
                          self.label, type(exc).__name__, redact(str(exc)))

    def deliver(self, event: Event) -> None:
        raise NotImplementedError


def shown_url(url: str) -> str:
    """The URL as logged: without query string and credentials (tokens go in headers)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class WebhookSink(Sink):
    """POSTs each event as JSON to one URL, with retries (module docstring)."""

    def __init__(self, cfg: WebhookModel) -> None:
        self.url = cfg.url
        verify: ssl.SSLContext | bool = cfg.tls_verify
        if cfg.tls_verify and cfg.ca_file:
            verify = ssl.create_default_context(cafile=cfg.ca_file)
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        headers.update({k: v.get_secret_value() for k, v in cfg.headers.items()})
        self.client = httpx.Client(headers=headers, verify=verify, follow_redirects=False,
                                   timeout=REQUEST_TIMEOUT_S)
        if urlsplit(cfg.url).scheme == "https" and not cfg.tls_verify:
            log.warning("alerts: tls_verify = false: the certificate of %s is not checked",
                        shown_url(cfg.url))
        super().__init__(shown_url(cfg.url))

    def close(self, timeout: float | None = None) -> None:
        super().close(timeout)
        if not self._thread.is_alive():
            self.client.close()

    def deliver(self, event: Event) -> None:
        body = event.body()
        deadline = time.monotonic() + TOTAL_S
        why = "no attempt made"
        for attempt in range(1, ATTEMPTS + 1):
            left = deadline - time.monotonic()
            if left <= 0 or self._abandon.is_set():
                break
            retry_after: float | None = None
            try:
                resp = self.client.post(self.url, content=body,
                                        timeout=min(REQUEST_TIMEOUT_S, left))
            except httpx.HTTPError as exc:
                why = f"{type(exc).__name__}: {redact(str(exc), limit=300)}"
            else:
                if 200 <= resp.status_code < 300:
                    log.debug("alert %s for flow %s delivered to %s (attempt %d)", event.kind,
                              event.flow, self.label, attempt)
                    return
                why = f"HTTP {resp.status_code}"
                text = redact(resp.text.strip(), limit=200)
                if text:
                    why += f": {text}"
                if resp.status_code not in RETRY_STATUSES:
                    log.error("alert %s for flow %s refused by %s: %s", event.kind, event.flow,
                              self.label, why)
                    return
                retry_after = _seconds(resp.headers.get("Retry-After"))
            if attempt < ATTEMPTS:
                delay = retry_after if retry_after is not None else BACKOFF_S * 2 ** (attempt - 1)
                log.info("alert %s for flow %s to %s: attempt %d failed (%s); next in %.1fs",
                         event.kind, event.flow, self.label, attempt, why, delay)
                if self._abandon.wait(max(0.0, min(delay, deadline - time.monotonic()))):
                    break
        log.error("alert %s for flow %s not delivered to %s: %s", event.kind, event.flow,
                  self.label, why)


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: the backoff is good enough


class CommandSink(Sink):
    """Runs a program per event with the payload on stdin (no shell), killed at the timeout."""

    def __init__(self, argv: list[str], timeout: float) -> None:
        self.argv = list(argv)
        self.timeout = timeout
        super().__init__(self.argv[0])

    def deliver(self, event: Event) -> None:
        try:
            proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            log.error("alert %s for flow %s: cannot run %s: %s", event.kind, event.flow,
                      self.label, exc.strerror or exc)
            return
        try:
            _out, err = proc.communicate(event.body(), timeout=self.timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=5)
            log.error("alert %s for flow %s: %s did not finish within %gs and was killed",
                      event.kind, event.flow, self.label, self.timeout)
            return
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if proc.returncode != 0:
            tail = redact(err.decode("utf-8", "replace").strip()[-500:], limit=500)
            log.error("alert %s for flow %s: %s exited with %d%s", event.kind, event.flow,
                      self.label, proc.returncode, f": {tail}" if tail else "")
        else:
            log.debug("alert %s for flow %s: %s ran", event.kind, event.flow, self.label)


def build_sinks(cfg: AlertsModel) -> list[Sink]:
    sinks: list[Sink] = [WebhookSink(w) for w in cfg.webhooks]
    if cfg.command is not None:
        sinks.append(CommandSink(cfg.command, parse_duration(cfg.command_timeout)))
    return sinks
