"""One SCIM connector's session: the client, what discovery learnt, resources <-> entries.

Why a module of its own: reads (`connector.py`) and writes (`writes.py`) share this state and
these translations: the open client (`http.ScimHttp` for plain JSON, scim2-client for the
rest), what `discovery` found (endpoints, capabilities, the attributes this server cannot
store, PATCH limits), the creation bodies validated against the server's published schema
(`_payload`), and entries made from the server's resources (`_entry`).

Concurrency: the engine's apply pool calls one connector from `concurrency` threads. The
scim2-client object is built once under the lock (on the first write that needs it), then
only read; `httpx.Client` is thread-safe with a pool of `concurrency` keep-alive connections;
mutable state (soft-delete probe, incremental support per kind, counters) is written under
locks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import httpx

from syncd.connector import Capabilities
from syncd.errors import ConnectorError, Fatal, Rejected
from syncd.model import Attrs, Entry, Kind, Value
from syncd_connectors.scim import declarations, paths, reads, schemas
from syncd_connectors.scim.config import ScimConfig
from syncd_connectors.scim.discovery import Documents, PatchLimits, discover, page_size
from syncd_connectors.scim.http import DOWN_AFTER, ScimHttp, Stats
from syncd_connectors.scim.listing import resource_id
from syncd_connectors.scim.status import checked_json, detail_of, error_for, scim_errors
from syncd_connectors.scim.transport import build_client, warn_unsafe

if TYPE_CHECKING:
    from syncd_connectors.scim.client import HttpxScimClient

_ENDPOINT = schemas.ENDPOINT
#: A user id no server holds: the token probe's resource (see `open`).
_PROBE_ID = "00000000-5379-6e63-6450-726f62650000"
#: Distinct body shapes remembered as valid; a mapping produces a handful.
_MAX_SHAPES = 1024


class ScimSession:
    """The client, discovery's findings and the resource translations (module docstring)."""

    def __init__(
        self, name: str, config: ScimConfig, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.name = name
        self.config = config
        self._transport = transport  # test seam: fault injection in front of a real server
        self._http: ScimHttp | None = None
        #: scim2-client with the server's classes: built on the first write that needs it
        #: (`client`), from the documents discovery kept
        self._scim: HttpxScimClient | None = None
        self._documents: Documents | None = None
        self._caps = Capabilities(write=True)
        #: what the server declares per kind (RFC 7643's standard until discovery)
        self._declared: dict[Kind, schemas.Declared] = {
            k: declarations.standard(k) for k in _ENDPOINT}
        #: (kind, body shape) whose validation returned the body unchanged (`_payload`).
        self._valid_shapes: set[tuple[str, Hashable]] = set()
        self._unsupported: dict[Kind, frozenset[str]] = {"user": frozenset(), "group": frozenset()}
        self._endpoints: dict[Kind, str] = {"user": "/Users", "group": "/Groups"}
        self._page_size = page_size(config.page_size, None)
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
        """The standard (RFC 7643) canonical paths of `kind`; a server may declare more."""
        return paths.known_paths(kind)

    @staticmethod
    def check_paths(kind: Kind, names: Sequence[str]) -> None:
        """Without a server (config validation): raise `schemas.UnknownPathError` (a
        ValueError) naming the first path RFC 7643 does not declare (with a did-you-mean);
        attributes of extensions other than the enterprise one are checked online."""
        paths.check_paths(declarations.standard(kind), names)

    @staticmethod
    def canonical_path(kind: Kind, path: str) -> str:
        """The one canonical name of a path (config loading rewrites mappings with it): the
        enterprise extension's full URN spelling becomes ``enterprise.attr``."""
        return schemas.canonical_spelling(path)

    def path_problems(self, kind: Kind, names: Sequence[str]) -> dict[str, str]:
        """Of these canonical paths, those this server cannot store (its /Schemas does not
        declare them, or spells them otherwise), each with why and any did-you-mean;
        `syncd check` and ``syncd validate --online`` report them, runs drop them."""
        decl = self._declared[kind]
        found = {n: decl.problem(n) for n in names}
        return {n: why for n, why in found.items() if why is not None}

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
        self._documents = None

    # --- shared by reads and writes -------------------------------------------------------

    @property
    def _client(self) -> HttpxScimClient:
        """scim2-client with this server's classes, built on first use (`client`)."""
        http, documents = self._http_or_fatal, self._documents
        if documents is None:
            raise Fatal("connector is not open", connector=self.name)
        with self._lock:
            if self._scim is None:
                from syncd_connectors.scim.client import build

                self._scim = build(http, documents, self.name)
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
        """`fn()`; a path the server does not declare or a value not of the declared type
        is `Rejected` (that entry is skipped), the message naming path and value."""
        try:
            return fn()
        except (schemas.UnknownPathError, paths.PathValueError) as exc:
            raise Rejected(f"{kind} attribute {exc}", connector=self.name) from None

    def _supported(self, kind: Kind, attrs: Mapping[str, Value]) -> dict[str, Value]:
        """Drop what this server cannot store: paths its /Schemas does not declare (the
        engine warns about them, from ``capabilities.declares``)."""
        decl = self._declared[kind]
        return {k: v for k, v in attrs.items() if decl.problem(k) is None}

    def _payload(self, kind: Kind, kept: Mapping[str, Value]) -> dict[str, Any]:
        """A creation body, validated against the server's published schema.

        Validating with scim2-models costs ~0.25 ms per body — a minute of CPU for 100k
        creates — and for the bodies a mapping produces its outcome depends on the body's
        *shape* (keys, value types, empty or not), not on the values. So once a shape came
        back from validation unchanged, later bodies of that shape are sent as built. The
        server still validates every body; a value it refuses fails that object alone."""
        decl = self._declared[kind]
        payload = self._path_call(kind, lambda: paths.to_resource(decl, kept))
        key = (kind, paths.shape(payload))
        if key in self._valid_shapes:
            return payload
        from scim2_models import Context  # (`client`: only writes need scim2-models)

        model = self._model(kind)
        with scim_errors(self._what(kind, kept), self.name):
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
            attrs = paths.from_resource(self._declared[kind], data)
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

    def probe(self) -> dict[str, object]:
        """What `syncd check` shows about this SCIM server: what its own description
        (/ServiceProviderConfig, /Schemas, /ResourceTypes) made of it, as syncd uses it."""
        caps = self._caps
        return {
            "endpoints": ", ".join(f"{k}s {v}" for k, v in sorted(self._endpoints.items())),
            "bulk": f"yes, {caps.bulk_max_operations} operations per request"
                    if caps.bulk else "no",
            "patch": "yes" if caps.patch else "no (updates are PUT)",
            "etag": "yes (members replaced with If-Match)" if self._limits.etag else "no",
            "page size": self._page_size,
            "delete": "deactivates only (soft delete)" if caps.delete_is_soft else "removes",
            "schemas": "; ".join(f"{k}s: {', '.join(d.schemas)}" + (
                " (standard: not published)" if d.standard else "")
                for k, d in sorted(self._declared.items())),
            "attributes not kept": "; ".join(
                f"{k}s: {_some(v)}" for k, v in sorted(self._unsupported.items())
                if v) or "none",
        }

    def _discover(self) -> None:
        found = discover(self._http_or_fatal, self.config, self.name)
        self._valid_shapes.clear()  # the schema may differ now
        self._scim, self._documents = None, found.documents
        self._unsupported, self._declared = found.unsupported, found.declared
        self._endpoints, self._page_size, self._caps, self._limits = (
            found.endpoints, found.page_size, found.caps, found.limits,
        )  # fmt: skip


def _some(names: frozenset[str], shown: int = 12) -> str:
    """A few of many names: `syncd check` prints this on one line."""
    first = sorted(names)[:shown]
    more = len(names) - len(first)
    return ", ".join(first) + (f" and {more} more" if more else "")
