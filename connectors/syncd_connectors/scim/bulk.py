"""SCIM /Bulk (RFC 7644 §3.7) for creates: request bodies, splitting, reading outcomes.

Pure functions (bytes and dicts in and out) so the splitting rules are testable without a
server. The connector decides what to do with each outcome.

Why encoded bytes: the server measures ``maxPayloadSize`` on the request body it receives,
so the only honest measure is the encoded JSON; each operation is encoded once and the
request body is their concatenation inside a fixed envelope, so sizes add up exactly.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from syncd.errors import ConnectorError, Fatal, Retriable
from syncd.model import Entry, Kind, Value
from syncd_connectors.scim.http import ScimHttp, Stats
from syncd_connectors.scim.status import checked_json, error_for

URN_BULK_REQUEST = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
_PREFIX = ('{"schemas":["' + URN_BULK_REQUEST + '"],"Operations":[').encode()
_SUFFIX = b"]}"
#: Bytes of a request body that are not operations (envelope); commas are one byte each.
ENVELOPE = len(_PREFIX) + len(_SUFFIX)
JSON_HEADERS = {"Content-Type": "application/scim+json"}
#: Ceiling when a server advertises bulk without limits (0): big requests buy nothing.
DEFAULT_MAX_OPERATIONS = 1000


def encode(value: Any) -> bytes:
    """Compact UTF-8 JSON: the same bytes we measure are the bytes we send."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def create_operation(bulk_id: str, endpoint: str, data: Mapping[str, Any]) -> bytes:
    """One encoded ``POST`` operation; `endpoint` is the resource type's (``/Users``)."""
    return encode({"method": "POST", "path": endpoint, "bulkId": bulk_id, "data": data})


def body(operations: Sequence[bytes]) -> bytes:
    """A BulkRequest body around already encoded operations."""
    return _PREFIX + b",".join(operations) + _SUFFIX


def request_size(sizes: Sequence[int]) -> int:
    """Encoded size of a request holding operations of these sizes."""
    return ENVELOPE + sum(sizes) + max(len(sizes) - 1, 0)


@dataclass(frozen=True)
class Split:
    """Operation indexes per request, plus those too large for any request on their own."""

    chunks: tuple[tuple[int, ...], ...]
    oversized: tuple[int, ...]


def split(sizes: Sequence[int], max_operations: int, max_payload: int) -> Split:
    """Greedy, order-preserving split under both limits (0 = not advertised).

    An operation that alone exceeds `max_payload` goes to `oversized` (the connector sends it
    as a plain POST, which has no bulk payload limit).
    """
    max_ops = max_operations if max_operations > 0 else DEFAULT_MAX_OPERATIONS
    limit = max_payload if max_payload > 0 else None
    chunks: list[tuple[int, ...]] = []
    oversized: list[int] = []
    current: list[int] = []
    used = ENVELOPE
    for i, size in enumerate(sizes):
        if limit is not None and ENVELOPE + size > limit:
            oversized.append(i)
            continue
        extra = size + (1 if current else 0)
        if current and (len(current) >= max_ops or (limit is not None and used + extra > limit)):
            chunks.append(tuple(current))
            current, used, extra = [], ENVELOPE, size
        current.append(i)
        used += extra
    if current:
        chunks.append(tuple(current))
    return Split(tuple(chunks), tuple(oversized))


@dataclass(frozen=True)
class Outcome:
    """What the server said about one operation."""

    bulk_id: str
    status: int
    location: str | None
    response: Mapping[str, Any] | None

    @property
    def resource_id(self) -> str | None:
        """The created resource's id: from the response body when given, else the Location's
        last path segment (scim2-server answers a location only)."""
        if self.response and isinstance(self.response.get("id"), str):
            return str(self.response["id"])
        if self.location:
            tail = self.location.rstrip("/").rsplit("/", 1)[-1]
            return tail or None
        return None

    def detail(self) -> str:
        """The server's error text (SCIM Error ``scimType: detail``), for messages."""
        r = self.response or {}
        detail = str(r.get("detail") or "").strip()
        scim_type = str(r.get("scimType") or "").strip()
        text = f"{scim_type}: {detail}" if scim_type and detail else detail or scim_type
        return text or f"HTTP {self.status}"


def outcomes(doc: Mapping[str, Any]) -> Iterator[Outcome]:
    """Operations of a BulkResponse; statuses may be strings (RFC 7644 examples) or ints."""
    operations = doc.get("Operations")
    for op in operations if isinstance(operations, list) else []:
        if not isinstance(op, Mapping):
            continue
        raw_status = op.get("status")
        if isinstance(raw_status, Mapping):  # RFC 7644 draft form {"code": "201"}
            raw_status = raw_status.get("code")
        try:
            status = int(str(raw_status).strip()[:3])
        except ValueError:
            status = 0
        response = op.get("response")
        yield Outcome(
            bulk_id=str(op.get("bulkId") or ""),
            status=status,
            location=str(op["location"]) if op.get("location") else None,
            response=response if isinstance(response, Mapping) else None,
        )


