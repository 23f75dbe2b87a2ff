"""A fault-injecting HTTP reverse proxy on 127.0.0.1, in front of a real server.

Why a proxy and not an httpx transport wrapper: the end-to-end tests run the real CLI, which
builds its own connector; faults must therefore live on the network path, and a proxy also
produces the real thing (a socket closed mid-request, a response that never comes).

A plan is a list of `Fault` rules; each request takes the first rule that matches it (method,
path regex, body substring) and still has hits left (`times`, after letting `skip` matching
requests pass; a request a rule skips may still be taken by a later rule). Actions:

 - ``status``: answer `status` (429, 503, 500, ...) with an optional Retry-After, not forwarded;
 - ``reset``: close the connection with a TCP RST, not forwarded (nothing was applied);
 - ``drop_response``: forward, then reset instead of answering (applied, answer lost);
 - ``delay``: hold the request `delay` seconds (beyond the client's timeout), then forward
   it (`forward=True`, the server applies it late; recorded again as ``late`` once the
   server answered it) or reset;
 - ``hold``: hold the request until an event of action `until` is recorded (e.g. ``late``:
   a server that applied a late request before this one reaches it), then forward it;
 - ``rewrite``: forward, then answer the server's status and headers with the body passed
   through `rewrite` (a malformed answer from a real server);
 - ``serve``: answer `status` with the chunks `payload()` yields, not forwarded, without a
   Content-Length (read until close) unless `length` is set; the event's `sent` counts the
   body bytes that went out before the client hung up (a client that stops reading an
   oversized body shows as ``sent`` far below the body's size).

Every request is recorded as an `Event` with monotonic timestamps, so tests assert what
happened (e.g. "no retry came earlier than Retry-After allowed") from the proxy's clock
instead of sleeping. Bounded by construction: rules have finite `times`, delays wait on the
stop event, idle keep-alive connections time out, and `stop()` ends everything.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Literal, Self
from urllib.parse import urlsplit

import httpx

Action = Literal["status", "reset", "drop_response", "delay", "rewrite", "serve", "hold"]
#: Never hold a request longer than this, whatever a plan says.
MAX_DELAY = 30.0
_HOP = frozenset({
    "connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding",
    "host", "proxy-connection", "te", "trailer", "upgrade", "accept-encoding",
})  # fmt: skip


@dataclass
class Fault:
    """One rule of a fault plan (see the module docstring)."""

    action: Action
    times: int = 1
    method: str | None = None
    path: str | None = None  # regex, searched in the path (query excluded)
    body: str | None = None  # substring of the request body
    status: int = 503
    retry_after: str | None = None
    delay: float = 0.0
    forward: bool = False
    skip: int = 0
    rewrite: Callable[[bytes], bytes] | None = None
    payload: Callable[[], Iterable[bytes]] | None = None
    length: int | None = None  # a Content-Length to announce for `serve`
    until: str = "late"  # the event action a `hold` waits for
    hits: int = field(default=0, init=False)

    def matches(self, method: str, path: str, body: bytes) -> bool:
        if self.method is not None and method.upper() != self.method.upper():
            return False
        if self.path is not None and re.search(self.path, path) is None:
            return False
        return self.body is None or self.body.encode() in body


@dataclass(frozen=True)
class Event:
    """One request as the proxy saw it, `time.monotonic()` stamps: `at` request fully read,
    `replied` just before the first byte of the answer went out (the client cannot have it
    earlier: what a Retry-After counts from), `done` answer sent or connection closed.
    `action` is ``forwarded`` or a fault's."""

    at: float
    replied: float
    done: float
    method: str
    path: str
    query: str
    body_hash: str
    action: str
    status: int | None
    retry_after: float | None
    sent: int | None = None  # body bytes written (``serve``)
    received: int = 0  # request body bytes (what the client sent; counting benchmarks)

    @property
    def key(self) -> tuple[str, str, str]:
        """Identity of a request across retries: a resend has the same method, target, body."""
        return (self.method, f"{self.path}?{self.query}", self.body_hash)


