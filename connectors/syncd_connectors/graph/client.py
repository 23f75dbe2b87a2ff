"""The Graph connector's event loop and SDK client: every request goes through here.

msgraph-sdk is async; syncd's engine is synchronous and calls a connector from its apply
thread pool. The connector therefore owns one event loop in a dedicated thread, started by
`open()`, and every call submits a coroutine to it (``run_coroutine_threadsafe``) and waits.
One loop for the connector's lifetime is what makes a single `GraphServiceClient` (one
keep-alive ``httpx.AsyncClient``, one token cache) reusable: a client shared across
``asyncio.run()`` calls fails with "Event loop is closed" (PEERS.md). Requests from several
apply threads run concurrently on that loop, bounded by the connection pool (`concurrency`).

msgraph, kiota and azure-identity are imported only in `open()` (~0.35 s, ~450 MB installed):
`syncd --help`, `syncd validate` and LDAP-only runs never load them.

What goes through the SDK, and what does not:

 - Requests are built with the SDK (the delta request builders for the first page of a round)
   or as `RequestInformation` for absolute nextLink/deltaLink URLs, and sent by the SDK's
   `GraphRequestAdapter`: its middleware (retry with Retry-After, redirects, telemetry), its
   authentication providers (azure-identity credentials) and its OData error mapping.
 - Responses are read as raw JSON, not typed models: the typed delta response has no place
   for ``@removed`` and ``members@delta`` (instance annotations end up in untyped
   ``additional_data``), a PATCH with typed models cannot send ``null``, and parsing 20k users
   into kiota models costs more than the HTTP. `PageIterator` is not used (it drops the
   deltaLink); ``$batch`` is not used (its bodies are malformed, PEERS.md).

Throttling: the SDK's RetryHandler retries 429/503/504 up to `max_retries`, sleeping for
Retry-After (or an exponential backoff) inside the loop, so the engine's thread simply waits
— nothing here adds a second retry layer on top, which would multiply requests against a
throttled tenant. `_Gate`, the innermost middleware, sees every attempt: it counts them in
`stats` (``http_429`` ... for the engine's metrics) and, when one request is told to wait,
holds the connector's other requests until then. What a failure becomes is `errors.py`'s.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import warnings
from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlsplit

from syncd.errors import ConnectorError, Fatal, Retriable
from syncd.model import Kind
from syncd_connectors.graph.config import GraphConfig
from syncd_connectors.graph.errors import THROTTLED, parse_retry_after, translate

if TYPE_CHECKING:
    from kiota_abstractions.request_information import RequestInformation

log = logging.getLogger("syncd.connectors.graph")
T = TypeVar("T")

_COLLECTION: dict[Kind, str] = {"user": "users", "group": "groups"}


class GraphClient:
    """The loop, the SDK client and the requests of one connector (see the module docstring)."""

    def __init__(self, name: str, config: GraphConfig) -> None:
        self.name = name
        self.config = config
        #: Counters for the engine's metrics: http_429, http_503, http_504.
        self.stats: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._adapter: Any = None
        self._client: Any = None
        self._http: Any = None
        self._credential: Any = None
        self._error_map: dict[str, Any] = {}
        self._opening = False

    # --- lifecycle ------------------------------------------------------------------------

    def open(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name=f"graph-{self.name}",
                                        daemon=True)
        self._thread.start()
        self._opening = True
        try:
            self._call(self._build(), "connect")
            # Proves the credential and the permission to read users before any work starts.
            self._get(f"{self.config.endpoint}/users?$top=1&$select=id", "sign-in probe")
        except ConnectorError as exc:
            self.close()
            if isinstance(exc, Fatal):
                raise
            raise Fatal(f"Graph {self.config.endpoint} unavailable: {exc}",
                        connector=self.name) from None
        finally:
            self._opening = False

    def close(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None:
            return
        try:
            if self._http is not None:
                asyncio.run_coroutine_threadsafe(self._aclose(), loop).result(timeout=10)
        except Exception:  # closing must never hide the run's outcome
            log.debug("error closing Graph client", exc_info=True)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = None
        self._http = self._client = self._adapter = self._credential = None

    # --- the loop and the SDK -------------------------------------------------------------

    def _url(self, kind: Kind, external_id: str | None = None) -> str:
        base = f"{self.config.endpoint}/{_COLLECTION[kind]}"
        return base if external_id is None else f"{base}/{quote(external_id, safe='')}"

    def _call(self, coro: Coroutine[Any, Any, T], what: str) -> T:
        """Run `coro` on the connector's loop and wait; errors become syncd errors."""
        if self._loop is None:
            coro.close()
            raise Fatal("connector is not open", connector=self.name)
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            # No timeout here: each attempt is bounded by `timeout`, the retries by
            # `max_retries`; a shorter wait would give up while a Retry-After is honoured.
            return future.result()
        except ConnectorError:
            raise
        except Exception as exc:
            raise translate(exc, what, self.config, self.name, self._opening) from None

    def _get(self, url: str, what: str, *, page: bool = False,
             headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        if urlsplit(url).netloc.lower() != urlsplit(self.config.endpoint).netloc.lower():
            raise Fatal(f"{what}: Graph sent a link to another host", connector=self.name)
        hdrs = dict(headers or {})
        if page:
            hdrs["Prefer"] = f"odata.maxpagesize={self.config.page_size}"
        body = self._call(self._send("GET", url, headers=hdrs), what)
        if not isinstance(body, dict):
            raise Retriable(f"{what}: empty or non-JSON answer", connector=self.name)
        return body

    async def _build(self) -> None:
        with warnings.catch_warnings():
            # msgraph's generated builders warn about their own deprecated classes on import
            warnings.simplefilter("ignore", DeprecationWarning)
            await self._build_client()

    async def _build_client(self) -> None:
        import httpx
        from kiota_http.kiota_client_factory import KiotaClientFactory
        from kiota_http.middleware.options import RetryHandlerOption, UrlReplaceHandlerOption
        from msgraph import GraphRequestAdapter, GraphServiceClient
        from msgraph.generated.models.o_data_errors.o_data_error import ODataError
        from msgraph_core import APIVersion, GraphClientFactory
        from msgraph_core.middleware import GraphTelemetryHandler
        from msgraph_core.middleware.options import GraphTelemetryHandlerOption

        cfg = self.config
        self._error_map = {"XXX": ODataError}
        options: dict[str, Any] = {
            # delay is a base added to each backoff when there is no Retry-After.
            RetryHandlerOption.get_key(): RetryHandlerOption(delay=1.0,
                                                             max_retries=cfg.max_retries),
            UrlReplaceHandlerOption.get_key(): UrlReplaceHandlerOption(enabled=False),
        }
        middleware = KiotaClientFactory.get_default_middleware(options)
        middleware.append(GraphTelemetryHandler(GraphTelemetryHandlerOption(
            api_version=APIVersion.v1)))
        middleware.append(_gate(self))
        limits = httpx.Limits(max_connections=cfg.concurrency,
                              max_keepalive_connections=cfg.concurrency)
        http = httpx.AsyncClient(base_url=cfg.endpoint, timeout=cfg.timeout, limits=limits)
        self._http = GraphClientFactory.create_with_custom_middleware(middleware, client=http)
        self._adapter = GraphRequestAdapter(self._auth_provider(), client=self._http)
        self._adapter.base_url = cfg.endpoint
        self._client = GraphServiceClient(request_adapter=self._adapter)

    def _auth_provider(self) -> Any:
        cfg = self.config
        host = urlsplit(cfg.endpoint).hostname or ""
        if cfg.auth == "none":
            from kiota_abstractions.authentication import AnonymousAuthenticationProvider

            return AnonymousAuthenticationProvider()
        if cfg.auth == "token":
            from kiota_abstractions.authentication import BaseBearerTokenAuthenticationProvider

            assert cfg.token is not None
            return BaseBearerTokenAuthenticationProvider(_static_token(
                cfg.token.get_secret_value(), host))
        from azure.identity.aio import CertificateCredential, ClientSecretCredential
        from kiota_authentication_azure.azure_identity_authentication_provider import (
            AzureIdentityAuthenticationProvider,
        )

        assert cfg.tenant_id and cfg.client_id
        if cfg.auth == "client_secret":
            assert cfg.client_secret is not None
            self._credential = ClientSecretCredential(
                cfg.tenant_id, cfg.client_id, cfg.client_secret.get_secret_value(),
                authority=cfg.authority_host)
        else:
            password = cfg.certificate_password
            self._credential = CertificateCredential(
                cfg.tenant_id, cfg.client_id, certificate_path=cfg.certificate,
                password=password.get_secret_value().encode() if password else None,
                authority=cfg.authority_host)
        return AzureIdentityAuthenticationProvider(self._credential, scopes=[cfg.scope],
                                                   allowed_hosts=[host])

    async def _aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        if self._credential is not None:
            await self._credential.close()

    def _request(self, method: str, url: str, body: Any = None,
                 headers: Mapping[str, str] | None = None) -> RequestInformation:
        from kiota_abstractions.method import Method
        from kiota_abstractions.request_information import RequestInformation

        ri = RequestInformation()
        ri.http_method = Method[method]
        ri.url = url
        ri.headers.try_add("Accept", "application/json")
        for k, v in (headers or {}).items():
            ri.headers.try_add(k, v)
        if body is not None:
            ri.set_stream_content(json.dumps(body).encode(), "application/json")
        return ri

    async def _send_info(self, ri: RequestInformation) -> Any:
        data = await self._adapter.send_primitive_async(ri, "bytes", self._error_map)
        return json.loads(data) if data else None

    async def _send(self, method: str, url: str, body: Any = None,
                    headers: Mapping[str, str] | None = None) -> Any:
        return await self._send_info(self._request(method, url, body, headers))


def _gate(owner: GraphClient) -> Any:
    """The innermost middleware (built lazily: its base class lives in kiota_http)."""
    from kiota_http.middleware.middleware import BaseMiddleware

    class _Gate(BaseMiddleware):
        """Sees every attempt, retries included: counts throttling in `stats` and holds
        every request of this connector until a Retry-After the server gave has passed."""

        def __init__(self) -> None:
            super().__init__()
            self.until = 0.0

        async def send(self, request: Any, transport: Any) -> Any:
            wait = self.until - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            response = await super().send(request, transport)
            if response.status_code in THROTTLED:
                key = f"http_{response.status_code}"
                owner.stats[key] = owner.stats.get(key, 0) + 1
                after = parse_retry_after(response.headers.get("Retry-After"))
                if after:
                    self.until = max(self.until, time.monotonic() + min(after, 180.0))
            return response

    return _Gate()


def _static_token(token: str, host: str) -> Any:
    """An AccessTokenProvider handing out one fixed token (loopback test endpoints only)."""
    from kiota_abstractions.authentication import AccessTokenProvider, AllowedHostsValidator

    class _Static(AccessTokenProvider):
        async def get_authorization_token(self, uri: str,
                                          additional_authentication_context: Any = None) -> str:
            return token

        def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
            return AllowedHostsValidator([host])

    return _Static()
