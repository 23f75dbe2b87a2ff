"""The SCIM connector's HTTP layer: one keep-alive `httpx.Client`, retries, counters.

Why here and not in scim2-client: 429/503 with Retry-After, resets and timeouts are transport
matters scim2-client does not handle, and the rules for *what may be resent* decide whether a
fault ends in a duplicate. They are:

 - 429 and 503 say "not processed, try later": always resent, even a POST (a /Bulk too).
 - other 5xx and broken connections: resent only when the request is idempotent (not POST)
   or never left this host (connect errors). A POST that timed out or lost its connection
   may have been applied: it is *not* resent, the change fails as `Retriable`, and the next
   run finds the object by the flow's match keys and adopts it. A request sent with
   ``resend=False`` (member PATCHes: idempotent in effect, not in time) follows the POST
   rule, and its error carries ``maybe_applied = True``: the caller reads the target's
   state before it sends anything again (`syncd_connectors.scim.members`).
 - 401/403 are `Fatal` (a wrong token does not get better by retrying).

A Retry-After is honoured by every thread, not only the one that got it: the server said the
client sends too much, so one shared "not before" instant gates all requests (`_gate`).

A dead target ends the run fast (DESIGN principle 11). A request the peer did not answer at
all (refused, reset, connect timeout, DNS) raises `Unreachable`; after `DOWN_AFTER` such
failures in a row, counted over all threads with no HTTP answer in between, the target is
taken for down and every further request fails at once with `Fatal`, unsent and without
backoff, until the connector is opened again. Any HTTP answer, even a 500, resets the count:
the server is alive. A *read* timeout counts separately and takes more of them in a row
(`timeouts_down_after`, twice the pool size): one slow request must not stop a flow while
other threads get answers, but a hung server that accepts connections and never answers is
down after about two rounds of timeouts. Measured before these rules: a server stopped after
100 of 400 creates kept syncd retrying for 14 minutes.

Every response body is read as a stream and abandoned past `max_response_bytes` (`TooLarge`,
a `Rejected`): a 32 MB answer to one lookup once drove syncd to 15 GB. A certificate the
client cannot verify is `Fatal` with a message saying so (retrying cannot fix it).
"""

from __future__ import annotations

import email.utils
import random
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx

from syncd.errors import Fatal, Rejected, Retriable, Unreachable

RETRY_AFTER_CAP = 60.0
BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
#: Consecutive requests without any HTTP answer after which the target is taken for down.
DOWN_AFTER = 3
#: Default bound of one response body (the config's `max_response_bytes`).
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
#: Statuses that say "not processed, try later": safe to resend, even a POST.
BUSY = frozenset({429, 503})
#: Transport errors raised before the request left this host: safe to resend, even a POST.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)
#: Headers that described the encoded body we already decoded (see `ScimHttp._send`).
_BODY_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})
#: Counters every connector reports, zero or not (metrics want stable keys).
STAT_KEYS = (
    "requests", "retries", "http_429", "http_503", "http_5xx", "timeouts", "transport_errors",
    "bulk_requests", "bulk_operations",
)  # fmt: skip


def maybe_applied(exc: BaseException) -> bool:
    """Did this request leave and get no (complete or successful) answer, so that the server
    may have applied it, now or later? Only requests sent with ``resend=False`` say so."""
    return bool(getattr(exc, "maybe_applied", False))


def _mark(exc: Retriable) -> Retriable:
    setattr(exc, "maybe_applied", True)  # noqa: B010 - an attribute the error tree does not declare
    return exc


class TooLarge(Rejected):
    """A response body beyond `max_response_bytes`; it was not read further."""


class HttpStatus(Exception):
    """An HTTP error answer to a request scim2-client sent: the *HTTP* status decides what it
    means (a body claiming another status proves nothing), see `client.HttpxScimClient`."""

    def __init__(self, status: int, response: httpx.Response) -> None:
        super().__init__(status)
        self.status = status
        self.response = response


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


