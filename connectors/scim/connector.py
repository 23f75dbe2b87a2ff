"""SCIM 2.0 target connector: scim2-client over one keep-alive `httpx.Client`.

Payloads are built from canonical attributes by `connectors.scim.paths` and validated with the
scim2-models classes scim2-client builds from the server's own /Schemas, so a path the server
does not publish is refused before any request goes out.

Concurrency: the engine's apply pool calls one connector from `concurrency` threads. After
`open()` the scim2-client object is only read (its provider is set once during discovery) and
`httpx.Client` is thread-safe with a pool of `concurrency` keep-alive connections; the only
mutable state, the soft-delete probe result, is written under a lock.

scim2-client 0.13 ships its network engine for the ``httpx2`` fork only; `_HttpxScimClient`
is the same ~15 lines for httpx (the project pins httpx 0.28) and is also where retries live,
because 429/503 and their Retry-After are transport matters scim2-client does not handle.

Dialect differences measured between scim2-server 0.8.3 and django-scim2-server 1.1.0:

 - Schemas: django publishes only userName, name.givenName/familyName, emails (value and
   primary, no type), active, externalId; no enterprise extension in its ResourceTypes (a
   payload carrying it is refused with 400). Unlisted attributes are silently dropped, so we
   derive ``capabilities.unsupported_attributes`` from /Schemas and drop them ourselves.
 - Typed emails: scim2-server answers 400 noTarget to ``replace emails[type eq "work"].value``
   when no work address exists; ``remove emails[type eq "work"]`` + ``add emails [...]`` works
   on both. django keeps one address (the first in a create) and ignores filtered removes,
   so on servers without a ``type`` sub-attribute we replace/remove ``emails`` as a whole.
 - Removing an attribute: django stores ``""`` (``name.givenName`` reads back empty), we
   read empty strings as absent. scim2-server omits ``active`` unless set; django defaults
   it to true.
 - DELETE of a user only deactivates on django (GET still answers 200, a second DELETE 204),
   so ``delete_is_soft`` is learnt by a GET after the first user delete. scim2-server deletes
   (second DELETE: 404, which we count as success). Groups are deleted on both.
 - django answers PATCH with 200 + resource, scim2-server with 204; no ETags, no Location
   header and no /Bulk on django; its filter maxResults is 200. Discovery endpoints of
   scim2-server need no token; auth is therefore probed on /Users.
 - Filters: both unescape ``\\"`` and ``\\\\`` in string literals; django supports no complex
   ``emails[type eq ..]`` filter, so typed values are found with ``emails.value eq`` and the
   type is checked on the results.
"""

from __future__ import annotations

import dataclasses
import email.utils
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import httpx
from pydantic import ValidationError
from scim2_client.client import BaseSyncSCIMClient
from scim2_client.errors import SCIMClientException
from scim2_models import (
    Context,
    ListResponse,
    PatchOp,
    ResourceType,
    Schema,
    SCIMException,
    ScimProvider,
    SearchRequest,
    ServiceProviderConfig,
)

from connectors.scim import paths
from connectors.scim.config import ScimConfig
from syncd.connector import Capabilities, ConnectorConfig
from syncd.errors import Conflict, Fatal, Rejected, Retriable
from syncd.model import Attrs, Batch, Entry, Kind, Value

RETRY_AFTER_CAP = 60.0
BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
#: Statuses that say "not processed, try later": safe to resend, even a POST.
_BUSY = frozenset({429, 503})
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_ENDPOINT = paths.ENDPOINT


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


class _HttpxScimClient(BaseSyncSCIMClient):
    """scim2-client's sync engine on httpx; every request goes through `send`."""

    def __init__(self, client: httpx.Client, send: Callable[..., httpx.Response]) -> None:
        super().__init__(check_response_content_type=False)
        self.client = client
        self._send_fn = send

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
        return self._send_fn(method, url, **kwargs)


