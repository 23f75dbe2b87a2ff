"""The HTTP server of ``syncd serve``: cheroot, with TLS natively or plain behind a proxy.

Why cheroot (CherryPy's server, 11.x): a production, thread-pooled, pure-Python WSGI server
with HTTP/1.1 keep-alive (Entra and Okta reuse connections) and TLS built in (the standard
library's `ssl`, cert and key files), so one process serves HTTPS without a proxy.
waitress, already used by the tests to serve scim2-server, was the other candidate: just as
solid, but it has no TLS, so every deployment would need a reverse proxy. Behind one,
``behind_proxy = true`` trusts its ``X-Forwarded-*`` headers for the URLs in ``Location``
and ``meta.location``.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter
from scim2_server.applications.wsgi import ForwardedHeaders

log = logging.getLogger("syncd.serve")


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


class Server:
    """`app` served on `listen` ("host:port"); `start` binds and serves in threads."""

    def __init__(self, app: Any, listen: str, *, threads: int = 8,
                 tls_cert: str | None = None, tls_key: str | None = None,
                 behind_proxy: bool = False, max_body: int = 1_048_576) -> None:
        self.host, self.port = split_listen(listen)
        self.tls = tls_cert is not None
        wrapped = ForwardedHeaders(app) if behind_proxy else app
        self.http = wsgi.Server((self.host, self.port), wrapped, numthreads=threads,
                                server_name="syncd", request_queue_size=64, timeout=30)
        # a hard cap for cheroot; the application answers bodies past max_body with a SCIM 413
        self.http.max_request_body_size = 4 * max_body
        if tls_cert is not None and tls_key is not None:
            self.http.ssl_adapter = BuiltinSSLAdapter(tls_cert, tls_key)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.bound_port}/v2"

    @property
    def bound_port(self) -> int:
        addr = self.http.bind_addr
        return int(addr[1]) if isinstance(addr, tuple) else self.port

    def start(self) -> None:
        """Bind (errors here: address in use, bad certificate) and serve in the background."""
        self.http.prepare()
        self._thread = threading.Thread(target=self.http.serve, name="syncd-serve",
                                        daemon=True)
        self._thread.start()
        log.info("serving SCIM 2.0 on %s", self.url)

    def stop(self) -> None:
        self.http.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)