def cert_failure(exc: BaseException) -> str | None:
    """The reason when `exc` (or what caused it) is a failed certificate verification."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLCertVerificationError):
            return str(cur.verify_message or cur.reason or cur)
        cur = cur.__cause__ or cur.__context__
    return "certificate verify failed" if "CERTIFICATE_VERIFY_FAILED" in str(exc) else None


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
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        down_after: int = DOWN_AFTER,
        timeouts_down_after: int = 2 * DOWN_AFTER,
    ) -> None:
        self.client = client
        self.connector = connector
        self.url = url
        self.max_retries = max_retries
        self.sleep = sleep
        self.stats = stats
        self.clock = clock
        self.max_response_bytes = max_response_bytes
        self.down_after = down_after
        self.timeouts_down_after = timeouts_down_after
        #: True during `open()`: an unreachable server is then Fatal at once.
        self.opening = False
        self._gate_lock = threading.Lock()
        self._not_before = 0.0  # clock() before which no request is sent
        self._health_lock = threading.Lock()
        self._unanswered = 0  # requests in a row, over all threads, that got no answer
        self._timed_out = 0  # requests in a row, over all threads, that timed out reading
        self._down: str | None = None  # the Fatal message once the target is taken for down

    def _gate(self) -> None:
        """Wait until the last Retry-After any thread received has passed."""
        with self._gate_lock:
            wait = self._not_before - self.clock()
        if wait > 0:
            self.sleep(wait)

    def _hold(self, seconds: float) -> None:
        with self._gate_lock:
            self._not_before = max(self._not_before, self.clock() + seconds)

    # --- target health ----------------------------------------------------------------------

    @property
    def down(self) -> str | None:
        """Why the target was taken for down (None while it is not)."""
        with self._health_lock:
            return self._down

    def _refuse_if_down(self) -> None:
        reason = self.down
        if reason is not None:
            raise Fatal(reason, connector=self.connector)

    def _answered(self) -> None:
        with self._health_lock:
            self._unanswered = self._timed_out = 0

    def _unanswered_failure(self, exc: httpx.TransportError, *, timeout: bool = False) -> None:
        """Count a request the peer did not answer (or not in time); declare the target down
        at the limit (module docstring)."""
        with self._health_lock:
            if timeout:
                self._timed_out += 1
                n, limit, what = self._timed_out, self.timeouts_down_after, "timeouts"
            else:
                self._unanswered += 1
                n, limit, what = self._unanswered, self.down_after, "connection failures"
            if self._down is None and n >= limit:
                self._down = (
                    f"SCIM server {self.url}: target down: {n} consecutive {what}: "
                    f"{type(exc).__name__}: {str(exc)[:200]}"
                )
            reason = self._down
        if reason is not None:
            raise Fatal(reason, connector=self.connector)

    # --- one request ------------------------------------------------------------------------

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send, then read the body as a stream up to `max_response_bytes` (decoded bytes,
        so a compressed bomb is bounded too). The returned response holds the body."""
        request = self.client.build_request(method, url, **kwargs)
        resp = self.client.send(request, stream=True)
        self._answered()
        limit = self.max_response_bytes
        try:
            declared = resp.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > limit:
                raise self._too_large(method, url, f"Content-Length {declared}")
            body = bytearray()
            for chunk in resp.iter_bytes():
                body += chunk
                if len(body) > limit:
                    raise self._too_large(method, url, "the body")
        finally:
            resp.close()
        headers = [(k, v) for k, v in resp.headers.multi_items() if k.lower() not in _BODY_HEADERS]
        return httpx.Response(
            resp.status_code, headers=headers, content=bytes(body), request=request,
            extensions=resp.extensions,
        )  # fmt: skip

    def _too_large(self, method: str, url: str, what: str) -> TooLarge:
        return TooLarge(
            f"{method} {url}: response too large: {what} exceeds max_response_bytes "
            f"({self.max_response_bytes} bytes); not read further",
            connector=self.connector,
        )

    def _transport_failure(
        self, method: str, url: str, exc: httpx.TransportError, resend: bool = True
    ) -> bool:
        """Classify a request that got no (complete) answer. Raises when it must not be
        resent; returns True when the peer did not answer at all (`Unreachable`)."""
        once = method == "POST" or not resend
        name = type(exc).__name__
        reason = cert_failure(exc)
        if reason is not None:
            self.stats.add("transport_errors")
            raise Fatal(
                f"TLS certificate verification failed for {self.url}: {reason}; set ca_file "
                f"to the CA certificate that signed the server's certificate",
                connector=self.connector,
            )
        if isinstance(exc, httpx.PoolTimeout):  # all our connections busy: a local matter
            self.stats.add("timeouts")
            return False
        if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
            self.stats.add("timeouts")  # maybe only slow: counted apart, with a higher limit
            if not self.opening:
                self._unanswered_failure(exc, timeout=True)
            if once:  # may have been applied: never resend (module docstring)
                raise _mark(Retriable(
                    f"{method} {url}: {name} (not resent: the server may have applied it)",
                    connector=self.connector,
                ))
            return False
        self.stats.add("transport_errors")
        if self.opening:
            raise Fatal(f"SCIM server {self.url} unreachable: {name}", connector=self.connector)
        self._unanswered_failure(exc)
        if once and not isinstance(exc, _NOT_SENT):
            raise _mark(Unreachable(
                f"{method} {url}: {name} (not resent: the server may have applied it)",
                connector=self.connector,
            ))
        return True

    def request(
        self, method: str, url: str, *, resend: bool = True, **kwargs: Any
    ) -> httpx.Response:
        """One request with bounded retries (rules in the module docstring).

        Exhausted retries raise `Retriable` carrying the server's last Retry-After, or
        `Unreachable` when the last attempt got no answer at all. With ``resend=False`` a
        request that may have been applied (timeout, connection lost after sending, 5xx
        other than 503) is never sent again: the error says ``maybe_applied``.
        """
        may_have_applied = False
        retry_after: float | None = None
        reason = ""
        unreachable = False
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.stats.add("retries")
                if retry_after is None:
                    self.sleep(backoff(attempt))
            self._refuse_if_down()
            self._gate()
            self._refuse_if_down()  # a Retry-After wait may have outlived the target
            self.stats.add("requests")
            try:
                resp = self._send(method, url, **kwargs)
            except httpx.TransportError as exc:
                unreachable = self._transport_failure(method, url, exc, resend)
                retry_after, reason = None, type(exc).__name__
                continue
            unreachable = False
            status = resp.status_code
            if status in (401, 403):
                raise Fatal(f"authentication failed (HTTP {status})", connector=self.connector)
            if status in BUSY or (status >= 500 and status != 501):
                self.stats.add({429: "http_429", 503: "http_503"}.get(status, "http_5xx"))
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                if retry_after is not None:
                    self._hold(retry_after)
                reason = f"HTTP {status}"
                if status not in BUSY and (method == "POST" or not resend):
                    may_have_applied = not resend
                    break
                continue
            return resp
        if self.opening:
            raise Fatal(f"SCIM server {self.url} unavailable: {reason}", connector=self.connector)
        if unreachable:
            raise Unreachable(f"{method} {url}: {reason}", connector=self.connector)
        err = Retriable(
            f"{method} {url}: {reason}", connector=self.connector, retry_after=retry_after
        )
        raise _mark(err) if may_have_applied else err
