"""`ScimConnector.create_many` (SCIM /Bulk) against real servers, and the splitting rules.

The limits are proven against a scim2-server started with small /Bulk limits, which refuses
(413) any request beyond them: a green test means every request fitted.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from syncd.errors import Conflict, ConnectorError, Rejected, Retriable
from syncd.model import Entry, Value
from syncd_connectors.scim import bulk
from syncd_connectors.scim.connector import ScimConnector
from tests.connectors.test_scim import Recording, busy, connect, fake_time, once, raw_get
from tests.peers.fault_proxy import Fault, FaultProxy
from tests.peers.scim_fixtures import SMALL_BULK_BYTES, SMALL_BULK_OPS
from tests.peers.scim_servers import _Peer

pytestmark = pytest.mark.peers
__all__ = ["connect"]  # the fixture, re-used


def users(n: int, prefix: str = "b") -> list[dict[str, Value]]:
    return [{"userName": f"{prefix}{i:03d}", "name.givenName": f"Given {i}",
             "emails.work": f"{prefix}{i}@example.com", "active": True} for i in range(n)]


def listed(server: _Peer) -> list[dict]:
    body = raw_get(server, "Users?count=1000").json()
    return body.get("Resources", [])


# --- pure rules --------------------------------------------------------------------------


def test_split_respects_both_limits_in_order() -> None:
    sizes = [100, 200, 300, 50, 50, 50, 400, 10]
    limit = bulk.request_size([100, 200, 300])  # exactly the first three
    plan = bulk.split(sizes, max_operations=3, max_payload=limit)
    assert plan.chunks == ((0, 1, 2), (3, 4, 5), (6, 7))
    assert plan.oversized == ()
    for chunk in plan.chunks:
        assert len(chunk) <= 3 and bulk.request_size([sizes[i] for i in chunk]) <= limit
    # one byte less: the third operation no longer fits with the first two
    tighter = bulk.split(sizes, max_operations=3, max_payload=limit - 1)
    assert tighter.chunks[0] == (0, 1)


def test_split_sends_oversized_alone_and_unlimited_uses_default() -> None:
    plan = bulk.split([10, 5000, 10], max_operations=10, max_payload=1000)
    assert plan.oversized == (1,) and plan.chunks == ((0, 2),)
    many = bulk.split([1] * 2500, max_operations=0, max_payload=0)
    assert [len(c) for c in many.chunks] == [1000, 1000, 500]


def test_request_size_is_the_encoded_body_size() -> None:
    ops = [bulk.create_operation(str(i), "/Users", {"userName": f"zoë{i}"}) for i in range(3)]
    assert len(bulk.body(ops)) == bulk.request_size([len(o) for o in ops])
    assert json.loads(bulk.body(ops))["Operations"][1]["data"]["userName"] == "zoë1"


# --- real servers ------------------------------------------------------------------------


def test_create_many_in_order_with_a_real_conflict(
    scim2_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    rec = Recording()
    conn = connect(scim2_server, transport=rec)
    existing = conn.create("user", {"userName": "b001"})
    items: list[dict[str, Value]] = [*users(3), {"userName": "bad", "active": "maybe"},
                                     *users(2, prefix="c")]
    results = conn.create_many("user", items)
    assert len(results) == len(items)
    assert isinstance(results[1], Conflict) and "b001" in str(results[1])
    assert isinstance(results[3], Rejected) and "'active'" in str(results[3])
    ok = [r for i, r in enumerate(results) if i not in (1, 3)]
    assert all(isinstance(r, Entry) for r in ok)
    [post] = [r for r in rec.sent("POST") if r.url.path.endswith("/Bulk")]
    assert len(json.loads(post.content)["Operations"]) == 5  # the refused one never left
    on_server = {u["userName"]: u["id"] for u in listed(scim2_server)}
    assert on_server["b001"] == existing.external_id
    for item, res in zip(items, results, strict=True):
        if isinstance(res, Entry):
            assert on_server[str(item["userName"])] == res.external_id
            assert res.attrs["emails.work"] == item["emails.work"]
    assert conn.stats["bulk_requests"] == 1 and conn.stats["bulk_operations"] == 5


def test_create_many_splits_by_operations_and_bytes(
    small_bulk_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    """The server enforces its advertised limits with 413; every user must arrive."""
    rec = Recording()
    conn = connect(small_bulk_server, transport=rec, concurrency=3)
    assert conn.capabilities.bulk_max_operations == SMALL_BULK_OPS
    assert conn.capabilities.bulk_max_payload == SMALL_BULK_BYTES
    items = users(40)
    items[5]["displayName"] = "x" * 1000  # a few big ones shift the byte boundaries
    items[6]["displayName"] = "y" * 1500
    items.append({"userName": "huge", "displayName": "z" * (SMALL_BULK_BYTES + 10)})
    results = conn.create_many("user", items)
    assert all(isinstance(r, Entry) for r in results), results
    posts = [r for r in rec.sent("POST") if r.url.path.endswith("/Bulk")]
    sizes = [len(r.content) for r in posts]
    counts = [len(json.loads(r.content)["Operations"]) for r in posts]
    assert max(counts) <= SMALL_BULK_OPS and max(sizes) <= SMALL_BULK_BYTES
    assert sum(counts) == 40  # the huge one went as a plain POST
    assert [r.url.path for r in rec.sent("POST") if not r.url.path.endswith("/Bulk")] == [
        "/v2/Users"
    ]
    byte_bound = [c for c, s in zip(counts, sizes, strict=True) if c < SMALL_BULK_OPS]
    assert byte_bound, "some request must have been cut by bytes, not by count"
    assert sorted(u["userName"] for u in listed(small_bulk_server)) == sorted(
        str(i["userName"]) for i in items
    )


def test_create_many_whole_request_429_is_retried_then_retriable(
    scim2_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    rec = Recording()
    conn = connect(scim2_server, transport=rec, max_retries=2)
    waits = fake_time(conn)
    rec.faults += [once("POST", "/Bulk", busy(429, "1")), once("POST", "/Bulk", busy(503, "2"))]
    first = conn.create_many("user", users(3))
    assert all(isinstance(r, Entry) for r in first)
    assert waits == [1.0, 2.0]
    rec.faults += [once("POST", "/Bulk", busy(429, "4")) for _ in range(3)]
    second = conn.create_many("user", users(2, prefix="late"))
    assert all(isinstance(r, Retriable) and r.retry_after == 4.0 for r in second)
    assert sorted(u["userName"] for u in listed(scim2_server)) == ["b000", "b001", "b002"]
    stats = conn.stats
    assert stats["http_429"] == 4 and stats["http_503"] == 1 and stats["retries"] == 4


def test_create_many_maps_each_operation_status(
    scim2_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    """What a server may answer per operation (400, 409, 503, left out) -> error classes."""
    rec = Recording()
    conn = connect(scim2_server, transport=rec)

    def answer(request: httpx.Request) -> httpx.Response:
        ops = json.loads(request.content)["Operations"]
        out = [
            {"method": "POST", "bulkId": ops[0]["bulkId"], "status": "201",
             "location": "http://x/v2/Users/id-0"},
            {"method": "POST", "bulkId": ops[1]["bulkId"], "status": "400",
             "response": {"status": "400", "scimType": "invalidValue", "detail": "nope"}},
            {"method": "POST", "bulkId": ops[2]["bulkId"], "status": "409"},
            {"method": "POST", "bulkId": ops[3]["bulkId"], "status": 503},
        ]  # fmt: skip
        return httpx.Response(200, json={"Operations": out})

    rec.faults.append(once("POST", "/Bulk", answer))
    results = conn.create_many("user", users(5))
    assert isinstance(results[0], Entry) and results[0].external_id == "id-0"
    assert results[0].attrs["userName"] == "b000"
    assert type(results[1]) is Rejected and "invalidValue: nope" in str(results[1])
    assert isinstance(results[2], Conflict)
    assert type(results[3]) is Retriable
    assert type(results[4]) is Retriable and "not processed" in str(results[4])


def test_lost_bulk_response_is_not_resent_and_a_rerun_conflicts(
    scim2_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    """The proxy forwards the /Bulk and drops the answer: the users exist, the connector
    says Retriable without resending; trying again gives 409s (which apply adopts)."""
    with FaultProxy(scim2_server.url) as proxy:
        proxy.add(Fault("drop_response", method="POST", path="/Bulk$"))
        conn = connect(scim2_server, url=proxy.url)
        fake_time(conn)
        lost = conn.create_many("user", users(4))
        assert all(isinstance(r, Retriable) for r in lost)
        assert len(proxy.events("POST", "/Bulk$")) == 1
        assert len(listed(scim2_server)) == 4
        again = conn.create_many("user", users(4))
        assert all(isinstance(r, Conflict) for r in again)
    assert len(listed(scim2_server)) == 4


def test_create_many_without_bulk_loops_creates(
    scim_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    """django-scim2-server has no /Bulk; `bulk = "never"` turns it off on scim2-server."""
    rec = Recording()
    conn = connect(scim_server, transport=rec, bulk="never")
    assert not conn.capabilities.bulk
    conn.create("user", {"userName": "b001"})
    results: list[Entry | ConnectorError] = conn.create_many("user", users(3))
    assert isinstance(results[0], Entry) and isinstance(results[2], Entry)
    assert isinstance(results[1], Conflict)
    assert not [r for r in rec.requests if r.url.path.endswith("/Bulk")]
    assert len(listed(scim_server)) == 3


def test_groups_through_bulk(scim2_server: _Peer, connect: Callable[..., ScimConnector]) -> None:
    conn = connect(scim2_server)
    results = conn.create_many("group", [{"displayName": f"g{i}"} for i in range(3)])
    assert all(isinstance(r, Entry) and r.members == frozenset() for r in results)
    names = {g["displayName"]: g["id"] for g in raw_get(scim2_server, "Groups").json()["Resources"]}
    assert {r.name: r.external_id for r in results if isinstance(r, Entry)} == names
