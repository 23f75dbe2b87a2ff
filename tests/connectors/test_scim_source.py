"""The SCIM connector as a *source*: raw attributes, timestamps, lastModified cursors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from syncd.model import Batch
from syncd_connectors.scim import reads
from syncd_connectors.scim.connector import ScimConnector
from tests.connectors.test_scim import Recording, connect, raw_get
from tests.peers.scim_servers import DjangoScimServer, _Peer

pytestmark = pytest.mark.peers
__all__ = ["connect"]


def read_all(conn: ScimConnector, kind: str = "user", cursor: str | None = None) -> list[Batch]:
    return list(conn.read(kind, cursor))  # type: ignore[arg-type]


def without_date(response: httpx.Response) -> httpx.Response:
    """As if the server sent no Date: the cursor is then the newest lastModified seen."""
    del response.headers["Date"]
    return response


def test_raw_and_modified(scim_server: _Peer, connect: Callable[..., ScimConnector]) -> None:
    conn = connect(scim_server)
    user = conn.create("user", {"userName": "Src.User", "name.givenName": "Ana",
                                "emails.work": "ana@example.com", "active": False})
    [entry] = [e for b in read_all(conn) for e in b.entries]
    assert entry.raw == {
        "id": (user.external_id,), "username": ("Src.User",), "name.givenname": ("Ana",),
        "emails.work": ("ana@example.com",), "active": ("false",),
    }  # fmt: skip
    meta = raw_get(scim_server, f"Users/{user.external_id}").json()["meta"]
    assert entry.modified is not None and entry.modified.endswith("Z")
    assert reads.parse_time(entry.modified) == reads.parse_time(meta["lastModified"])
    conn.update("user", user.external_id, {"active": True})
    [again] = [e for b in read_all(conn) for e in b.entries]
    assert again.raw["active"] == ("true",)
    assert again.modified is not None and again.modified > entry.modified


def test_incremental_reads_on_scim2_server(
    scim2_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    rec = Recording()
    rec.on_response = without_date
    conn = connect(scim2_server, transport=rec, page_size=2)
    ids = [conn.create("user", {"userName": f"u{i}"}).external_id for i in range(5)]
    full = read_all(conn)
    assert all(b.full for b in full) and [b.cursor for b in full[:-1]] == [None, None]
    newest = max(e.modified or "" for b in full for e in b.entries)
    assert full[-1].cursor == f"lastmodified:{newest}"
    conn.update("user", ids[1], {"name.givenName": "Changed"})
    inc = read_all(conn, cursor=full[-1].cursor)
    assert not any(b.full for b in inc)
    got = {e.external_id for b in inc for e in b.entries}
    # ids[4] holds the cursor's own timestamp: `ge` reads it again (harmless, never missed)
    assert got == {ids[1], ids[4]}
    changed = next(e for b in inc for e in b.entries if e.external_id == ids[1])
    assert changed.attrs["name.givenName"] == "Changed"
    assert inc[-1].cursor == f"lastmodified:{changed.modified}"
    quiet = read_all(conn, cursor=inc[-1].cursor)
    assert [e.external_id for b in quiet for e in b.entries] == [ids[1]]
    assert quiet[-1].cursor == inc[-1].cursor  # never moves backwards
    probes = [r for r in rec.sent("GET") if "2999-01-01" in str(r.url)]
    assert len(probes) == 1, "support is probed once per kind"


def test_cursor_never_passes_the_server_clock_at_the_first_page(
    scim2_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    """Objects change while later pages are read: the cursor is clamped to the first
    page's Date minus the overlap, so those changes are read next time."""
    began = datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)
    rec = Recording()

    def old_date(response: httpx.Response) -> httpx.Response:
        response.headers["Date"] = "Sat, 03 Feb 2001 04:05:06 GMT"
        return response

    rec.on_response = old_date
    conn = connect(scim2_server, transport=rec, incremental_overlap=5)
    conn.create("user", {"userName": "a"})
    cursor = read_all(conn)[-1].cursor
    assert cursor == reads.make_cursor(began - timedelta(seconds=5))
    assert len([e for b in read_all(conn, cursor=cursor) for e in b.entries]) == 1


