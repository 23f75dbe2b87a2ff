"""SCIM 2.0 connector (target, and source for two-way flows) over one keep-alive client.

Payloads are built from canonical attributes by `syncd_connectors.scim.paths` and validated with the
scim2-models classes scim2-client builds from the server's own /Schemas, so a path the server
does not publish is refused before any request goes out. Creates, listings and /Bulk go out
as plain JSON through `syncd_connectors.scim.http` (validating every *response* with pydantic cost
more than the request); member PATCHes too (`members`: adaptive chunks, no blind resend);
other PATCH/PUT/DELETE go through scim2-client.

Module map: `http` (retries, Retry-After, dead target, body bound, counters), `transport`
(client, TLS, unsafe-transport warnings), `discovery` (capabilities), `bulk` (/Bulk bodies,
splitting), `reads` (raw attributes, lastModified cursors), `listing` (ListResponse shape,
completeness of a paged walk), `confirm` (`confirm_gone`), `members` (`set_members`),
`status` (errors), `paths` (attribute table).

Concurrency: the engine's apply pool calls one connector from `concurrency` threads. After
`open()` the scim2-client object is only read, `httpx.Client` is thread-safe with a pool of
`concurrency` keep-alive connections; mutable state (soft-delete probe, incremental support
per kind, counters) is written under locks.

Dialect differences measured between scim2-server 0.8.3 and django-scim2-server 1.1.0:

 - Schemas: django publishes only userName, name.givenName/familyName, emails (value and
   primary, no type), active, externalId; no enterprise extension in its ResourceTypes (a
   payload carrying it is refused with 400). Unlisted attributes are silently dropped, so we
   derive ``capabilities.unsupported_attributes`` from /Schemas and drop them ourselves.
 - Typed emails: see `paths.patch_operations`. Removing an attribute: django stores ``""``;
   we read empty strings as absent. scim2-server omits ``active`` unless set; django: true.
 - DELETE of a user only deactivates on django (GET still answers 200), so
   ``delete_is_soft`` is learnt by a GET after the first user delete.
 - django answers PATCH with 200 + resource, scim2-server with 204; no ETags, no Location
   header, no /Bulk on django; its filter maxResults is 200.
 - /Bulk (scim2-server): maxOperations 1000, maxPayloadSize 1 MiB, checked on the body
   (413 beyond); each operation's outcome carries bulkId, status and location, no resource.
 - ``filter=meta.lastModified ge ".."`` works on scim2-server, 400 invalidFilter on django.
 - Filters: both unescape ``\\"`` and ``\\\\``; django has no complex ``emails[type eq ..]``
   filter, so typed values are found with ``emails.value eq`` and checked on the results.
   Comparison values are JSON strings (RFC 7644 §3.4.2.2, `paths.escape`): scim2-server
   answers 400 invalidFilter for a raw TAB/CR/LF/NUL and decodes every JSON escape; django
   decodes only ``\\"`` and ``\\\\``, so there a value with a control character is not found
   (its create then meets 409 and is refused, never duplicated).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import httpx
from scim2_models import Context, PatchOp

from syncd.connector import Capabilities, ConnectorConfig
from syncd.errors import ConnectorError, Fatal, Rejected, Retriable
from syncd.model import Attrs, Batch, Entry, Kind, Value
from syncd_connectors.scim import bulk, confirm, paths, reads
from syncd_connectors.scim.config import ScimConfig
from syncd_connectors.scim.discovery import PatchLimits, discover
from syncd_connectors.scim.http import (
    DOWN_AFTER,
    HttpxScimClient,
    ScimHttp,
    Stats,
    parse_retry_after,
)
from syncd_connectors.scim.listing import Malformed, page_of, resource_id
from syncd_connectors.scim.members import MemberChange
from syncd_connectors.scim.status import checked_json, detail_of, error_for, scim_errors
from syncd_connectors.scim.transport import build_client, warn_unsafe

__all__ = ["ScimConnector", "parse_retry_after"]
log = logging.getLogger("syncd.connectors.scim")
_ENDPOINT = paths.ENDPOINT
#: A user id no server holds: the token probe's resource (see `open`).
_PROBE_ID = "00000000-5379-6e63-6450-726f62650000"
#: Distinct body shapes remembered as valid; a mapping produces a handful.
_MAX_SHAPES = 1024
#: Resources one `find` asks for: more than one is ambiguous anyway (the engine holds).
_FIND_COUNT = 50


class ScimConnector:
    """A SCIM 2.0 service provider as a sync target and source."""

    config_model: ClassVar[type[ConnectorConfig]] = ScimConfig

    def __init__(
        self, name: str, config: ScimConfig, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.name = name
        self.config = config
        self._transport = transport  # test seam: fault injection in front of a real server
        self._http: ScimHttp | None = None
        self._scim: HttpxScimClient | None = None
        self._caps = Capabilities(write=True)
        self._typed: frozenset[str] = frozenset(paths.TYPED)
        #: (kind, body shape) whose validation returned the body unchanged (`_payload`).
        self._valid_shapes: set[tuple[str, Hashable]] = set()
        self._unsupported: dict[Kind, frozenset[str]] = {"user": frozenset(), "group": frozenset()}
        self._endpoints: dict[Kind, str] = {"user": "/Users", "group": "/Groups"}
        self._page_size = config.page_size
        self._limits = PatchLimits()
        self._soft_checked = False
        self._incremental: dict[Kind, bool] = {}
        self._lock = threading.Lock()
        self._stats = Stats()
        #: overridable for tests; the only places the connector waits or reads the time
        self.sleep: Callable[[float], None] = time.sleep
        self.clock: Callable[[], float] = time.monotonic

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

    @property
    def stats(self) -> dict[str, int]:
        """Counters since construction (requests, retries, http_429, http_503, ...)."""
        return self._stats.snapshot()

    def open(self) -> None:
        cfg = self.config
        warn_unsafe(self.name, cfg)
        self._http = ScimHttp(
            build_client(cfg, self._transport), connector=self.name, url=cfg.url,
            max_retries=cfg.max_retries, sleep=lambda s: self.sleep(s), stats=self._stats,
            clock=lambda: self.clock(), max_response_bytes=cfg.max_response_bytes,
            timeouts_down_after=max(2 * cfg.concurrency, 2 * DOWN_AFTER),
        )  # fmt: skip
        self._scim = HttpxScimClient(self._http)
        self._http.opening = True
        try:
            self._discover()
            # Discovery endpoints may be public (scim2-server): prove the token on /Users —
            # on one id that does not exist (404 when authorised): a listing, even of one,
            # costs some servers a scan of every user (0.35 s at 100k on scim2-server).
            resp = self._http_or_fatal.request("GET", f"{self._endpoints['user']}/{_PROBE_ID}")
            if resp.status_code not in (200, 404):
                raise error_for(resp.status_code, detail_of(resp), "probe", self.name)
        except Fatal:
            self.close()
            raise
        except ConnectorError as exc:  # discovery answered but made no sense
            self.close()
            raise Fatal(str(exc), connector=self.name) from None
        finally:
            if self._http is not None:
                self._http.opening = False

    def close(self) -> None:
        if self._http is not None:
            self._http.client.close()
        self._http = None
        self._scim = None

    # --- contract: reads ------------------------------------------------------------------

    def read(
        self, kind: Kind, cursor: str | None = None, attributes: Sequence[str] | None = None
    ) -> Iterator[Batch]:
        """Pages of `page_size` (startIndex/count); incremental from a ``lastmodified:`` cursor
        when the server filters on meta.lastModified (`syncd_connectors.scim.reads`)."""
        incremental = self._supports_incremental(kind)
        since = reads.parse_cursor(cursor) if incremental else None
        if cursor is not None and since is None:
            log.info("%s: cursor %r is not usable for %ss: full read", self.name, cursor, kind)
        args: dict[str, Any] = {
            "connector": self.name, "kind": kind, "endpoint": self._endpoints[kind],
            "page_size": self._page_size, "entry": lambda r: self._entry(kind, r),
            "overlap": self.config.incremental_overlap,
        }  # fmt: skip
        try:
            yield from reads.listing(self._http_or_fatal, since=since, incremental=incremental,
                                     **args)  # fmt: skip
        except reads.FilterRefused:
            log.info("%s: server refused the lastModified filter: full read", self.name)
            with self._lock:
                self._incremental[kind] = False
            yield from reads.listing(self._http_or_fatal, since=None, incremental=False, **args)

    def _supports_incremental(self, kind: Kind) -> bool:
        """Probed once per kind, on the first read."""
        with self._lock:
            known = self._incremental.get(kind)
        if known is None:
            known = reads.supports_incremental(
                self._http_or_fatal, self._endpoints[kind], self.name
            )
            with self._lock:
                self._incremental[kind] = known
        return known

    def find(self, kind: Kind, attribute: str, value: str) -> list[Entry]:
        expr, recheck = self._path_call(kind, lambda: paths.filter_for(kind, attribute, value))
        what = f"find {kind} {attribute}={value[:100]!r}"
        endpoint = self._endpoints[kind]
        doc = self._get(endpoint, what, params={"filter": expr, "count": str(_FIND_COUNT)})
        try:
            page = page_of(doc, _FIND_COUNT)
        except Malformed as exc:  # not "no match": that once created every group twice
            raise Rejected(f"{what}: malformed listing from GET {endpoint}: {exc}",
                           connector=self.name) from None
        if page.total > len(page.resources):  # one returned of two is no "exactly one"
            raise Rejected(f"{what}: the server announced {page.total} matches and returned "
                           f"{len(page.resources)}: not a lookup to adopt or create on",
                           connector=self.name)
        found = [self._entry(kind, r) for r in page.resources]
        if recheck:
            found = [e for e in found if e.attrs.get(attribute) == value]
        return found

    def confirm_gone(self, kind: Kind, external_ids: Sequence[str]) -> set[str]:
        """Of these ids, those a direct GET answers 404 for (rules in `confirm`)."""
        return confirm.confirm_gone(
            self._http_or_fatal, self._endpoints[kind], external_ids,
            concurrency=self.config.concurrency, connector=self.name,
        )  # fmt: skip

    # --- contract: writes -----------------------------------------------------------------

    def create(self, kind: Kind, attrs: Attrs) -> Entry:
        payload = self._payload(kind, self._supported(kind, attrs))
        resp = self._http_or_fatal.request(
            "POST", self._endpoints[kind], content=bulk.encode(payload), headers=bulk.JSON_HEADERS
        )
        return self._entry(kind, checked_json(resp, self._what(kind, attrs), self.name, (200, 201)))

    def create_many(self, kind: Kind, items: Sequence[Attrs]) -> list[Entry | ConnectorError]:
        """Create through /Bulk: one result per item, in order (errors in their slots).

        Requests respect the server's maxOperations and maxPayloadSize (measured on the
        encoded body) and go out `concurrency` at a time. A 429/503 for a whole request is
        retried per Retry-After, then every slot gets `Retriable`; a request whose response
        was lost is *not* resent (it may have been applied: the next run adopts). Without
        bulk support this is a loop of `create`. `Fatal` (authentication) is raised.
        """
        if not self._caps.bulk:
            out: list[Entry | ConnectorError] = []
            for attrs in items:
                try:
                    out.append(self.create(kind, attrs))
                except Fatal:
                    raise
                except ConnectorError as exc:
                    out.append(exc)
            return out
        return bulk.BulkCreate(
            http=self._http_or_fatal, stats=self._stats, connector=self.name, kind=kind,
            endpoint=self._endpoints[kind],
            payload=lambda a: self._payload(kind, self._supported(kind, a)),
            create=lambda a: self.create(kind, a), entry=lambda r: self._entry(kind, r),
            max_operations=self._caps.bulk_max_operations,
            max_payload=self._caps.bulk_max_payload, concurrency=self.config.concurrency,
        ).run(items)  # fmt: skip

    def update(self, kind: Kind, external_id: str, changes: Mapping[str, Value]) -> None:
        kept = self._supported(kind, changes)
        if not kept:
            return
        if not self._caps.patch:
            self._put(kind, external_id, kept)
            return
        ops = self._path_call(kind, lambda: paths.patch_operations(kind, kept, self._typed))
        self._patch(kind, external_id, ops, f"update {kind} {external_id}")

    def set_members(self, external_id: str, add: Sequence[str], remove: Sequence[str]) -> None:
        """All of it in one call: PATCHes whose size adapts to the server's answers, never a
        blind resend of one that may have been applied (`syncd_connectors.scim.members`). An error
        raised after part of it was applied carries ``members_done = (added, removed)``."""
        if not add and not remove:
            return
        MemberChange(
            http=self._http_or_fatal, endpoint=self._endpoints["group"], group=external_id,
            add=list(add), remove=list(remove), initial=self.config.members_per_patch,
            timeout=self.config.timeout, limits=self._limits, connector=self.name,
            sleep=lambda s: self.sleep(s), clock=lambda: self.clock(),
        ).run()  # fmt: skip

    def deactivate(self, kind: Kind, external_id: str) -> None:
        if kind != "user":
            raise Rejected(f"cannot deactivate a SCIM {kind}", connector=self.name)
        self.update(kind, external_id, {"active": False})

    def delete(self, kind: Kind, external_id: str) -> None:
        """DELETE; 404 means already gone, which is what we wanted."""
        try:
            with scim_errors(f"delete {kind} {external_id}", self.name):
                self._client.delete(self._model(kind), external_id)
        except Rejected as exc:
            if getattr(exc, "status", None) != 404:
                raise
            return
        if kind == "user" and not self._soft_checked:
            self._probe_soft_delete(external_id)

    # --- internals ------------------------------------------------------------------------

    @property
    def _client(self) -> HttpxScimClient:
        if self._scim is None:
            raise Fatal("connector is not open", connector=self.name)
        return self._scim

    @property
    def _http_or_fatal(self) -> ScimHttp:
        if self._http is None:
            raise Fatal("connector is not open", connector=self.name)
        return self._http

    def _get(self, path: str, what: str, **kwargs: Any) -> Any:
        return checked_json(self._http_or_fatal.request("GET", path, **kwargs), what, self.name)

    def _model(self, kind: Kind) -> Any:
        model = self._client.get_resource_model(_ENDPOINT[kind])
        if model is None:
            raise Fatal(f"server offers no {_ENDPOINT[kind]} resource", connector=self.name)
        return model

    @staticmethod
    def _what(kind: Kind, attrs: Attrs) -> str:
        return f"create {kind} {attrs.get('userName' if kind == 'user' else 'displayName')}"

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

    def _payload(self, kind: Kind, kept: Mapping[str, Value]) -> dict[str, Any]:
        """A creation body, validated against the server's published schema.

        Validating with scim2-models costs ~0.25 ms per body — a minute of CPU for 100k
        creates — and for the bodies a mapping produces its outcome depends on the body's
        *shape* (keys, value types, empty or not), not on the values. So once a shape came
        back from validation unchanged, later bodies of that shape are sent as built. The
        server still validates every body; a value it refuses fails that object alone."""
        payload = self._path_call(kind, lambda: paths.to_resource(kind, kept, self._typed))
        key = (kind, paths.shape(payload))
        if key in self._valid_shapes:
            return payload
        with scim_errors(self._what(kind, kept), self.name):
            model = self._model(kind)
            resource = model.model_validate(payload, scim_ctx=Context.RESOURCE_CREATION_REQUEST)
            dumped: dict[str, Any] = resource.model_dump(
                scim_ctx=Context.RESOURCE_CREATION_REQUEST
            )
        if dumped == payload and len(self._valid_shapes) < _MAX_SHAPES:
            self._valid_shapes.add(key)
        return dumped

    def _entry(self, kind: Kind, resource: Any) -> Entry:
        """An entry from a server's resource; `Rejected` (never a KeyError/AttributeError)
        when the resource has no id or an attribute of another JSON type than SCIM's."""
        data = resource if isinstance(resource, dict) else resource.model_dump()
        rid = resource_id(data) if isinstance(data, dict) else None
        if rid is None:
            raise Rejected(f"the server answered a {kind} without an id", connector=self.name)
        try:
            attrs = paths.from_resource(kind, data)
        except (AttributeError, TypeError, ValueError, KeyError) as exc:
            raise Rejected(f"{kind} {rid[:80]}: unreadable resource ({type(exc).__name__}: "
                           f"{str(exc)[:200]})", connector=self.name) from None
        members = None
        if kind == "group":
            listed = data.get("members")
            members = frozenset(
                str(m["value"])
                for m in (listed if isinstance(listed, list) else [])
                if isinstance(m, dict) and m.get("value")
            )
        return Entry(
            kind=kind, external_id=rid, raw=reads.raw_attributes(attrs, rid), attrs=attrs,
            members=members, modified=reads.modified(data),
            name=str(attrs.get("userName" if kind == "user" else "displayName", "")),
        )  # fmt: skip

    def _patch(self, kind: Kind, external_id: str, ops: list[dict[str, Any]], what: str) -> None:
        model = self._model(kind)
        with scim_errors(what, self.name):
            patch = PatchOp[model].model_validate(  # type: ignore[valid-type]
                {"schemas": [paths.URN_PATCH], "Operations": ops},
                scim_ctx=Context.RESOURCE_PATCH_REQUEST,
            )
            self._client.modify(model, external_id, patch)

    def _put(self, kind: Kind, external_id: str, changes: Mapping[str, Value]) -> None:
        """GET + PUT for servers without PATCH (the If-Match is scim2-client's business)."""
        model = self._model(kind)
        with scim_errors(f"update {kind} {external_id}", self.name):
            current = self._client.query(model, external_id, check_response_payload=False)
            if not isinstance(current, dict):
                raise Rejected(f"update {kind} {external_id}: GET answered no JSON object",
                               connector=self.name)
            body = paths.apply_changes(kind, current, changes, self._typed)
            resource = model.model_validate(body, scim_ctx=Context.RESOURCE_REPLACEMENT_REQUEST)
            resource.id = external_id
            self._client.replace(resource)

    def _probe_soft_delete(self, external_id: str) -> None:
        """One GET after the first user delete: still there means DELETE only deactivates."""
        try:
            r = self._http_or_fatal.request("GET", f"{self._endpoints['user']}/{external_id}")
        except Retriable:  # the delete itself succeeded: probe again after the next one
            return
        with self._lock:
            self._soft_checked = True
            if r.status_code == 200 and not self._caps.delete_is_soft:
                self._caps = dataclasses.replace(self._caps, delete_is_soft=True)

    def _discover(self) -> None:
        found = discover(self._client, self.config, self.name)
        self._valid_shapes.clear()  # the schema may differ now
        self._unsupported, self._typed = found.unsupported, found.typed
        self._endpoints, self._page_size, self._caps, self._limits = (
            found.endpoints, found.page_size, found.caps, found.limits,
        )  # fmt: skip
