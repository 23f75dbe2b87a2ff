"""A user's ``manager`` through the Graph connector, with the real msgraph-sdk against the
local Graph fake: read from delta rounds (``$select=manager`` -> ``manager@delta``, the
manager's object id), from `find` (``$expand=manager``), written with ``PUT`` / ``DELETE
/users/{id}/manager/$ref``. The fake's state is checked through its control API, not
through the connector."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from syncd.errors import Rejected
from syncd_connectors.graph.connector import GraphConnector
from tests.connectors.test_graph import TOKEN, entries, settings
from tests.peers.run_graph_fake import GraphFakeServer

ATTRS = ["userprincipalname", "manager"]


@pytest.fixture(scope="module")
def fake_server() -> Iterator[GraphFakeServer]:
    with GraphFakeServer(token=TOKEN) as server:
        yield server


@pytest.fixture
def fake(fake_server: GraphFakeServer) -> GraphFakeServer:
    fake_server.reset()
    return fake_server


@pytest.fixture
def graph(fake: GraphFakeServer) -> Iterator[GraphConnector]:
    conn = GraphConnector("entra", settings(fake))
    conn.open()
    yield conn
    conn.close()


def put_manager(fake: GraphFakeServer, uid: str, mid: str) -> None:
    r = fake.graph("PUT", f"/users/{uid}/manager/$ref",
                   {"@odata.id": f"{fake.url}/users/{mid}"})
    assert r.status_code == 204, r.text


def test_delta_reads_the_manager_as_its_object_id(fake: GraphFakeServer,
                                                  graph: GraphConnector) -> None:
    ids = fake.seed(4)["users"]
    put_manager(fake, ids[1], ids[0])
    first = list(graph.read("user", None, ATTRS))
    got = entries(first)
    assert got[ids[1]].raw["manager"] == (ids[0],)
    assert "manager" not in got[ids[0]].raw
    select = next(r for r in fake.requests() if "/users/delta" in r["path"])
    assert "manager" in select["query"].lower()
    cursor = first[-1].cursor
    # changed manager, then taken away: each comes back in the next round
    put_manager(fake, ids[1], ids[2])
    second = list(graph.read("user", cursor, ATTRS))
    assert entries(second)[ids[1]].raw["manager"] == (ids[2],)
    assert fake.graph("DELETE", f"/users/{ids[1]}/manager/$ref").status_code == 204
    third = list(graph.read("user", second[-1].cursor, ATTRS))
    assert "manager" not in entries(third)[ids[1]].raw
    assert list(graph.read("user", third[-1].cursor, ATTRS))[-1].entries == ()


def test_target_listing_and_find_carry_the_manager(fake: GraphFakeServer,
                                                   graph: GraphConnector) -> None:
    ids = fake.seed(3)["users"]
    put_manager(fake, ids[2], ids[0])
    listed = entries(list(graph.read("user", None, None)))
    assert listed[ids[2]].attrs["manager"] == ids[0]
    assert "manager" not in listed[ids[1]].attrs
    (found,) = graph.find("user", "userPrincipalName", "user000003@contoso.example.com")
    assert found.attrs["manager"] == ids[0] and found.raw["manager"] == (ids[0],)


def test_manager_written_with_ref_requests(fake: GraphFakeServer,
                                           graph: GraphConnector) -> None:
    boss = graph.create("user", {"userPrincipalName": "boss@contoso.example.com"}).external_id
    ada = graph.create("user", {"userPrincipalName": "ada@contoso.example.com",
                                "manager": boss})
    assert fake.state()["managers"] == {ada.external_id: boss}
    assert ada.attrs["manager"] == boss
    other = graph.create("user", {"userPrincipalName": "eve@contoso.example.com"}).external_id
    graph.update("user", ada.external_id, {"manager": other, "jobTitle": "Countess"})
    state = fake.state()
    assert state["managers"] == {ada.external_id: other}
    assert state["users"][ada.external_id]["jobTitle"] == "Countess"
    graph.update("user", ada.external_id, {"manager": None})
    assert fake.state()["managers"] == {}
    graph.update("user", ada.external_id, {"manager": None})  # none: 404 is success
    with pytest.raises(Rejected, match="404"):
        graph.update("user", ada.external_id, {"manager": "00000000-0000-0000-0000-00000000dead"})
    puts = [r for r in fake.requests() if r["method"] == "PUT"]
    assert puts and all(r["path"].endswith("/manager/$ref") for r in puts)


def test_manager_is_no_filter_and_delta_takes_no_expand(fake: GraphFakeServer,
                                                        graph: GraphConnector) -> None:
    with pytest.raises(Rejected, match="cannot search"):
        graph.find("user", "manager", "x")
    r = fake.graph("GET", "/users/delta()?$expand=manager")
    assert r.status_code == 400
