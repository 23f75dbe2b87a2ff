"""SCIM listings as evidence: shape checks, completeness of a paged walk, `confirm_gone`.

Absence is not proof (DESIGN principle 10): a ``startIndex`` listing read while objects are
deleted misses others, so it must say it is incomplete; only a direct lookup proves an
object gone. A listing that is not a ListResponse is an error, never "no match".
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.errors import Fatal, Rejected
from syncd.model import Batch, Entry
from syncd_connectors.scim import reads
from syncd_connectors.scim.connector import ScimConnector
from syncd_connectors.scim.http import ScimHttp, Stats
from tests.connectors.test_scim import Recording, connect, fake_time, once
from tests.peers.fault_proxy import Fault, FaultProxy
from tests.peers.scim_servers import DjangoScimServer, _Peer

pytestmark = pytest.mark.peers
__all__ = ["connect"]
LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"


def hard_delete(server: _Peer, kind: str, rid: str) -> None:
    """Remove an object through the server itself, not through syncd. django-scim2-server's
    DELETE of a user only deactivates, so there the row goes straight from SQLite."""
    if isinstance(server, DjangoScimServer) and kind == "user":
        con = sqlite3.connect(server.db, timeout=30)
        try:
            with con:
                row = con.execute("SELECT user_id FROM django_scim2_server_scimuser WHERE id = ?",
                                  (rid.replace("-", ""),)).fetchone()
                assert row is not None, rid
                con.execute("DELETE FROM django_scim2_server_scimuser WHERE id = ?",
                            (rid.replace("-", ""),))
                con.execute("DELETE FROM auth_user WHERE id = ?", (row[0],))
        finally:
            con.close()
        return
    resource = "Users" if kind == "user" else "Groups"
    r = httpx.delete(f"{server.url}/{resource}/{rid}",
                     headers={"Authorization": f"Bearer {server.token}"})
    assert r.status_code == 204, r.text


def ids(batches: list[Batch]) -> list[str]:
    return [e.external_id for b in batches for e in b.entries]


# --- completeness of a paged listing ------------------------------------------------------


def test_objects_deleted_while_paging_make_the_read_incomplete(
    scim_server: _Peer, connect: Callable[..., ScimConnector], caplog: pytest.LogCaptureFixture
) -> None:
    """The incident: a user deleted between page 1 and page 2 shifts a later, untouched one
    onto page 1, where it was never read. The listing must say it is incomplete."""
    conn = connect(scim_server, page_size=2)
    made = [conn.create("user", {"userName": f"pg{i}"}).external_id for i in range(5)]
    pages = conn.read("user")
    first = next(pages)
    assert len(first.entries) == 2
    hard_delete(scim_server, "user", first.entries[0].external_id)
    with caplog.at_level(logging.WARNING, logger="syncd.connectors.scim"):
        rest = list(pages)
    batches = [first, *rest]
    missed = set(made) - set(ids(batches))
    assert missed, "the shift did not happen: the test proves nothing"
    assert not batches[-1].complete
    assert "incomplete" in caplog.text and "totalResults changed from 5 to 4" in caplog.text


class PagingServer:
    """An in-memory startIndex server; `between[k]` mutates the directory before page k+1
    is answered (a delete of listed positions, or additions), as another admin would."""

    def __init__(self, n: int, between: dict[int, tuple[str, list[int]]]) -> None:
        self.objects = [f"id{i}" for i in range(n)]
        self.between = between
        self.page = 0
        self.next_id = n
        self.deleted: set[str] = set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        q = parse_qs(urlsplit(str(request.url)).query)
        start, count = int(q["startIndex"][0]), int(q["count"][0])
        if self.page in self.between:
            op, args = self.between[self.page]
            if op == "delete":
                for pos in sorted({a % len(self.objects) for a in args} if self.objects else (),
                                  reverse=True):
                    self.deleted.add(self.objects.pop(pos))
            else:
                for _ in args:
                    self.objects.append(f"id{self.next_id}")
                    self.next_id += 1
        self.page += 1
        chunk = self.objects[start - 1:start - 1 + count]
        return httpx.Response(200, json={"schemas": [LIST], "totalResults": len(self.objects),
                                         "Resources": [{"id": i} for i in chunk]})


def walk(handler: Callable[[httpx.Request], httpx.Response], page_size: int) -> list[Batch]:
    client = httpx.Client(base_url="http://127.0.0.1:9/v2/", transport=httpx.MockTransport(handler))
    http = ScimHttp(client, connector="scim-unit", url="http://127.0.0.1:9/v2", max_retries=0,
                    sleep=lambda s: None, stats=Stats())
    entry = lambda r: Entry(kind="user", external_id=str(r["id"]), raw={}, attrs={})  # noqa: E731
    return list(reads.listing(http, connector="scim-unit", kind="user", endpoint="/Users",
                              page_size=page_size, entry=entry, since=None, incremental=False,
                              overlap=0))


mutation = st.tuples(st.sampled_from(["delete", "add"]),
                     st.lists(st.integers(0, 50), min_size=1, max_size=3))


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 12), page_size=st.integers(1, 5),
       between=st.dictionaries(st.integers(1, 8), mutation, max_size=3))
def test_a_listing_that_says_complete_missed_nothing(
    n: int, page_size: int, between: dict[int, tuple[str, list[int]]]
) -> None:
    """Property: whenever the walk calls itself complete, it returned every object that
    existed through the whole read, each once; an untouched directory is always complete."""
    server = PagingServer(n, between)
    batches = walk(server, page_size)
    got = ids(batches)
    assert len(got) == len(set(got))
    survivors = {f"id{i}" for i in range(n)} - server.deleted
    if batches[-1].complete:
        assert survivors <= set(got)
    if all(k >= server.page for k in between):  # nothing changed during the read
        assert batches[-1].complete and set(got) == {f"id{i}" for i in range(n)}


def test_repeated_pages_and_short_listings_are_incomplete() -> None:
    def ignores_start(request: httpx.Request) -> httpx.Response:  # page 1, whatever is asked
        return httpx.Response(200, json={"schemas": [LIST], "totalResults": 4,
                                         "Resources": [{"id": "a"}, {"id": "b"}]})

    def stops_early(request: httpx.Request) -> httpx.Response:  # announces 9, has 2
        first = "startIndex=1" in str(request.url)
        return httpx.Response(200, json={"schemas": [LIST], "totalResults": 9,
                                         "Resources": [{"id": "a"}, {"id": "b"}] if first else []})

    repeated = walk(ignores_start, 2)
    assert ids(repeated) == ["a", "b"] and not repeated[-1].complete
    short = walk(stops_early, 2)
    assert ids(short) == ["a", "b"] and not short[-1].complete


# --- confirm_gone --------------------------------------------------------------------------


def test_confirm_gone_against_the_real_server(
    scim_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    """Only a 404 proves absence; a soft-deleted user (django: DELETE deactivates, GET still
    answers 200 and the listing still returns it) is still there."""
    conn = connect(scim_server)
    kept, dropped, soft = (conn.create("user", {"userName": n}).external_id
                           for n in ("kept", "dropped", "soft"))
    group, gone_group = (conn.create("group", {"displayName": n}).external_id
                         for n in ("g-kept", "g-gone"))
    hard_delete(scim_server, "user", dropped)
    hard_delete(scim_server, "group", gone_group)
    conn.delete("user", soft)
    never = "00000000-0000-4000-8000-00000000abcd"
    gone = conn.confirm_gone("user", [kept, dropped, soft, never, kept])
    want = {dropped, never} | (set() if isinstance(scim_server, DjangoScimServer) else {soft})
    assert gone == want
    assert conn.confirm_gone("group", [group, gone_group]) == {gone_group}
    assert conn.confirm_gone("user", []) == set()


def test_confirm_gone_confirms_nothing_it_could_not_prove(
    scim2_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    rec = Recording()
    conn = connect(scim2_server, transport=rec, max_retries=0, concurrency=1)
    fake_time(conn)
    missing = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(5)]
    rec.faults += [
        once("GET", missing[0], lambda r: httpx.Response(500)),
        once("GET", missing[1], lambda r: httpx.Response(
            401, json={"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"]})),
        once("GET", missing[2], lambda r: httpx.ReadTimeout("slow", request=r)),
        once("GET", missing[3], lambda r: httpx.Response(404, text="<html>no route</html>")),
    ]
    assert conn.confirm_gone("user", missing) == {missing[4]}


def test_confirm_gone_runs_concurrency_lookups_at_once(
    scim2_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    """The first `concurrency` lookups meet at a barrier: one at a time would break it."""
    barrier = threading.Barrier(4, timeout=10)
    seen: list[str] = []

    def meet(request: httpx.Request) -> None:
        seen.append(request.url.path)
        if len(seen) <= 4:
            barrier.wait()
        return None

    rec = Recording()
    conn = connect(scim2_server, transport=rec, concurrency=4)
    rec.faults.append(meet)  # never consumed (returns None): sees every request
    missing = [f"00000000-0000-4000-8000-0000000001{i:02d}" for i in range(8)]
    assert conn.confirm_gone("user", missing) == set(missing)


# --- malformed listings ----------------------------------------------------------------------


def rewrite_json(change: Callable[[dict[str, Any]], Any]) -> Callable[[bytes], bytes]:
    return lambda body: json.dumps(change(json.loads(body))).encode()


def test_a_lookup_answered_without_resources_is_no_match_never(
    scim2_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    """The incident, through a proxy in front of the real server: a 200 without
    ``Resources`` read as "no match" and every group was created twice."""
    with FaultProxy(scim2_server.url) as proxy:
        conn = connect(scim2_server, url=proxy.url)
        conn.create("group", {"displayName": "staff"})
        drop = rewrite_json(lambda d: {k: v for k, v in d.items() if k != "Resources"})
        proxy.add(Fault("rewrite", method="GET", path=r"/Groups$", rewrite=drop))
        with pytest.raises(Rejected, match=r"malformed listing from GET /Groups: no Resources"):
            conn.find("group", "displayName", "staff")
        assert proxy.counts()["rewrite"] == 1
        assert [e.name for e in conn.find("group", "displayName", "staff")] == ["staff"]


def test_a_lookup_that_returned_fewer_matches_than_it_announced_is_not_trusted(
    scim2_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    """One resource of an announced three would read as "exactly one match": adopted,
    although two more objects claim the same identity."""
    rec = Recording()
    conn = connect(scim2_server, transport=rec)
    one_of_three = {"schemas": [LIST], "totalResults": 3,
                    "Resources": [{"id": "a", "displayName": "staff"}]}
    rec.faults.append(once("GET", "/Groups", lambda r: httpx.Response(200, json=one_of_three)))
    with pytest.raises(Rejected, match="announced 3 matches and returned 1"):
        conn.find("group", "displayName", "staff")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["id", "userName", "Resources", "totalResults", "name", "emails",
                         "meta", "value"]), inner,
        max_size=4),
    max_leaves=12,
)
listing_like = st.fixed_dictionaries(
    {}, optional={"schemas": st.just([LIST]), "totalResults": json_values,
                  "Resources": st.lists(json_values, max_size=4) | json_values})


def test_find_trusts_only_a_well_formed_listing(
    scim2_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    """Property: whatever a 200 to a lookup carries, `find` either raises `Rejected` or the
    body was a ListResponse whose Resources (or totalResults 0) are exactly what it returns;
    no KeyError/AttributeError ever escapes, and a missing Resources is never "no match"."""
    rec = Recording()
    conn = connect(scim2_server, transport=rec)

    @settings(max_examples=300, deadline=None)
    @given(body=listing_like | json_values)
    def check(body: Any) -> None:
        rec.faults[:] = [once("GET", "/Users", lambda r: httpx.Response(200, json=body))]
        try:
            found = conn.find("user", "userName", "x")
        except Rejected as exc:
            assert "find user" in str(exc)
            return
        assert isinstance(body, dict)
        if "Resources" in body:
            assert [e.external_id for e in found] == [str(r["id"]) for r in body["Resources"]]
        else:
            assert found == [] and body["totalResults"] in (0, "0")

    check()


@pytest.mark.parametrize(("change", "why"), [
    (lambda d: {**d, "Resources": [{k: v for k, v in r.items() if k != "id"}
                                   for r in d["Resources"]]}, "resource #1 has no id"),
    (lambda d: {**d, "totalResults": "many"}, "totalResults is not a non-negative integer"),
    (lambda d: {**d, "Resources": {"id": "x"}}, "Resources is a JSON dict, not a list"),
    (lambda d: {**d, "Resources": d["Resources"] * 3}, "more than the count=2 asked for"),
])
def test_a_malformed_listing_is_a_clear_error(
    scim2_server: _Peer, connect: Callable[..., ScimConnector],
    change: Callable[[dict[str, Any]], Any], why: str,
) -> None:
    """A source read of a malformed page ends with `Fatal` naming connector, endpoint and
    what was wrong (no KeyError, no silently shortened listing)."""
    rec = Recording()
    conn = connect(scim2_server, transport=rec, page_size=2)
    for i in range(2):
        conn.create("user", {"userName": f"m{i}"})

    def broken(request: httpx.Request) -> httpx.Response | None:
        if request.method != "GET" or "startIndex" not in str(request.url):
            return None
        real = rec.inner.handle_request(request)
        real.read()
        return httpx.Response(200, json=change(json.loads(real.content)))

    rec.faults += [broken] * 3
    with pytest.raises(Fatal) as info:
        list(conn.read("user"))
    msg = str(info.value)
    assert "scim-test" in msg and "GET /Users" in msg and why in msg, msg


def test_one_unreadable_resource_is_skipped_and_the_read_incomplete(
    scim2_server: _Peer, connect: Callable[..., ScimConnector], caplog: pytest.LogCaptureFixture
) -> None:
    """A resource whose attributes have the wrong JSON types (``name`` a string) is one bad
    object: it is skipped, the others are read, and the read vouches for nothing."""
    rec = Recording()
    conn = connect(scim2_server, transport=rec)
    made = [conn.create("user", {"userName": f"r{i}"}).external_id for i in range(3)]

    def odd_first(request: httpx.Request) -> httpx.Response | None:
        if request.method != "GET" or "startIndex" not in str(request.url):
            return None
        real = rec.inner.handle_request(request)
        real.read()
        doc = json.loads(real.content)
        doc["Resources"][0] = {**doc["Resources"][0], "name": "Ana", "emails": 5}
        spoiled.append(doc["Resources"][0]["id"])
        return httpx.Response(200, json=doc)

    spoiled: list[str] = []
    rec.faults.append(odd_first)
    with caplog.at_level(logging.WARNING, logger="syncd.connectors.scim"):
        batches = list(conn.read("user"))
    assert len(spoiled) == 1 and set(ids(batches)) == set(made) - set(spoiled)
    assert not batches[-1].complete
    assert "unreadable resource" in caplog.text

