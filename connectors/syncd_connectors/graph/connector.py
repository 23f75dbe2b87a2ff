"""Microsoft Graph (Entra ID) connector: users and groups via delta query, and write-back.

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
holds the connector's other requests until then. When retries run out, or the server asks
for 3 minutes or more (the RetryHandler does not wait that long), the change fails as
`Retriable` carrying the server's Retry-After and is deferred to the next run.

Absence is not proof: before the engine deprovisions a linked object a full round did not
return, `confirm_gone` asks Graph for it directly (`gone.py`). ``passwordProfile`` is never
selected nor kept (`delta.SECRET_PROPERTIES`).

Errors: 401/403 -> `Fatal` (never with a header or token in the message); 429/5xx and
timeouts -> `Retriable`; no answer at all (refused, reset, connect timeout) -> `Unreachable`
(a few in a row and the engine takes the target for down); 404 on update -> `Rejected`, on
delete -> success (gone is what we wanted); a duplicate userPrincipalName (Graph answers
400) -> `Conflict`, so the engine adopts the existing user; other 4xx -> `Rejected` with the
OData code and message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import warnings
from collections.abc import Awaitable, Coroutine, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from urllib.parse import quote, urlencode, urlsplit

from syncd.connector import Capabilities, ConnectorConfig
from syncd.errors import Conflict, ConnectorError, Fatal, Rejected, Retriable, Unreachable
from syncd.model import Attrs, Batch, Entry, Kind, Value
from syncd_connectors.graph import delta, gone
from syncd_connectors.graph.config import GraphConfig

if TYPE_CHECKING:
    from kiota_abstractions.request_information import RequestInformation

log = logging.getLogger("syncd.connectors.graph")
T = TypeVar("T")

#: Graph accepts at most 20 references per ``members@odata.bind`` PATCH.
BIND_CHUNK = 20
#: Statuses the RetryHandler retries; reported as http_<status> in `stats`.
THROTTLED = frozenset({429, 503, 504})
_COLLECTION: dict[Kind, str] = {"user": "users", "group": "groups"}


class _Gone(Retriable):
    """The delta token expired (410 / syncStateNotFound). At the start of an incremental round
    the connector falls back to a full round; in the middle of one it is an ordinary
    Retriable: the engine keeps its cursor and the next run starts over."""


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        import email.utils

        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


class GraphConnector:
    """An Entra ID tenant as a source (delta rounds) and a target (users, security groups)."""

    config_model: ClassVar[type[ConnectorConfig]] = GraphConfig

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
        self._caps = Capabilities(read=True, write=True, patch=True, bulk=False)

    # --- contract: lifecycle --------------------------------------------------------------

    @staticmethod
    def known_paths(kind: Kind) -> frozenset[str]:
        """Canonical attributes (Graph property names, plus the engine's ``active``) a flow
        may map to this connector; config validation reports anything else as a typo."""
        return delta.known_paths(kind)

    @property
    def capabilities(self) -> Capabilities:
        return self._caps

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

    # --- contract: reads ------------------------------------------------------------------

    def read(
        self, kind: Kind, cursor: str | None = None, attributes: Sequence[str] | None = None
    ) -> Iterator[Batch]:
        """One delta round: full without a usable cursor, else only changes.

        Users stream page by page. Groups are gathered for the whole round before they are
        yielded, because one group can arrive in several objects (each with a slice of its
        ``members@delta``). With ``attributes=None`` (the engine listing a *target*) every
        known property is selected and entries carry canonical `attrs` too.
        """
        select = delta.select_for(kind, attributes)
        key = delta.select_key(select)
        with_attrs = attributes is None
        link: str | None = None
        if cursor:
            parsed = delta.parse_cursor(cursor, self.config.endpoint)
            if isinstance(parsed, str):
                log.warning("%s: %s; reading all %ss", self.name, parsed, kind)
            elif parsed[0] != key:
                log.warning("%s: the %s attributes changed since the last delta round; "
                            "reading all %ss", self.name, kind, kind)
            else:
                link = parsed[1]
        body: dict[str, Any] | None = None
        if link is not None:
            try:
                body = self._get(link, f"delta {kind}s", page=True)
            except _Gone as exc:
                log.warning("%s: delta token for %ss no longer valid (%s); reading all %ss",
                            self.name, kind, exc, kind)
                link = None
        full = link is None
        if body is None:
            body = self._call(self._first_page(kind, select), f"delta {kind}s")
        rnd = delta.GroupRound(full) if kind == "group" else None
        while True:
            items = body.get("value") or []
            next_link = body.get("@odata.nextLink")
            delta_link = body.get("@odata.deltaLink")
            new_cursor = delta.make_cursor(str(delta_link), key) if delta_link else None
            if rnd is not None:
                rnd.add(items)
            else:
                entries: list[Entry] = []
                deleted: list[str] = []
                for item in items:
                    if "@removed" in item:
                        if not full and item.get("id"):
                            deleted.append(str(item["id"]))
                    elif item.get("id"):
                        entries.append(delta.user_entry(item, with_attrs))
                yield Batch("user", tuple(entries), cursor=None if next_link else new_cursor,
                            full=full, deleted=tuple(deleted))
            if not next_link:
                break
            body = self._get(str(next_link), f"delta {kind}s", page=True)
        if rnd is not None:
            groups = rnd.entries(with_attrs)
            gone: tuple[str, ...] = tuple(rnd.deleted) if not full else ()
            size = self.config.page_size
            chunks = [groups[i:i + size] for i in range(0, len(groups), size)] or [[]]
            for n, chunk in enumerate(chunks):
                last = n == len(chunks) - 1
                yield Batch("group", tuple(chunk), cursor=new_cursor if last else None,
                            full=full, deleted=gone if last else ())

    def find(self, kind: Kind, attribute: str, value: str) -> list[Entry]:
        """Objects whose `attribute` equals `value` (``$filter`` eq, quotes doubled)."""
        try:
            expr, advanced = delta.filter_for(kind, attribute, value)
        except ValueError as exc:
            raise Rejected(str(exc), connector=self.name) from None
        select = [s for s in delta.select_for(kind, None) if s != "members"]
        params = {"$filter": expr, "$select": ",".join(select), "$top": "50"}
        headers = {}
        if advanced:
            params["$count"] = "true"
            headers["ConsistencyLevel"] = "eventual"
        url = f"{self._url(kind)}?{urlencode(params, quote_via=quote, safe='$,')}"
        body = self._get(url, f"find {kind} {attribute}={value!r}", headers=headers)
        out = []
        for obj in body.get("value") or []:
            if kind == "user":
                out.append(delta.user_entry(obj, True))
            else:
                out.append(Entry("group", str(obj["id"]), raw=delta.raw_values(obj),
                                 attrs=delta.target_attrs("group", obj), name=delta.label(obj)))
        return out

    def confirm_gone(self, kind: Kind, external_ids: Sequence[str]) -> set[str]:
        """Of these ids, those a direct lookup proves gone (`gone.py`: only a 404
        ``Request_ResourceNotFound`` does). Never raises: what cannot be proven is left out,
        so the engine holds it instead of deprovisioning it."""
        ids = list(dict.fromkeys(str(i) for i in external_ids if i))
        if not ids:
            return set()
        try:
            return self._call(gone.absent(self._client, self._send_info, kind, ids,
                                          self.config.concurrency), f"confirm_gone {kind}s")
        except ConnectorError as exc:
            log.warning("%s: confirm_gone %ss: %s; nothing confirmed", self.name, kind, exc)
            return set()

    # --- contract: writes -----------------------------------------------------------------

    def create(self, kind: Kind, attrs: Attrs) -> Entry:
        label = str(attrs.get("userPrincipalName" if kind == "user" else "displayName") or "?")
        try:
            payload = delta.create_payload(kind, attrs)
        except ValueError as exc:
            raise Rejected(f"create {kind} {label}: {exc}", connector=self.name) from None
        obj = self._call(self._send("POST", self._url(kind), payload), f"create {kind} {label}")
        if not isinstance(obj, dict) or not obj.get("id"):
            raise Rejected(f"create {kind} {label}: no id in Graph's answer", connector=self.name)
        return Entry(kind, str(obj["id"]), raw=delta.raw_values(obj),
                     attrs=delta.target_attrs(kind, obj), name=delta.label(obj) or label)

    def update(self, kind: Kind, external_id: str, changes: Mapping[str, Value]) -> None:
        """PATCH with exactly the changed properties (None -> JSON null)."""
        if not changes:
            return
        what = f"update {kind} {external_id}"
        try:
            payload = delta.patch_payload(kind, changes)
        except ValueError as exc:
            raise Rejected(f"{what}: {exc}", connector=self.name) from None
        self._call(self._send("PATCH", self._url(kind, external_id), payload), what)

    def set_members(self, external_id: str, add: Sequence[str], remove: Sequence[str]) -> None:
        self._call(self._members(external_id, list(add), list(remove)),
                   f"set members of group {external_id}")

    def deactivate(self, kind: Kind, external_id: str) -> None:
        """Users: ``accountEnabled = false``. Groups have no disabled state in Graph: the
        engine deprovisions a group by removing the members it manages, nothing to do here."""
        if kind == "user":
            self.update("user", external_id, {"accountEnabled": False})

    def delete(self, kind: Kind, external_id: str) -> None:
        """DELETE; a user goes to deletedItems (restorable for 30 days), a security group is
        gone. 404 counts as success: the object is not there, which is what we wanted."""
        what = f"delete {kind} {external_id}"
        try:
            self._call(self._send("DELETE", self._url(kind, external_id)), what)
        except Rejected as exc:
            if getattr(exc, "status", None) != 404:
                raise

    # --- internals: the loop and the SDK --------------------------------------------------

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
            raise self._translate(exc, what) from None

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

    async def _first_page(self, kind: Kind, select: Sequence[str]) -> dict[str, Any]:
        """The first page of a full round, built by the SDK's delta request builder
        (``/users/delta()?$select=...``)."""
        from kiota_abstractions.base_request_configuration import RequestConfiguration

        with warnings.catch_warnings():  # the builders are imported on first use
            warnings.simplefilter("ignore", DeprecationWarning)
            root = self._client.users if kind == "user" else self._client.groups
            builder = root.delta
        params = builder.DeltaRequestBuilderGetQueryParameters(select=list(select))
        config = RequestConfiguration(query_parameters=params)
        config.headers.add("Prefer", f"odata.maxpagesize={self.config.page_size}")
        body = await self._send_info(builder.to_get_request_information(config))
        if not isinstance(body, dict):
            raise Retriable(f"delta {kind}s: empty or non-JSON answer", connector=self.name)
        return body

    async def _members(self, gid: str, add: list[str], remove: list[str]) -> None:
        """Adds through ``members@odata.bind`` in chunks of 20; a chunk refused because one
        member is already there is redone one ``members/$ref`` at a time (an existing member
        is then success). Removes one ``DELETE members/{id}/$ref`` each; 404 = not a member."""
        group = self._url("group", gid)
        sem = asyncio.Semaphore(self.config.concurrency)

        def ref(uid: str) -> str:
            return f"{self.config.endpoint}/directoryObjects/{quote(uid, safe='')}"

        async def one(coro: Awaitable[Any], ok_status: int | None, ok_text: str) -> None:
            async with sem:
                try:
                    await coro
                except Exception as exc:
                    message = _odata(exc)[1]
                    status = getattr(exc, "response_status_code", None)
                    if status == ok_status or (ok_text and ok_text in message.lower()):
                        return
                    raise

        for i in range(0, len(add), BIND_CHUNK):
            chunk = add[i:i + BIND_CHUNK]
            try:
                await self._send("PATCH", group, {"members@odata.bind": [ref(u) for u in chunk]})
            except Exception as exc:
                if "already exist" not in _odata(exc)[1].lower():
                    raise
                await asyncio.gather(*(
                    one(self._send("POST", f"{group}/members/$ref", {"@odata.id": ref(u)}),
                        None, "already exist") for u in chunk))
        await asyncio.gather(*(
            one(self._send("DELETE", f"{group}/members/{quote(u, safe='')}/$ref"), 404, "")
            for u in remove))

    # --- errors ---------------------------------------------------------------------------

    def _translate(self, exc: BaseException, what: str) -> ConnectorError:
        """An SDK, HTTP or credential error as a syncd error, without secrets."""
        import httpx

        status = getattr(exc, "response_status_code", None)
        if status is None:
            if isinstance(exc, httpx.TransportError):
                text = f"{what}: {type(exc).__name__} talking to {self.config.endpoint}"
                if self._opening:
                    return Fatal(text, connector=self.name)
                if isinstance(exc, httpx.TimeoutException) and not isinstance(
                        exc, httpx.ConnectTimeout):
                    return Retriable(text, connector=self.name)  # slow, not gone
                # refused, reset, connect timeout: no answer at all (a few: Graph is down)
                return Unreachable(text, connector=self.name)
            if type(exc).__module__.startswith("azure."):  # only the credential uses azure-core
                first = (str(exc).strip().splitlines() or [""])[0]
                return Fatal(f"{what}: could not get a token for {self.config.scope} from "
                             f"{self.config.authority_host}: {type(exc).__name__}: {first}",
                             connector=self.name)
            if isinstance(exc, ValueError):  # malformed JSON from the server
                return Retriable(f"{what}: unreadable answer ({type(exc).__name__})",
                                 connector=self.name)
            return Fatal(f"{what}: {type(exc).__name__}: {exc}", connector=self.name)
        code, message = _odata(exc)
        detail = f"HTTP {status}" + (f" {code}" if code else "") + (
            f": {message}" if message else "")
        headers = getattr(exc, "response_headers", None) or {}
        if status in (401, 403):
            return Fatal(f"{what}: not authorized ({detail}); check the app registration's "
                         f"Graph application permissions and admin consent", connector=self.name)
        if delta.is_resync(status, code):
            return _Gone(f"{what}: {detail}", connector=self.name)
        if status in THROTTLED or status >= 500:
            return Retriable(f"{what}: {detail}", connector=self.name,
                             retry_after=parse_retry_after(headers.get("Retry-After")
                                                           or headers.get("retry-after")))
        if status == 400 and delta.DUPLICATE in message.lower():
            err: Rejected = Conflict(f"{what}: {detail}", connector=self.name)
        else:
            err = Rejected(f"{what}: {detail}", connector=self.name)
        err.status = status  # type: ignore[attr-defined]
        return err


def _odata(exc: BaseException) -> tuple[str, str]:
    """(code, message) of an ODataError; ("", "") for anything else."""
    main = getattr(exc, "error", None)
    code = str(getattr(main, "code", "") or "")
    message = str(getattr(main, "message", "") or getattr(exc, "message", "") or "")
    return code, message


def _gate(owner: GraphConnector) -> Any:
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
