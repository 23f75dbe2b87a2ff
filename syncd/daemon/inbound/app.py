"""The SCIM 2.0 service provider as a WSGI application: scim2-server over the received
directory, with syncd's edge in front of it.

Why scim2-server (python-scim, 0.8): it is the SCIM *protocol* with a pluggable storage
(`InboxStorage`), built on scim2-models for the wire format: routing, RFC 7644 PATCH and PUT
semantics (value paths, ``members[value eq "…"]``), filter evaluation, ``attributes`` and
``excludedAttributes``, ETags and If-Match, ``meta``, ``Location``, RFC 7644 §3.12 error
bodies, /Schemas, /ResourceTypes and /ServiceProviderConfig generated from the same schemas
the resources are validated with. Writing that by hand would be a second, less tested copy.
What it leaves to the integration is done here:

- **authentication**: one or more bearer tokens, each compared in constant time
  (`hmac.compare_digest`, every token compared whatever matched, so the time does not tell
  which one or how much of it); 401 with ``WWW-Authenticate: Bearer`` without a valid one;
  /ServiceProviderConfig is open (RFC 7643 §5). Tokens are never logged: the access log has
  the method, path, status and time only;
- **limits**: the request body (``max_body``; 413, read at most one byte past it) and a
  token-bucket rate limit per client address (``rate_limit``; 429 with ``Retry-After``);
- **the dialects** of Entra ID and Okta (`syncd.daemon.inbound.dialect`);
- **secrets**: a ``password`` a client sends is dropped before anything is stored
  (`syncd.state.inbox.scrubbed`), and errors are logged by status and SCIM type, never with
  the request's values;
- **change notification**: `on_change` is called after each successful write, once it is
  committed (the daemon uses it to run the flows reading the directory, debounced).
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, cast

from scim2_models import (
    AuthenticationScheme,
    Error,
    External,
    PatchOp,
    PreconditionFailedException,
    Reference,
    Resource,
    ResourceType,
    ResponseParameters,
    SCIMException,
    ScimProvider,
    ServiceProviderConfig,
    UnauthorizedException,
)
from scim2_server.applications.wsgi import WSGIApplication, send_response
from scim2_server.conditions import Conditions
from scim2_server.handler import ScimHandler
from scim2_server.requests import ScimRequest
from scim2_server.responses import ScimResponse
from scim2_server.service import ScimService
from scim2_server.utils import load_default_resource_types, load_default_schemas

from syncd.daemon.inbound import dialect
from syncd.daemon.inbound.oauth import JwtVerifier
from syncd.daemon.inbound.storage import InboxStorage, Refusal
from syncd.state.inbox import Inbox

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger("syncd.serve")

BEARER = AuthenticationScheme(
    type=AuthenticationScheme.Type.oauthbearertoken, name="OAuth Bearer Token",
    description="A bearer token configured in [serve] tokens", primary=True,
    spec_uri=Reference[External]("https://datatracker.ietf.org/doc/html/rfc6750"))
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Request kinds counted by `InboundApp.on_request`, from the first path segment after /v2.
KINDS = {"users": "user", "groups": "group", "schemas": "discovery",
         "resourcetypes": "discovery", "serviceproviderconfig": "discovery",
         "bulk": "bulk", ".search": "search"}


def service_provider_config(max_results: int) -> ServiceProviderConfig:
    """What this server supports; scim2-tester skips what it declares unsupported."""
    return ServiceProviderConfig.model_validate({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "https://github.com/syncd/syncd#provision-from-entra-id",
        "patch": {"supported": True},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": True, "maxResults": max_results},
        "changePassword": {"supported": False},
        "sort": {"supported": True},
        "etag": {"supported": True},
        "authenticationSchemes": [BEARER.model_dump()],
    })


def provider(max_results: int = 1000) -> ScimProvider:
    """RFC 7643's User (with the enterprise extension) and Group."""
    return ScimProvider.from_discovery(load_default_schemas().values(),
                                       load_default_resource_types().values(),
                                       config=service_provider_config(max_results))


