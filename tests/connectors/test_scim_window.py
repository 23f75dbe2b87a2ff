"""Incremental SCIM reads of a wide window, and the listing page size.

A window of changes that is most of the directory (a two-way flow's catch-up after its
initial sync) is listed unfiltered and kept client-side with the server's own ``ge`` rule:
the property below checks that what is returned and the cursor are exactly what the
filtered listing gives, wherever the window's size falls; the real-server tests check which
requests go out. The page size follows the server's ``filter.maxResults``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.model import Batch, Entry
from syncd_connectors.scim import reads
from syncd_connectors.scim.connector import ScimConnector
from syncd_connectors.scim.discovery import DEFAULT_PAGE, MAX_PAGE, page_size
from syncd_connectors.scim.http import ScimHttp, Stats
from tests.connectors.test_scim import Recording, connect
from tests.connectors.test_scim_source import without_date
from tests.peers.scim_servers import _Peer

__all__ = ["connect"]
LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
T0 = datetime(2030, 1, 1, tzinfo=UTC)


class Directory:
    """A server that filters on meta.lastModified ``ge`` and counts the walks it makes."""

    def __init__(self, stamps: list[int]) -> None:
        self.objects = [(f"id{n}", T0 + timedelta(seconds=s)) for n, s in enumerate(stamps)]
        self.filtered = 0
        self.unfiltered = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        q = {k: v[0] for k, v in parse_qs(urlsplit(str(request.url)).query).items()}
        found = self.objects
        if "filter" in q:
            self.filtered += 1
            since = reads.parse_time(q["filter"].split('"')[1])
            assert since is not None
            found = [o for o in found if o[1] >= since]
        elif q.get("count") != "0":
            self.unfiltered += 1
        start, count = int(q.get("startIndex", "1")), int(q["count"])
        chunk = found[start - 1:start - 1 + count]
        return httpx.Response(200, json={
            "schemas": [LIST], "totalResults": len(found),
            "Resources": [{"id": i, "meta": {"lastModified": reads.iso(t)}} for i, t in chunk]})


def read(server: Directory, page: int, since: datetime) -> list[Batch]:
    client = httpx.Client(base_url="http://127.0.0.1:9/v2/", transport=httpx.MockTransport(server))
    http = ScimHttp(client, connector="scim-unit", url="http://127.0.0.1:9/v2", max_retries=0,
                    sleep=lambda s: None, stats=Stats())

    def entry(r: dict[str, object]) -> Entry:
        return Entry(kind="user", external_id=str(r["id"]),
                     modified=reads.modified(r))  # type: ignore[arg-type]

    return list(reads.listing(http, connector="scim-unit", kind="user", endpoint="/Users",
                              page_size=page, entry=entry, since=since, incremental=True,
                              overlap=0))


@settings(max_examples=200, deadline=None)
@given(stamps=st.lists(st.integers(0, 20), max_size=30), page=st.integers(1, 7),
       since=st.integers(0, 21))
def test_a_window_is_read_the_same_filtered_or_whole(
    stamps: list[int], page: int, since: int
) -> None:
    server = Directory(stamps)
    at = T0 + timedelta(seconds=since)
    batches = read(server, page, at)
    expected = [i for i, t in server.objects if t >= at]
    got = [e.external_id for b in batches for e in b.entries]
    assert sorted(got) == sorted(expected) and len(got) == len(set(got))
    newest = max((t for i, t in server.objects if t >= at), default=None)
    assert batches[-1].cursor == reads.next_cursor(newest, None, at, 0)
    assert all(not b.full and b.complete for b in batches)
    wide = len(expected) > page and len(expected) >= reads.WIDE * len(stamps)
    # a wide window: one filtered page (its size), then the directory unfiltered
    assert server.filtered == (1 if wide else max(1, -(-len(expected) // page)))
    assert server.unfiltered == (-(-len(stamps) // page) if wide else 0)


def test_page_size_rules() -> None:
    assert page_size(None, None) == DEFAULT_PAGE == 200
    assert page_size(None, 1000) == 1000
    assert page_size(None, 200) == 200
    assert page_size(None, 50_000) == MAX_PAGE == 1000
    assert page_size(300, 200) == 200  # never more than the server takes
    assert page_size(300, None) == 300
    assert page_size(300, 1000) == 300


@pytest.mark.peers
def test_page_size_is_the_servers_max_results(
    scim_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    """scim2-server declares filter.maxResults 1000, django-scim2-server 200: a listing asks
    for pages of that size unless the configuration says less."""
    declared = httpx.get(f"{scim_server.url}/ServiceProviderConfig", headers={
        "Authorization": f"Bearer {scim_server.token}"}).json()["filter"]["maxResults"]
    rec = Recording()
    conn = connect(scim_server, transport=rec)
    conn.create("user", {"userName": "one"})
    assert [e.name for b in conn.read("user") for e in b.entries] == ["one"]
    counts = {parse_qs(urlsplit(str(r.url)).query).get("count", [""])[0]
              for r in rec.sent("GET") if urlsplit(str(r.url)).path.endswith("/Users")}
    assert str(declared) in counts and declared in (200, 1000)
    assert conn.probe()["page size"] == declared
    small = connect(scim_server, page_size=7)
    assert small.probe()["page size"] == 7


@pytest.mark.peers
def test_a_wide_window_is_listed_whole_on_scim2_server(
    scim2_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    rec = Recording()
    conn = connect(scim2_server, transport=rec, page_size=2)
    ids = [conn.create("user", {"userName": f"u{i}"}).external_id for i in range(6)]
    rec.on_response = without_date  # the cursor is then the newest lastModified seen
    cursor = list(conn.read("user"))[-1].cursor
    rec.on_response = None
    assert cursor is not None

    def since(changed: list[str]) -> tuple[set[str], list[str]]:
        for rid in changed:
            conn.update("user", rid, {"name.givenName": "Changed"})
        rec.requests.clear()
        got = {e.external_id for b in conn.read("user", cursor) for e in b.entries}
        return got, [str(r.url) for r in rec.sent("GET")]

    # narrow: 1 of 6 changed (and the newest, at the cursor's own timestamp): filtered only
    got, urls = since([ids[0]])
    assert got == {ids[0], ids[5]}
    assert all("filter=" in u for u in urls)
    # wide: 4 of 6 in the window now: one filtered page, a count, then all 6 unfiltered
    got, urls = since([ids[1], ids[2]])
    assert got == {ids[0], ids[1], ids[2], ids[5]}
    assert "filter=" in urls[0] and "count=0" in urls[1]
    assert len(urls) == 2 + 3 and not any("filter=" in u for u in urls[1:])
