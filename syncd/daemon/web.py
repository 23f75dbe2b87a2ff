"""The daemon's HTTP listener (``[metrics] listen``): ``/metrics`` for Prometheus and, on
``/`` and ``/status``, the read-only status page (`syncd.daemon.status_page`).

One thread per request (a threading WSGI server, as prometheus-client's own). Each page
request gathers its snapshot with a read-only state store of its own, opened and closed
within the request (`syncd.daemon.status_data.gather`): no connection crosses threads, and
at most `MAX_PAGES` pages are built at once (more get 503, a page is never queued).

The page is for a person on this host or at the end of an SSH tunnel; since a web page
elsewhere could point a DNS name at 127.0.0.1 (DNS rebinding) and read it, it is served only
to requests whose ``Host`` is an IP address, ``localhost`` or this host's name (421
otherwise). ``/metrics`` answers any Host, as before.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from syncd.daemon.status_data import gather
from syncd.daemon.status_page import CSP, render

log = logging.getLogger("syncd.metrics")

StartResponse = Callable[..., Any]
App = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

PAGE_PATHS = ("/", "/status")
#: Pages built at the same time at most.
MAX_PAGES = 4
HEADERS = [("Content-Security-Policy", CSP), ("X-Content-Type-Options", "nosniff"),
           ("Cache-Control", "no-store"), ("Referrer-Policy", "no-referrer"),
           ("X-Frame-Options", "DENY")]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not logged (a scrape every 15 s would fill the journal)."""


def start_server(host: str, port: int, registry: CollectorRegistry,
                 config: Callable[[], Any] | None,
                 received: Callable[[], Any] | None = None) -> WSGIServer:
    """Listen on host:port in a background thread; `config` gives the current config for
    the status page (None: every path serves the metrics, as prometheus-client does);
    `received`, the SCIM requests counted (`Metrics.received`)."""
    metrics = make_wsgi_app(registry)
    page = page_app(config, received) if config is not None else None

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if page is not None and environ.get("PATH_INFO", "/") in PAGE_PATHS:
            return page(environ, start_response)
        return metrics(environ, start_response)

    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    server_class: type[_Server] = type("Server", (_Server,), {"address_family": family})
    server: WSGIServer = make_server(host, port, app, server_class, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server


def page_app(config: Callable[[], Any], received: Callable[[], Any] | None = None) -> App:
    """The status page as a WSGI app: ``GET /?object=NAME_OR_ID&flow=F`` adds that object's
    history."""
    slots = threading.BoundedSemaphore(MAX_PAGES)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return _plain(start_response, "405 Method Not Allowed", "GET only\n",
                          [("Allow", "GET, HEAD")])
        if not host_allowed(environ.get("HTTP_HOST", "")):
            return _plain(start_response, "421 Misdirected Request",
                          "the status page answers to an IP address, localhost or this "
                          "host's name only\n")
        if not slots.acquire(blocking=False):
            return _plain(start_response, "503 Service Unavailable", "busy, try again\n",
                          [("Retry-After", "1")])
        try:
            query = parse_qs(environ.get("QUERY_STRING", ""))
            obj = (query.get("object") or [""])[0].strip() or None
            flow = (query.get("flow") or [""])[0].strip() or None
            snap = gather(config(), obj=obj, flow=flow)
            if received is not None:
                snap = replace(snap, received=received())
            body = render(snap).encode("utf-8")
        except Exception as exc:  # a page must never take the listener down
            log.error("status page: %s: %s", type(exc).__name__, exc)
            return _plain(start_response, "500 Internal Server Error",
                          "the status page failed; see the daemon's log\n")
        finally:
            slots.release()
        status = "200 OK" if snap.error is None else "503 Service Unavailable"
        start_response(status, [("Content-Type", "text/html; charset=utf-8"),
                                ("Content-Length", str(len(body))), *HEADERS])
        return [b"" if method == "HEAD" else body]

    return app


def host_allowed(host: str) -> bool:
    """A ``Host`` header naming an IP address, localhost or this machine (any port)."""
    name = host.strip().lower()
    if name.startswith("["):  # [v6]:port
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    name = name.rstrip(".")
    if not name:
        return False
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    if name == "localhost" or name.endswith(".localhost"):
        return True
    return name in _own_names()


@functools.cache
def _own_names() -> frozenset[str]:
    return frozenset({socket.gethostname().lower(), socket.getfqdn().lower()})


def _plain(start_response: StartResponse, status: str, text: str,
           extra: list[tuple[str, str]] | None = None) -> list[bytes]:
    body = text.encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                            ("Content-Length", str(len(body))), *HEADERS, *(extra or [])])
    return [body]