class Service(ScimService):
    def __init__(self, scim_provider: ScimProvider, max_body: int) -> None:
        super().__init__(scim_provider)
        self.max_body = max_body

    def max_body_size(self, request: ScimRequest) -> int | None:
        limit = super().max_body_size(request)
        return self.max_body if limit is None else min(limit, self.max_body)

    def patch_response(self, base_url: str, resource: Resource[Any],
                       response_parameters: ResponseParameters[Any]) -> ScimResponse:
        """scim2-server's answer, without publishing (a deep copy of the resource with its
        URLs) a body that a 204 leaves out: ~8% of a PATCH's CPU."""
        if response_parameters.attributes or response_parameters.excluded_attributes:
            return super().patch_response(base_url, resource, response_parameters)
        version = resource.meta.version if resource.meta is not None else None
        return ScimResponse(HTTPStatus.NO_CONTENT, None,
                            {"ETag": version} if version and self.etag_supported else {})


class Handler(ScimHandler):
    """Read-modify-write operations (PATCH, PUT, DELETE) one at a time per resource:
    concurrent PATCHes of one group (Entra sends them without If-Match) are applied one after
    the other, while writes to different resources go on together (and are committed
    together: `syncd.state.group_commit`). A write based on a version that changed
    meanwhile (deleting a user changes the groups holding it) is redone on the new version
    when the client sent no If-Match or If-None-Match; with one, the client gets its 412."""

    storage: InboxStorage
    RETRIES = 5

    def __init__(self, service: ScimService, storage: InboxStorage) -> None:
        super().__init__(service, storage)
        self._locks = tuple(threading.Lock() for _ in range(64))

    def _lock(self, resource_id: str | None) -> threading.Lock:
        return self._locks[hash(resource_id) % len(self._locks)]

    def _redo(self, conditions: Conditions, attempt: int) -> bool:
        return (conditions.if_match is None and conditions.if_none_match is None
                and attempt < self.RETRIES - 1)

    def patch_resource(self, resource_type: ResourceType, resource_id: str,
                       patch_op: PatchOp[Any], conditions: Conditions) -> Resource[Any]:
        for attempt in range(self.RETRIES):
            with self._lock(resource_id):
                try:
                    return super().patch_resource(resource_type, resource_id, patch_op,
                                                  conditions)
                except PreconditionFailedException:
                    if not self._redo(conditions, attempt):
                        raise
        raise AssertionError("unreachable")

    def replace_resource(self, resource_type: ResourceType, current: Resource[Any],
                         replacement: Resource[Any], conditions: Conditions) -> Resource[Any]:
        for attempt in range(self.RETRIES):
            with self._lock(current.id):
                try:
                    return super().replace_resource(resource_type, current, replacement,
                                                    conditions)
                except PreconditionFailedException:
                    if not self._redo(conditions, attempt):
                        raise
                current = self.storage.get(resource_type, cast(str, current.id))
        raise AssertionError("unreachable")

    def delete_resource(self, resource_type: ResourceType, resource_id: str,
                        conditions: Conditions) -> None:
        for attempt in range(self.RETRIES):
            with self._lock(resource_id):
                try:
                    return super().delete_resource(resource_type, resource_id, conditions)
                except PreconditionFailedException:
                    if not self._redo(conditions, attempt):
                        raise


class RateLimit:
    """A token bucket per client address: `rate` requests a second, bursts of ``2 * rate``."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.burst = max(2.0 * rate, 1.0)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def wait(self, client: str) -> float:
        """0 when a request may pass now (and take a token), else seconds to wait."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            tokens, at = self._buckets.get(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                return 0.0
            self._buckets[client] = (tokens, now)
            if len(self._buckets) > 10_000:  # forget idle clients
                self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 60}
            return (1.0 - tokens) / self.rate