class ScimConnector:
    """A SCIM 2.0 service provider as a sync target (and listing source)."""

    config_model: ClassVar[type[ConnectorConfig]] = ScimConfig

    def __init__(
        self, name: str, config: ScimConfig, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.name = name
        self.config = config
        self._transport = transport  # test seam: fault injection in front of a real server
        self._http: httpx.Client | None = None
        self._scim: _HttpxScimClient | None = None
        self._caps = Capabilities(write=True)
        self._typed: frozenset[str] = frozenset(paths.TYPED)
        self._unsupported: dict[Kind, frozenset[str]] = {"user": frozenset(), "group": frozenset()}
        self._page_size = config.page_size
        self._soft_checked = False
        self._lock = threading.Lock()
        self._opening = False
        #: overridable for tests; the only place the connector waits
        self.sleep: Callable[[float], None] = time.sleep

    # --- contract: lifecycle --------------------------------------------------------------

    @staticmethod
    def known_paths(kind: Kind) -> frozenset[str]:
        """Canonical paths this connector maps for `kind` (config validation uses it)."""
        return paths.known_paths(kind)

    @staticmethod
    def check_paths(kind: Kind, names: Sequence[str]) -> None:
        """Raise `paths.UnknownPathError` (a ValueError) naming the first unknown path."""
        paths.check_paths(kind, names)

    @property
    def capabilities(self) -> Capabilities:
        return self._caps

    def open(self) -> None:
        cfg = self.config
        verify: ssl.SSLContext | bool = cfg.tls_verify
        if cfg.tls_verify and cfg.ca_file:
            verify = ssl.create_default_context(cafile=cfg.ca_file)
        headers = {"Accept": "application/scim+json"}
        if cfg.token is not None:
            headers["Authorization"] = f"Bearer {cfg.token.get_secret_value()}"
        limits = httpx.Limits(
            max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency
        )
        self._http = httpx.Client(
            base_url=cfg.url + "/",
            headers=headers,
            timeout=cfg.timeout,
            verify=verify,
            limits=limits,
            transport=self._transport,
        )
        self._scim = _HttpxScimClient(self._http, self._request)
        self._opening = True
        try:
            self._discover()
            # Discovery endpoints may be public (scim2-server): prove the token on /Users.
            self._request("GET", "Users", params={"count": "1"})
        except Fatal:
            self.close()
            raise
        except Rejected as exc:  # discovery answered but made no sense: the flow cannot go on
            self.close()
            raise Fatal(str(exc), connector=self.name) from None
        finally:
            self._opening = False

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
        self._http = None
        self._scim = None

    # --- contract: reads ------------------------------------------------------------------

    def read(
        self, kind: Kind, cursor: str | None = None, attributes: Sequence[str] | None = None
    ) -> Iterator[Batch]:
        """Full listing in pages of `page_size` (startIndex/count); `cursor` is ignored."""
        model = self._model(kind)
        start = 1
        while True:
            query: SearchRequest[Any] = SearchRequest(start_index=start, count=self._page_size)
            with self._errors(f"list {kind}s"):
                page = self._client.query(model, query_parameters=query)
            assert isinstance(page, ListResponse)
            entries = tuple(self._entry(kind, r) for r in page.resources or [])
            start += len(entries)
            total = page.total_results or 0
            last = not entries or start > total
            yield Batch(kind=kind, entries=entries, full=True)
            if last:
                return

    def find(self, kind: Kind, attribute: str, value: str) -> list[Entry]:
        expr, recheck = self._path_call(kind, lambda: paths.filter_for(kind, attribute, value))
        query = SearchRequest(filter=expr, count=50)
        with self._errors(f"find {kind} {attribute}={value!r}"):
            page = self._client.query(self._model(kind), query_parameters=query)
        assert isinstance(page, ListResponse)
        found = [self._entry(kind, r) for r in page.resources or []]
        if recheck:
            found = [e for e in found if e.attrs.get(attribute) == value]
        return found

    # --- contract: writes -----------------------------------------------------------------

    def create(self, kind: Kind, attrs: Attrs) -> Entry:
        kept = self._supported(kind, attrs)
        label = str(attrs.get("userName" if kind == "user" else "displayName") or "?")
        payload = self._path_call(kind, lambda: paths.to_resource(kind, kept, self._typed))
        model = self._model(kind)
        with self._errors(f"create {kind} {label}"):
            resource = model.model_validate(payload, scim_ctx=Context.RESOURCE_CREATION_REQUEST)
            created = self._client.create(resource)
        return self._entry(kind, created)

    def update(self, kind: Kind, external_id: str, changes: Mapping[str, Value]) -> None:
        kept = self._supported(kind, changes)
        if not kept:
            return
        model = self._model(kind)
        label = f"update {kind} {external_id}"
        if not self._caps.patch:
            self._put(kind, external_id, kept)
            return
        ops = self._path_call(kind, lambda: paths.patch_operations(kind, kept, self._typed))
        with self._errors(label):
            patch = PatchOp[model].model_validate(  # type: ignore[valid-type]
                {"schemas": [paths.URN_PATCH], "Operations": ops},
                scim_ctx=Context.RESOURCE_PATCH_REQUEST,
            )
            self._client.modify(model, external_id, patch)

    def set_members(self, external_id: str, add: Sequence[str], remove: Sequence[str]) -> None:
        """PATCH in chunks of `members_per_patch` values: adds first, then removes."""
        model = self._model("group")
        n = self.config.members_per_patch
        ops: list[dict[str, Any]] = []
        for i in range(0, len(add), n):
            chunk = [{"value": m} for m in add[i : i + n]]
            ops.append({"op": "add", "path": "members", "value": chunk})
        # One op per removed member: `members[value eq ..]` is the form both servers accept.
        removes = [{"op": "remove", "path": f"members[value eq {paths.escape(m)}]"} for m in remove]
        batches = [[op] for op in ops] + [removes[i : i + n] for i in range(0, len(removes), n)]
        for batch in batches:
            with self._errors(f"set members of group {external_id}"):
                patch = PatchOp[model].model_validate(  # type: ignore[valid-type]
                    {"schemas": [paths.URN_PATCH], "Operations": batch},
                    scim_ctx=Context.RESOURCE_PATCH_REQUEST,
                )
                self._client.modify(model, external_id, patch)

    def deactivate(self, kind: Kind, external_id: str) -> None:
        if kind != "user":
            raise Rejected(f"cannot deactivate a SCIM {kind}", connector=self.name)
        self.update(kind, external_id, {"active": False})

    def delete(self, kind: Kind, external_id: str) -> None:
        """DELETE; 404 means already gone, which is what we wanted."""
        try:
            with self._errors(f"delete {kind} {external_id}"):
                self._client.delete(self._model(kind), external_id)
        except Rejected as exc:
            if getattr(exc, "status", None) != 404:
                raise
            return
        if kind == "user" and not self._soft_checked:
            self._probe_soft_delete(external_id)

    # --- internals ------------------------------------------------------------------------

    @property
    def _client(self) -> _HttpxScimClient:
        if self._scim is None:
            raise Fatal("connector is not open", connector=self.name)
        return self._scim

    def _model(self, kind: Kind) -> Any:
        model = self._client.get_resource_model(_ENDPOINT[kind])
        if model is None:
            raise Fatal(f"server offers no {_ENDPOINT[kind]} resource", connector=self.name)
        return model

    def _path_call(self, kind: Kind, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except paths.UnknownPathError as exc:
            raise Rejected(str(exc), connector=self.name) from None

    def _supported(self, kind: Kind, attrs: Mapping[str, Value]) -> dict[str, Value]:
        """Refuse unknown paths; drop what this server cannot store (capabilities say so)."""
        self._path_call(kind, lambda: paths.check_paths(kind, attrs))
        drop = self._unsupported[kind]
        return {k: v for k, v in attrs.items() if k not in drop}

    def _entry(self, kind: Kind, resource: Any) -> Entry:
        data = resource if isinstance(resource, dict) else resource.model_dump()
        attrs = paths.from_resource(kind, data)
        members = None
        if kind == "group":
            members = frozenset(
                str(m["value"]) for m in data.get("members") or [] if m.get("value")
            )
        name = str(attrs.get("userName" if kind == "user" else "displayName", ""))
        return Entry(
            kind=kind, external_id=str(data["id"]), attrs=attrs, members=members, name=name
        )

    def _put(self, kind: Kind, external_id: str, changes: Mapping[str, Value]) -> None:
        """GET + PUT for servers without PATCH (the If-Match is scim2-client's business)."""
        model = self._model(kind)
        with self._errors(f"update {kind} {external_id}"):
            current = self._client.query(model, external_id, check_response_payload=False)
            assert isinstance(current, dict)
            body = paths.apply_changes(kind, current, changes, self._typed)
            resource = model.model_validate(body, scim_ctx=Context.RESOURCE_REPLACEMENT_REQUEST)
            resource.id = external_id
            self._client.replace(resource)

    def _probe_soft_delete(self, external_id: str) -> None:
        """One GET after the first user delete: still there means DELETE only deactivates."""
        r = self._request("GET", f"Users/{external_id}")
        with self._lock:
            self._soft_checked = True
            if r.status_code == 200 and not self._caps.delete_is_soft:
                self._caps = dataclasses.replace(self._caps, delete_is_soft=True)

    def _discover(self) -> None:
        scim = self._client
        with self._errors("discovery"):
            rts = scim.query(ResourceType, raise_scim_errors=True)
            schemas = scim.query(Schema, raise_scim_errors=True)
            spc = scim.query(ServiceProviderConfig, raise_scim_errors=True)
        assert isinstance(rts, ListResponse) and isinstance(schemas, ListResponse)
        assert isinstance(spc, ServiceProviderConfig)
        try:
            scim.provider = ScimProvider.from_discovery(
                schemas.resources or [], rts.resources or [], config=spc
            )
        except Exception as exc:  # a server describing itself incoherently
            raise Fatal(f"SCIM discovery is incoherent: {exc}", connector=self.name) from None
        self._unsupported, self._typed = paths.server_support(
            rts.resources or [], schemas.resources or []
        )
        bulk = spc.bulk
        bulk_ok = bool(bulk and bulk.supported) and self.config.bulk == "auto"
        max_results = spc.filter.max_results if spc.filter and spc.filter.max_results else None
        if max_results:
            self._page_size = min(self.config.page_size, max_results)
        self._caps = Capabilities(
            read=True,
            write=True,
            patch=bool(spc.patch and spc.patch.supported),
            bulk=bulk_ok,
            bulk_max_operations=(bulk.max_operations or 0) if bulk_ok and bulk else 0,
            bulk_max_payload=(bulk.max_payload_size or 0) if bulk_ok and bulk else 0,
            unsupported_attributes={str(k): v for k, v in self._unsupported.items()},
        )

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Translate scim2-client/models errors into the syncd error tree."""
        try:
            yield
        except SCIMException as exc:
            status = int(getattr(exc, "status", 400) or 400)
            scim_type = getattr(exc, "scim_type", "") or ""
            if status == 409:
                raise Conflict(
                    f"{what}: already exists ({exc.detail})", connector=self.name
                ) from None
            if status == 404:
                err = Rejected(f"{what}: gone (404)", connector=self.name)
            elif status >= 500:
                raise Retriable(f"{what}: HTTP {status}", connector=self.name) from None
            else:
                detail = f"{scim_type}: {exc.detail}" if scim_type else exc.detail
                err = Rejected(f"{what}: HTTP {status} {detail}", connector=self.name)
            err.status = status  # type: ignore[attr-defined]
            raise err from None
        except ValidationError as exc:
            errors = exc.errors()
            msg = f"{errors[0]['loc']}: {errors[0]['msg']}" if errors else str(exc)
            raise Rejected(f"{what}: invalid payload {msg}", connector=self.name) from None
        except SCIMClientException as exc:
            raise Rejected(f"{what}: unexpected response: {exc}", connector=self.name) from None

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One HTTP request with bounded retries; auth failures are Fatal.

        Resent: 429/503 always (the server said it did not process it), other 5xx and
        broken connections only when the request is idempotent or never left this host.
        Exhausted retries raise Retriable carrying the server's Retry-After.
        """
        assert self._http is not None
        retry_after: float | None = None
        reason = ""
        for attempt in range(self.config.max_retries + 1):
            if attempt:
                delay = retry_after if retry_after is not None else _backoff(attempt)
                self.sleep(delay)
            try:
                resp = self._http.request(method, url, **kwargs)
            except _NOT_SENT as exc:
                if self._opening:
                    raise Fatal(
                        f"SCIM server {self.config.url} unreachable: {type(exc).__name__}",
                        connector=self.name,
                    ) from None
                retry_after, reason = None, type(exc).__name__
                continue
            except httpx.TransportError as exc:
                if method == "POST":
                    raise Retriable(
                        f"{method} {url}: {type(exc).__name__}", connector=self.name
                    ) from None
                retry_after, reason = None, type(exc).__name__
                continue
            status = resp.status_code
            if status in (401, 403):
                raise Fatal(f"authentication failed (HTTP {status})", connector=self.name)
            if status in _BUSY or (status >= 500 and status != 501):
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                reason = f"HTTP {status}"
                if status not in _BUSY and method == "POST":
                    break
                continue
            return resp
        if self._opening:
            raise Fatal(f"SCIM server {self.config.url} unavailable: {reason}", connector=self.name)
        raise Retriable(f"{method} {url}: {reason}", connector=self.name, retry_after=retry_after)


def _backoff(attempt: int) -> float:
    """Exponential backoff with full jitter."""
    return random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt))
