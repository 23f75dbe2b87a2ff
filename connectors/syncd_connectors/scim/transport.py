"""Building the connector's `httpx.Client`, and the warnings about an unsafe transport.

Why warnings at every `open()` (every run) and not once at config load: a daemon runs for
months; a setting that sends a bearer token in clear text or accepts any certificate must
stay visible in every run's log, not only in the first one after a restart.
"""

from __future__ import annotations

import logging
import ssl
from urllib.parse import urlsplit

import httpx

from syncd.net import is_loopback
from syncd_connectors.scim.config import ScimConfig

log = logging.getLogger("syncd.connectors.scim")
#: Seconds to establish a connection at most: a black-holed target must be found dead in
#: seconds (three of these in a row take it down), whatever the per-request `timeout`.
CONNECT_TIMEOUT_CAP = 10.0


def warn_unsafe(name: str, cfg: ScimConfig) -> None:
    """Log a WARNING for each unsafe transport setting (see the module docstring)."""
    parts = urlsplit(cfg.url)
    if parts.scheme == "https" and not cfg.tls_verify:
        log.warning("%s: tls_verify = false: the certificate of %s is not checked; anyone on "
                    "the path can read and change what syncd sends, including the token; set "
                    "ca_file instead", name, cfg.url)  # fmt: skip
    if parts.scheme == "http" and cfg.token is not None and not is_loopback(parts.hostname or ""):
        log.warning("%s: the bearer token is sent in clear text over http:// to %s; use "
                    "https://", name, parts.hostname)  # fmt: skip


def build_client(
    cfg: ScimConfig, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """One keep-alive client with `concurrency` connections, TLS as configured.

    Over http:// there is no certificate to check, and loading the system's CA bundle cost
    every start ~30 ms: the client gets a verifying context that trusts no CA instead, so
    an https URL met anyway fails verification rather than being trusted."""
    verify: ssl.SSLContext | bool = cfg.tls_verify
    if cfg.tls_verify and cfg.ca_file:
        verify = ssl.create_default_context(cafile=cfg.ca_file)
    elif cfg.tls_verify and urlsplit(cfg.url).scheme == "http":
        verify = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, hostname checked
    headers = {"Accept": "application/scim+json"}
    if cfg.token is not None:
        headers["Authorization"] = f"Bearer {cfg.token.get_secret_value()}"
    n = cfg.concurrency
    timeout = httpx.Timeout(cfg.timeout, connect=min(cfg.timeout, CONNECT_TIMEOUT_CAP))
    return httpx.Client(
        base_url=cfg.url + "/", headers=headers, timeout=timeout, verify=verify,
        limits=httpx.Limits(max_connections=n, max_keepalive_connections=n),
        transport=transport,
    )  # fmt: skip