# --- the driver ------------------------------------------------------------------------


@dataclass
class BulkCreate:
    """Creates of one kind through /Bulk for a connector; see `ScimConnector.create_many`.

    Collaborators are passed in (not the connector) so the rules here are visible at a glance:
    `payload` validates and builds one creation body (raising `Rejected`), `create` is the
    plain POST used for an operation too large for any bulk request, `entry` reads a resource.
    """

    http: ScimHttp
    stats: Stats
    connector: str
    kind: Kind
    endpoint: str
    payload: Callable[[Mapping[str, Value]], dict[str, Any]]
    create: Callable[[Mapping[str, Value]], Entry]
    entry: Callable[[dict[str, Any]], Entry]
    max_operations: int
    max_payload: int
    concurrency: int
    #: the creation bodies sent, per slot: what a created entry is read from (see _created)
    _sent: dict[int, dict[str, Any]] = field(default_factory=dict, init=False)

    def run(self, items: Sequence[Mapping[str, Value]]) -> list[Entry | ConnectorError]:
        results: dict[int, Entry | ConnectorError] = {}
        ops: list[bytes] = []
        slots: list[int] = []
        for i, attrs in enumerate(items):
            try:
                self._sent[i] = self.payload(attrs)
            except ConnectorError as exc:
                results[i] = exc
                continue
            ops.append(create_operation(str(i), self.endpoint, self._sent[i]))
            slots.append(i)
        plan = split([len(o) for o in ops], self.max_operations, self.max_payload)
        for j in plan.oversized:
            results[slots[j]] = self._single(items[slots[j]])
        chunks = [[(slots[j], ops[j]) for j in chunk] for chunk in plan.chunks]
        workers = min(self.concurrency, len(chunks))
        if workers > 1:
            with ThreadPoolExecutor(workers, thread_name_prefix="scim-bulk") as pool:
                done = list(pool.map(lambda c: self._send(c, items), chunks))
        else:
            done = [self._send(c, items) for c in chunks]
        for part in done:
            results.update(part)
        return [results[i] for i in range(len(items))]

    def _label(self, attrs: Mapping[str, Value]) -> str:
        key = "userName" if self.kind == "user" else "displayName"
        return f"create {self.kind} {attrs.get(key)}"

    def _single(self, attrs: Mapping[str, Value]) -> Entry | ConnectorError:
        try:
            return self.create(attrs)
        except Fatal:
            raise
        except ConnectorError as exc:
            return exc

    def _send(
        self, chunk: list[tuple[int, bytes]], items: Sequence[Mapping[str, Value]]
    ) -> dict[int, Entry | ConnectorError]:
        """One /Bulk request for these (slot, operation) pairs; a 413 halves the request."""
        self.stats.add("bulk_requests")
        self.stats.add("bulk_operations", len(chunk))
        try:
            resp = self.http.request("POST", "Bulk", content=body([op for _, op in chunk]),
                                     headers=JSON_HEADERS)  # fmt: skip
        except Fatal:
            raise
        except ConnectorError as exc:  # busy beyond the retries, answer lost or too large
            return {i: exc for i, _ in chunk}
        if resp.status_code == 413:  # the server counts differently: smaller requests
            if len(chunk) == 1:
                return {chunk[0][0]: self._single(items[chunk[0][0]])}
            half = len(chunk) // 2
            return {**self._send(chunk[:half], items), **self._send(chunk[half:], items)}
        try:
            doc = checked_json(resp, f"bulk create of {len(chunk)} {self.kind}s", self.connector)
        except ConnectorError as exc:
            return {i: exc for i, _ in chunk}
        by_id = {o.bulk_id: o for o in outcomes(doc)}
        out: dict[int, Entry | ConnectorError] = {}
        for i, _ in chunk:
            o, label = by_id.get(str(i)), self._label(items[i])
            if o is None:
                out[i] = Retriable(f"{label}: not processed by /Bulk", connector=self.connector)
            elif o.status in (200, 201) and o.resource_id:
                out[i] = self._created(o, i)
            else:
                out[i] = error_for(o.status, o.detail(), label, self.connector)
        return out

    def _created(self, o: Outcome, slot: int) -> Entry:
        """The server's resource when it sent one; else what we sent (scim2-server answers
        a location only) with the id from it."""
        if o.response and o.response.get("id"):
            return self.entry(dict(o.response))
        return self.entry({**self._sent[slot], "id": str(o.resource_id)})
