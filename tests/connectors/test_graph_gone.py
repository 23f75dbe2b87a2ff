"""Graph: `confirm_gone` and passwords, with the real msgraph-sdk against the Graph fake.

Absence is not proof: only Graph's own "does not exist" (404 ``Request_ResourceNotFound``)
confirms an object gone; any other answer, or none, confirms nothing and raises nothing.
``passwordProfile`` is never selected nor kept. A Graph that does not answer is `Unreachable`.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from syncd.errors import Unreachable
from syncd_connectors.graph import delta
from syncd_connectors.graph.config import GraphConfig
from syncd_connectors.graph.connector import GraphConnector
from tests.connectors.test_graph import (  # the same fake, started once per module
    TOKEN,
    fake,
    fake_server,
    settings,
)
from tests.peers.run_graph_fake import GraphFakeServer

__all__ = ["fake", "fake_server"]  # fixtures: used by name

def opened(fake: GraphFakeServer, **overrides: Any) -> GraphConnector:
    conn = GraphConnector("entra", settings(fake, max_retries=1, **overrides))
    conn.open()
    return conn


def lookups(fake: GraphFakeServer) -> list[dict[str, Any]]:
    return [r for r in fake.requests() if r["method"] == "GET" and "delta" not in r["path"]
            and r["path"].count("/") == 3]


def test_only_objects_graph_says_do_not_exist_are_gone(fake: GraphFakeServer) -> None:
    users = fake.seed(8, groups=2, members=3)
    ids, gids = users["users"], users["groups"]
    assert fake.graph("DELETE", f"/users/{ids[1]}").status_code == 204  # soft delete
    assert fake.graph("DELETE", f"/users/{ids[2]}").status_code == 204
    assert fake.graph("DELETE", f"/directory/deletedItems/{ids[2]}").status_code == 204
    never = str(uuid.uuid4())
    conn = opened(fake)
    fake.requests(clear=True)
    asked = [ids[0], ids[1], ids[2], never, gids[0], ids[0]]
    # a group's id is no user: gone from the users
    assert conn.confirm_gone("user", asked) == {ids[1], ids[2], never, gids[0]}
    sent = lookups(fake)
    assert len(sent) == 5  # one GET per distinct id, built by the SDK
    assert all(r["path"].startswith("/v1.0/users/") and "select=id" in r["query"]
               for r in sent)
    assert fake.graph("DELETE", f"/groups/{gids[1]}").status_code == 204
    assert conn.confirm_gone("group", [gids[0], gids[1], ids[0]]) == {gids[1], ids[0]}
    conn.close()


def test_any_other_answer_confirms_nothing(fake: GraphFakeServer) -> None:
    ids = [str(uuid.uuid4()) for _ in range(4)]  # none exists: only faults stand in the way
    fake.fault(status=404, code="UnknownError", retry_after=None, match=ids[0])
    fake.fault(status=500, code="InternalServerError", retry_after=None, match=ids[1])
    fake.fault(status=429, retry_after="0", count=10, match=ids[2])
    conn = opened(fake)
    assert conn.confirm_gone("user", ids) == {ids[3]}
    conn.close()


def test_unreachable_graph_confirms_nothing_and_raises_nothing() -> None:
    with GraphFakeServer(token=TOKEN) as own:
        conn = opened(own)
        own.stop()
        assert conn.confirm_gone("user", [str(uuid.uuid4())]) == set()
        conn.close()
    closed = GraphConnector("entra", GraphConfig.model_validate(
        {"auth": "token", "token": TOKEN, "endpoint": "http://127.0.0.1:9/v1.0"}))
    assert closed.confirm_gone("user", ["x"]) == set()  # never opened: nothing, no error


def test_a_graph_that_does_not_answer_is_unreachable() -> None:
    """Refused connections are `Unreachable` (the engine takes the target for down after a
    few), not a plain `Retriable` repeated for every change."""
    with GraphFakeServer(token=TOKEN) as own:
        conn = opened(own)
        own.stop()
        with pytest.raises(Unreachable, match="ConnectError"):
            conn.update("user", str(uuid.uuid4()), {"jobTitle": "x"})
        conn.close()


def test_password_profile_is_never_selected_nor_kept(fake: GraphFakeServer) -> None:
    assert "passwordProfile" not in delta.select_for("user", ["passwordProfile", "mail"])
    assert not any(s.lower() == "passwordprofile" for s in delta.select_for("user", None))
    sent = {"id": "1", "mail": "a@contoso.example.com",
            "passwordProfile": {"password": "Hunter2!x", "forceChangePasswordNextSignIn": True}}
    raw = delta.raw_values(sent)
    assert raw == {"id": ("1",), "mail": ("a@contoso.example.com",)}
    fake.seed(3)
    conn = opened(fake)
    fake.requests(clear=True)
    batches = list(conn.read("user", None, ["passwordprofile", "mail"]))
    assert sum(len(b.entries) for b in batches) == 3  # the fake refuses unknown $select
    assert all("password" not in r["query"].lower() for r in fake.requests())
    conn.close()