class FaultProxy:
    """``with FaultProxy(server.url) as proxy:`` then point the client at ``proxy.url``."""

    def __init__(self, upstream_url: str, *, idle_timeout: float = 30.0) -> None:
        parts = urlsplit(upstream_url)
        self.upstream_root = f"{parts.scheme}://{parts.netloc}"
        self.prefix = parts.path.rstrip("/")
        self.idle_timeout = idle_timeout
        self._faults: list[Fault] = []
        self._events: list[Event] = []
        self._lock = threading.Lock()
        self._recorded = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._upstream: httpx.Client | None = None

    # --- lifecycle --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._server is not None, "proxy not started"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The upstream URL as seen through the proxy (same path prefix)."""
        return f"http://127.0.0.1:{self.port}{self.prefix}"

    def start(self) -> Self:
        self._upstream = httpx.Client(base_url=self.upstream_root, timeout=60.0)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        server.daemon_threads = True
        server.block_on_close = False  # idle keep-alive connections must not block stop()
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="fault-proxy",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._upstream is not None:
            self._upstream.close()
        self._server = self._thread = self._upstream = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- the plan and what happened -------------------------------------------------------

    def add(self, *faults: Fault) -> None:
        with self._lock:
            self._faults.extend(faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def events(self, method: str | None = None, path: str | None = None) -> list[Event]:
        with self._lock:
            found = list(self._events)
        return [e for e in found if (method is None or e.method == method)
                and (path is None or re.search(path, e.path) is not None)]

    def counts(self) -> Counter[str]:
        """Events per action, and per status for ``status`` faults (``status:429``)."""
        out: Counter[str] = Counter()
        for e in self.events():
            out[e.action] += 1
            if e.action == "status":
                out[f"status:{e.status}"] += 1
        return out

    def _take(self, method: str, path: str, body: bytes) -> Fault | None:
        with self._lock:
            for f in self._faults:
                if f.hits < f.skip + f.times and f.matches(method, path, body):
                    f.hits += 1
                    if f.hits > f.skip:
                        return f
                    # skipped by this rule: a later rule may still take it
        return None

    def wait_for(self, action: str, count: int, timeout: float = 10.0) -> list[Event]:
        """Block until `count` events of `action` are recorded (a ``serve`` is recorded only
        once the client hung up), then return them; fewer when `timeout` passes first."""
        def found() -> list[Event]:
            return [e for e in self._events if e.action == action]

        with self._recorded:
            self._recorded.wait_for(lambda: len(found()) >= count, timeout=timeout)
            return found()

    def _record(self, event: Event) -> None:
        with self._recorded:
            self._events.append(event)
            self._recorded.notify_all()


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like the real servers behind
        timeout = proxy.idle_timeout

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the events are the log."""

        def do_GET(self) -> None:
            self._handle()

        do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            at = time.monotonic()
            target = urlsplit(self.path)
            path = target.path
            digest = hashlib.blake2b(body, digest_size=8).hexdigest()
            fault = proxy._take(self.command, path, body)

            replied = [at]

            def record(action: str, status: int | None = None,
                       retry_after: float | None = None, sent: int | None = None) -> None:
                proxy._record(Event(at, replied[0], time.monotonic(), self.command, path,
                                    target.query, digest, action, status, retry_after, sent,
                                    len(body)))

            if fault is None:
                status = self._forward(body)
                record("forwarded", status)
            elif fault.action == "status":
                replied[0] = time.monotonic()
                self._answer(fault.status, fault.retry_after)
                ra = float(fault.retry_after) if fault.retry_after else None
                record("status", fault.status, ra)
            elif fault.action == "reset":
                self._reset()
                record("reset")
            elif fault.action == "rewrite":
                status = self._forward(body, rewrite=fault.rewrite)
                record("rewrite", status)
            elif fault.action == "serve":
                replied[0] = time.monotonic()
                record("serve", fault.status, sent=self._serve(fault))
            elif fault.action == "hold":
                proxy.wait_for(fault.until, 1, timeout=MAX_DELAY)
                status = self._forward(body)
                record("hold", status)
            elif fault.action == "drop_response":
                self._forward(body, send=False)
                self._reset()
                record("drop_response")
            else:  # recorded before the wait: the client has given up by the time it ends
                record("delay")
                proxy._stopping.wait(min(fault.delay, MAX_DELAY))
                if fault.forward:
                    late = None
                    try:
                        late = self._forward(body)
                    except OSError:  # the client gave up long ago
                        self.close_connection = True
                    record("late", late)
                else:
                    self._reset()

        def _forward(self, body: bytes, *, send: bool = True,
                     rewrite: Callable[[bytes], bytes] | None = None) -> int:
            assert proxy._upstream is not None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            resp = proxy._upstream.request(self.command, self.path, content=body,
                                           headers=headers)
            if send:
                content = rewrite(resp.content) if rewrite is not None else resp.content
                self.send_response_only(resp.status_code)
                for k, v in resp.headers.items():
                    if k.lower() not in _HOP:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)
                self.wfile.flush()
            return resp.status_code

        def _serve(self, fault: Fault) -> int:
            """Answer `fault.payload()`'s chunks; returns the body bytes written."""
            self.send_response_only(fault.status)
            self.send_header("Content-Type", "application/scim+json")
            if fault.length is not None:
                self.send_header("Content-Length", str(fault.length))
            else:
                self.send_header("Connection", "close")
            self.end_headers()
            sent = 0
            try:
                for chunk in fault.payload() if fault.payload is not None else ():
                    if proxy._stopping.is_set():
                        break
                    self.wfile.write(chunk)
                    sent += len(chunk)
                self.wfile.flush()
            except OSError:  # the client stopped reading and closed: what a bound looks like
                pass
            self.close_connection = True
            return sent

        def _answer(self, status: int, retry_after: str | None) -> None:
            payload = json.dumps({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                "status": str(status), "detail": "injected by fault_proxy",
            }).encode()
            self.send_response(status)
            if retry_after is not None:
                self.send_header("Retry-After", retry_after)
            self.send_header("Content-Type", "application/scim+json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()

        def _reset(self) -> None:
            """Close with RST (SO_LINGER 0): the client sees a reset, not a clean EOF."""
            self.close_connection = True
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
                self.connection.close()
            except OSError:
                pass

        def handle(self) -> None:
            try:
                super().handle()
            except (OSError, ValueError):  # the socket was reset on purpose, or by the client
                self.close_connection = True

        def finish(self) -> None:
            with contextlib.suppress(OSError, ValueError):
                super().finish()

    return Handler