class InboundApp(WSGIApplication):
    def __init__(self, inbox: Inbox, tokens: Sequence[str], *, max_body: int = 1_048_576,
                 rate_limit: float = 0.0, max_results: int = 1000,
                 on_change: Callable[[], None] | None = None,
                 refuse: Refusal | None = None, oauth: JwtVerifier | None = None,
                 on_request: Callable[[str, str, int], None] | None = None) -> None:
        prov = provider(max_results)
        models = {rt.name: prov.model_for(rt) for rt in prov.resource_types}
        storage = InboxStorage(inbox, models, refuse=refuse)  # type: ignore[arg-type]
        super().__init__(storage, prov, Service(prov, max_body))
        self.handler = Handler(self.service, storage)
        self.oauth = oauth
        self.set_tokens(tokens)
        self.limit = RateLimit(rate_limit)
        self.on_change = on_change
        #: (kind, method, status) after each request: the daemon's metrics count them.
        self.on_request = on_request

    def set_tokens(self, tokens: Sequence[str]) -> None:
        """The accepted bearer tokens (a reload may change them)."""
        encoded = [t.encode() for t in tokens if t]
        if not encoded and self.oauth is None:
            raise ValueError("at least one bearer token (or OAuth) is needed")
        self._tokens = encoded

    # -- authentication -------------------------------------------------------------------
    def check_auth(self, request: ScimRequest) -> None:
        scheme, _, token = (request.header("Authorization") or "").strip().partition(" ")
        given = token.strip().encode()
        ok = False
        for known in self._tokens:  # every token, whatever matched: constant time
            ok |= hmac.compare_digest(given, known)
        if not ok and self.oauth is not None and scheme.lower() == "bearer":
            ok = self.oauth.valid(token.strip())
        if scheme.lower() != "bearer" or not ok:
            raise UnauthorizedException(detail="a valid bearer token is required")

    def www_authenticate(self) -> str:
        return 'Bearer realm="syncd"'

    # -- serving --------------------------------------------------------------------------
    def dispatch_request(self, request: ScimRequest) -> ScimResponse:
        if self.needs_auth(request):
            self.check_auth(request)  # before the body is even parsed
        limit = self.service.max_body_size(request)
        if limit is not None and len(request.body) > limit:
            raise self.service.payload_too_large(limit)
        request.body = dialect.normalise(request.method, request.path, request.body)
        response = self.handler.handle(request)
        if request.method.upper() in WRITES and int(response.status) < 300 and self.on_change:
            try:
                self.on_change()
            except Exception:  # a notification never fails the request
                log.exception("change notification failed")
        return response

    def handle_exception(self, request: ScimRequest, exception: Exception) -> ScimResponse:
        if isinstance(exception, SCIMException):  # no details: they may quote the request
            log.info("%s %s: %s %s", request.method, request.path, exception.status,
                     getattr(exception, "scim_type", None) or type(exception).__name__)
        else:
            log.error("%s %s: %s", request.method, request.path, type(exception).__name__,
                      exc_info=exception)
        response = self.service.error_response(exception)
        if int(response.status) == 401:
            response.headers["WWW-Authenticate"] = self.www_authenticate()
        return response

    def __call__(self, environ: WSGIEnvironment,
                 start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        environ["QUERY_STRING"] = dialect.clean_query(environ.get("QUERY_STRING", ""))
        wait = self.limit.wait(str(environ.get("REMOTE_ADDR", "")))
        if wait > 0:
            body = Error(status=429, detail="too many requests: slow down").model_dump()
            response = ScimResponse(HTTPStatus.TOO_MANY_REQUESTS, body,
                                    {"Retry-After": str(max(1, round(wait + 0.5)))})
        else:
            response = self.serve(self.read_request(environ))
        method, path = str(environ.get("REQUEST_METHOD")), str(environ.get("PATH_INFO"))
        log.info("%s %s %s %.1f ms", method, path, int(response.status),
                 (time.perf_counter() - started) * 1000)
        if self.on_request is not None:
            try:
                self.on_request(request_kind(path), method, int(response.status))
            except Exception:  # counting never fails the request
                log.exception("request accounting failed")
        return send_response(response, start_response)


def request_kind(path: str) -> str:
    """``user``, ``group``, ``discovery``, ``bulk``, ``search`` or ``other`` for a path."""
    parts = [p for p in path.lower().split("/") if p]
    if parts and parts[0] == "v2":
        parts = parts[1:]
    if not parts:
        return "other"
    return KINDS.get(parts[0], "search" if parts[-1] == ".search" else "other")


def error_body(status: int, detail: str) -> bytes:
    return json.dumps(Error(status=status, detail=detail).model_dump()).encode()
