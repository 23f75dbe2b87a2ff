"""The SCIM connector's HTTP layer: one keep-alive `httpx.Client`, retries, counters.

Why here and not in scim2-client: 429/503 with Retry-After, resets and timeouts are transport
matters scim2-client does not handle, and the rules for *what may be resent* decide whether a
fault ends in a duplicate. They are:

 - 429 and 503 say "not processed, try later": always resent, even a POST (a /Bulk too).
 - other 5xx and broken connections: resent only when the request is idempotent (not POST)
   or never left this host (connect errors). A POST that timed out or lost its connection
   may have been applied: it is *not* resent, the change fails as `Retriable`, and the next
   run finds the object by the flow's match keys and adopts it.
 - 401/403 are `Fatal` (a wrong token does not get better by retrying).

A Retry-After is honoured by every thread, not only the one that got it: the server said the
client sends too much, so one shared "not before" instant gates all requests (`_gate`).
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
from scim2_client.client import BaseSyncSCIMClient

from syncd.errors import Fatal, Retriable

RETRY_AFTER_CAP = 60.0
BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
#: Statuses that say "not processed, try later": safe to resend, even a POST.
BUSY = frozenset({429, 503})
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: Counters every connector reports, zero or not (metrics want stable keys).
STAT_KEYS = (
    "requests", "retries", "http_429", "http_503", "http_5xx", "timeouts", "transport_errors",
    "bulk_requests", "bulk_operations",
)  # fmt: skip


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date), capped; None if bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


def backoff(attempt: int) -> float:
    """Exponential backoff with full jitter (for failures that came without Retry-After)."""
    return random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt))


class Stats:
    """Thread-safe counters; `snapshot()` is what the connector exposes as `stats`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter({k: 0 for k in STAT_KEYS})

    def add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


class ScimHttp:
    """Bounded retries around one `httpx.Client`; safe to share between threads."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        connector: str,
        url: str,
        max_retries: int,
        sleep: Callable[[float], None],
        stats: Stats,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.connector = connector
        self.url = url
        self.max_retries = max_retries
        self.sleep = sleep
        self.stats = stats
        self.clock = clock
        #: True during `open()`: an unreachable server is then Fatal at once.
        self.opening = False
        self._gate_lock = threading.Lock()
        self._not_before = 0.0  # clock() before which no request is sent

    def _gate(self) -> None:
        """Wait until the last Retry-After any thread received has passed."""
        with self._gate_lock:
            wait = self._not_before - self.clock()
        if wait > 0:
            self.sleep(wait)

    def _hold(self, seconds: float) -> None:
        with self._gate_lock:
            self._not_before = max(self._not_before, self.clock() + seconds)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request with bounded retries (rules in the module docstring).

        Exhausted retries raise `Retriable` carrying the server's last Retry-After.
        """
        retry_after: float | None = None
        reason = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.stats.add("retries")
                if retry_after is None:
                    self.sleep(backoff(attempt))
            self._gate()
            self.stats.add("requests")
            try:
                resp = self.client.request(method, url, **kwargs)
            except _NOT_SENT as exc:
                self.stats.add("transport_errors")
                if self.opening:
                    raise Fatal(
                        f"SCIM server {self.url} unreachable: {type(exc).__name__}",
                        connector=self.connector,
                    ) from None
                retry_after, reason = None, type(exc).__name__
                continue
            except httpx.TransportError as exc:
                timeout = isinstance(exc, httpx.TimeoutException)
                self.stats.add("timeouts" if timeout else "transport_errors")
                if method == "POST":  # may have been applied: never resend (see docstring)
                    raise Retriable(
                        f"{method} {url}: {type(exc).__name__} (not resent: the server may "
                        f"have applied it)",
                        connector=self.connector,
                    ) from None
                retry_after, reason = None, type(exc).__name__
                continue
            status = resp.status_code
            if status in (401, 403):
                raise Fatal(f"authentication failed (HTTP {status})", connector=self.connector)
            if status in BUSY or (status >= 500 and status != 501):
                self.stats.add({429: "http_429", 503: "http_503"}.get(status, "http_5xx"))
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                if retry_after is not None:
                    self._hold(retry_after)
                reason = f"HTTP {status}"
                if status not in BUSY and method == "POST":
                    break
                continue
            return resp
        if self.opening:
            raise Fatal(f"SCIM server {self.url} unavailable: {reason}", connector=self.connector)
        raise Retriable(
            f"{method} {url}: {reason}", connector=self.connector, retry_after=retry_after
        )


class HttpxScimClient(BaseSyncSCIMClient):
    """scim2-client's sync engine on httpx; every request goes through `ScimHttp.request`.

    scim2-client 0.13 ships its network engine for the ``httpx2`` fork only; this is the same
    ~15 lines for httpx (the project pins httpx 0.28).
    """

    def __init__(self, http: ScimHttp) -> None:
        super().__init__(check_response_content_type=False)
        self.client = http.client
        self._http = http

    def _stays_under_base_url(self, endpoint: str) -> bool:
        base = self.client.base_url
        try:
            url = self.client.build_request("GET", endpoint).url
        except httpx.InvalidURL:
            return False
        same = (url.scheme, url.host, url.port) == (base.scheme, base.host, base.port)
        return same and url.raw_path.startswith(base.raw_path)

    def _parse_json(self, response: Any) -> Any:
        return response.json()

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self._http.request(method, url, **kwargs)