def test_group_changes_are_incremental(
    scim2_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    rec = Recording()
    rec.on_response = without_date
    conn = connect(scim2_server, transport=rec)
    user = conn.create("user", {"userName": "m"})
    g1 = conn.create("group", {"displayName": "g1"})
    g2 = conn.create("group", {"displayName": "g2"})
    cursor = read_all(conn, "group")[-1].cursor
    conn.set_members(g1.external_id, [user.external_id], [])
    inc = [e for b in read_all(conn, "group", cursor) for e in b.entries]
    assert {e.external_id for e in inc} == {g1.external_id, g2.external_id}  # g2: `ge`
    assert next(e for e in inc if e.external_id == g1.external_id).members == {user.external_id}
    assert next(e for e in inc if e.external_id == g1.external_id).raw["displayname"] == ("g1",)


def test_a_read_from_a_lastmodified_cursor_needs_no_probe(
    scim2_server: _Peer, django_scim_server: DjangoScimServer,
    connect: Callable[..., ScimConnector]
) -> None:
    """Only a server that filtered on meta.lastModified gave the cursor: a new connector (a
    new `syncd run`) reading from it sends no probe, a filtered listing scim2-server answers
    by walking every stored user; a server that refuses the filter still gets a full read."""
    first = connect(scim2_server)
    first.create("user", {"userName": "p"})
    cursor = read_all(first)[-1].cursor
    rec = Recording()
    inc = read_all(connect(scim2_server, transport=rec), cursor=cursor)
    assert not any(b.full for b in inc) and inc[-1].cursor is not None
    assert not [r for r in rec.sent("GET") if "2999-01-01" in str(r.url)]
    d = connect(django_scim_server)
    d.create("user", {"userName": "d"})
    again = read_all(d, cursor=cursor)
    assert all(b.full for b in again) and [e.name for b in again for e in b.entries] == ["d"]


def test_django_has_full_reads_only(
    django_scim_server: DjangoScimServer, connect: Callable[..., ScimConnector]
) -> None:
    rec = Recording()
    conn = connect(django_scim_server, transport=rec)
    conn.create("user", {"userName": "d"})
    full = read_all(conn)
    assert full[-1].cursor is None and all(b.full for b in full)
    stale = reads.make_cursor(datetime(2020, 1, 1, tzinfo=UTC))
    again = read_all(conn, cursor=stale)
    assert all(b.full for b in again) and again[-1].cursor is None
    assert [e.name for b in again for e in b.entries] == ["d"]
    filters = [r.url.params.get("filter", "") for r in rec.sent("GET")]
    assert [f for f in filters if "lastModified" in f] == [
        'meta.lastModified ge "2999-01-01T00:00:00.000000Z"'
    ], "only the probe, once"


def test_refused_filter_and_foreign_cursor_fall_back_to_full(
    scim2_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    rec = Recording()
    conn = connect(scim2_server, transport=rec)
    conn.create("user", {"userName": "x"})
    assert all(b.full for b in read_all(conn, cursor="syncrepl-cookie-from-elsewhere"))

    def refuse(request: httpx.Request) -> httpx.Response | None:
        if "lastModified" in str(request.url) and "2999" not in str(request.url):
            return httpx.Response(400, json={"status": "400", "scimType": "invalidFilter"})
        return None

    rec.faults.append(refuse)
    batches = read_all(conn, cursor=read_all(conn)[-1].cursor)
    assert all(b.full for b in batches) and batches[-1].cursor is None
    assert [e.name for b in batches for e in b.entries] == ["x"]


def test_next_cursor_rules() -> None:
    t = datetime(2030, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    assert reads.next_cursor(t, None, None, 2) == "lastmodified:2030-05-06T07:08:09.123456Z"
    assert reads.next_cursor(t, t, None, 2) == reads.make_cursor(t - timedelta(seconds=2))
    assert reads.next_cursor(None, None, t, 2) == reads.make_cursor(t)
    assert reads.next_cursor(None, None, None, 2) == "lastmodified:1970-01-01T00:00:00.000000Z"
    assert reads.parse_cursor("lastmodified:2030-05-06T07:08:09+02:00") == t.replace(
        hour=5, microsecond=0
    )
    assert reads.parse_cursor("lastmodified:garbage") is None
