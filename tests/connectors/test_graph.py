"""The Graph connector with the real msgraph-sdk against the local Graph fake (127.0.0.1).

Incremental behaviour (cursors, @removed, members@delta, expired tokens) is tested here,
directly on the connector: the engine does not pass stored cursors yet. Throttling is
asserted from the fake's request log (timestamps), never by sleeping.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from syncd.errors import Conflict, Fatal, Rejected, Retriable
from syncd.model import Batch
from syncd_connectors.graph import delta
from syncd_connectors.graph.config import GraphConfig
from syncd_connectors.graph.connector import GraphConnector
from tests.peers.run_graph_fake import GraphFakeServer

TOKEN = "graph-test-token-0815"
REPO = Path(__file__).resolve().parents[2]
USER_ATTRS = ["userprincipalname", "displayname", "accountenabled", "jobtitle", "department"]


@pytest.fixture(scope="module")
def fake_server() -> Iterator[GraphFakeServer]:
    with GraphFakeServer(token=TOKEN) as server:
        yield server


@pytest.fixture
def fake(fake_server: GraphFakeServer) -> GraphFakeServer:
    fake_server.reset()
    return fake_server


def settings(fake: GraphFakeServer, **overrides: Any) -> GraphConfig:
    values: dict[str, Any] = {"auth": "token", "token": TOKEN, "endpoint": fake.url,
                              "page_size": 50} | overrides
    return GraphConfig.model_validate(values)


@pytest.fixture
def graph(fake: GraphFakeServer) -> Iterator[GraphConnector]:
    conn = GraphConnector("entra", settings(fake))
    conn.open()
    yield conn
    conn.close()


def read_all(conn: GraphConnector, kind: str, cursor: str | None = None,
             attributes: list[str] | None = None) -> list[Batch]:
    return list(conn.read(kind, cursor, USER_ATTRS if attributes is None else attributes))  # type: ignore[arg-type]


def entries(batches: list[Batch]) -> dict[str, Any]:
    return {e.external_id: e for b in batches for e in b.entries}


def delta_requests(fake: GraphFakeServer, coll: str = "users") -> list[dict[str, Any]]:
    return [r for r in fake.requests() if r["path"].startswith(f"/v1.0/{coll}/delta")]


# --- delta reads ---------------------------------------------------------------------------


def test_first_round_is_full_paged_by_hand_and_ends_in_a_cursor(
        fake: GraphFakeServer, graph: GraphConnector) -> None:
    ids = fake.seed(120)["users"]
    fake.requests(clear=True)
    batches = read_all(graph, "user")
    assert [len(b.entries) for b in batches] == [50, 50, 20]
    assert all(b.full and b.complete for b in batches)
    assert [b.cursor is not None for b in batches] == [False, False, True]
    assert batches[-1].cursor and batches[-1].cursor.startswith("delta:")
    got = entries(batches)
    assert set(got) == set(ids)
    e = got[ids[0]]
    # only the selected properties (+ id), lower-cased, booleans as strings
    assert set(e.raw) == {"id", "userprincipalname", "displayname", "accountenabled",
                          "jobtitle", "department"}
    assert e.raw["accountenabled"] == ("true",)
    assert e.name == "user000001@contoso.example.com"
    reqs = delta_requests(fake)
    assert reqs[0]["path"] == "/v1.0/users/delta()"  # the SDK's URL form
    assert "select=id,userPrincipalName,displayName,accountEnabled" in reqs[0]["query"]
    assert [("$skiptoken" in r["query"]) for r in reqs] == [False, True, True]


def test_round_without_changes_costs_one_request(fake: GraphFakeServer,
                                                 graph: GraphConnector) -> None:
    fake.seed(80)
    cursor = read_all(graph, "user")[-1].cursor
    fake.requests(clear=True)
    (batch,) = read_all(graph, "user", cursor)
    assert batch.entries == () and batch.deleted == () and not batch.full
    assert batch.cursor and batch.cursor != cursor
    assert len(fake.requests()) == 1
    # and the new cursor works as well
    (again,) = read_all(graph, "user", batch.cursor)
    assert again.entries == () and not again.full


def test_update_comes_back_alone_with_all_selected_properties(
        fake: GraphFakeServer, graph: GraphConnector) -> None:
    ids = fake.seed(30)["users"]
    cursor = read_all(graph, "user")[-1].cursor
    r = fake.graph("PATCH", f"/users/{ids[7]}", {"jobTitle": "Chief", "department": None})
    assert r.status_code == 204, r.text
    (batch,) = read_all(graph, "user", cursor)
    assert not batch.full
    (e,) = batch.entries
    assert e.external_id == ids[7]
    assert e.raw["jobtitle"] == ("Chief",)
    assert "department" not in e.raw  # cleared: null in the delta, absent in raw
    assert e.raw["displayname"] == ("User 8",)  # unchanged selected property still there


def test_soft_delete_is_deleted_and_restore_brings_the_entry_back(
        fake: GraphFakeServer, graph: GraphConnector) -> None:
    ids = fake.seed(10)["users"]
    cursor = read_all(graph, "user")[-1].cursor
    assert fake.graph("DELETE", f"/users/{ids[2]}").status_code == 204
    (gone,) = read_all(graph, "user", cursor)
    assert gone.deleted == (ids[2],) and gone.entries == ()
    r = fake.graph("POST", f"/directory/deletedItems/{ids[2]}/restore")
    assert r.status_code == 200, r.text
    (back,) = read_all(graph, "user", gone.cursor)
    assert back.deleted == ()
    (e,) = back.entries
    assert e.external_id == ids[2] and e.raw["accountenabled"] == ("true",)
    assert e.raw["userprincipalname"] == ("user000003@contoso.example.com",)


def test_hard_delete_is_deleted(fake: GraphFakeServer, graph: GraphConnector) -> None:
    ids = fake.seed(10)["users"]
    cursor = read_all(graph, "user")[-1].cursor
    assert fake.graph("DELETE", f"/users/{ids[4]}").status_code == 204
    assert fake.graph("DELETE", f"/directory/deletedItems/{ids[4]}").status_code == 204
    (batch,) = read_all(graph, "user", cursor)
    assert batch.deleted == (ids[4],) and batch.entries == ()
    # a full round no longer lists it
    assert ids[4] not in entries(read_all(graph, "user"))


def test_groups_full_members_then_members_delta(fake: GraphFakeServer,
                                                graph: GraphConnector) -> None:
    seeded = fake.seed(60, groups=2, members=45)  # 45 members: split over 3 objects
    users, groups = seeded["users"], seeded["groups"]
    first = read_all(graph, "group", None, ["displayname"])
    got = entries(first)
    assert set(got) == set(groups)
    g0 = got[groups[0]]
    assert g0.members == frozenset(users[0:45])
    assert g0.raw["displayname"] == ("Group 0",)  # not lost to the later partial objects
    assert g0.members_added is None and first[-1].cursor

    outsider, insider = users[50], users[3]
    assert fake.graph("POST", f"/groups/{groups[0]}/members/$ref",
                      {"@odata.id": f"{fake.url}/directoryObjects/{outsider}"}).status_code == 204
    assert fake.graph("DELETE", f"/groups/{groups[0]}/members/{insider}/$ref"
                      ).status_code == 204
    # a nested group is no user member: it comes as a member group
    assert fake.graph("POST", f"/groups/{groups[0]}/members/$ref",
                      {"@odata.id": f"{fake.url}/directoryObjects/{groups[1]}"}).status_code == 204
    (batch,) = read_all(graph, "group", first[-1].cursor, ["displayname"])
    assert not batch.full
    (e,) = batch.entries
    assert e.external_id == groups[0] and e.members is None
    assert e.members_added == {outsider} and e.members_removed == {insider}
    assert e.member_groups_added == {groups[1]} and e.member_groups_removed == frozenset()

    assert fake.graph("DELETE", f"/groups/{groups[1]}").status_code == 204
    (gone,) = read_all(graph, "group", batch.cursor, ["displayname"])
    assert gone.deleted == (groups[1],)
    (holder,) = gone.entries  # the group that held it says so in its members@delta
    assert holder.external_id == groups[0] and holder.member_groups_removed == {groups[1]}


def test_nested_groups_are_member_groups_in_full_and_later_rounds(
        fake: GraphFakeServer, graph: GraphConnector) -> None:
    """members@delta items carry @odata.type: #microsoft.graph.group members are
    `Entry.member_groups` (full round) or member_groups_added/_removed (later rounds), never
    users; a device member is neither."""
    seeded = fake.seed(6, groups=3, members=2)
    users, (outer, inner, other) = seeded["users"], seeded["groups"]

    def add(gid: str, member: str) -> None:
        r = fake.graph("POST", f"/groups/{gid}/members/$ref",
                       {"@odata.id": f"{fake.url}/directoryObjects/{member}"})
        assert r.status_code == 204, r.text

    add(outer, inner)
    add(inner, outer)  # a cycle is data here; the engine names it
    got = entries(read_all(graph, "group", None, ["displayname"]))
    assert got[outer].members == frozenset(users[0:2])
    assert got[outer].member_groups == {inner}
    assert got[inner].member_groups == {outer} and got[other].member_groups == frozenset()
    cursor = read_all(graph, "group", None, ["displayname"])[-1].cursor
    add(outer, other)
    r = fake.graph("DELETE", f"/groups/{outer}/members/{inner}/$ref")
    assert r.status_code == 204, r.text
    (batch,) = read_all(graph, "group", cursor, ["displayname"])
    (e,) = batch.entries
    assert e.external_id == outer and e.members_added == frozenset()
    assert e.member_groups_added == {other} and e.member_groups_removed == {inner}


def test_member_changes_by_odata_type() -> None:
    users_added, users_removed, groups_added, groups_removed = delta.member_changes([
        {"@odata.type": "#microsoft.graph.user", "id": "u1"},
        {"@odata.type": "#microsoft.graph.user", "id": "u2", "@removed": {"reason": "deleted"}},
        {"@odata.type": "#microsoft.graph.group", "id": "g1"},
        {"@odata.type": "#microsoft.graph.group", "id": "g2", "@removed": {"reason": "deleted"}},
        {"@odata.type": "#microsoft.graph.device", "id": "d1"},
        {"id": "u3"},  # no type: a user
    ])
    assert (users_added, users_removed) == ({"u1", "u3"}, {"u2"})
    assert (groups_added, groups_removed) == ({"g1"}, {"g2"})


def test_expired_token_falls_back_to_a_full_round(
        fake: GraphFakeServer, graph: GraphConnector, caplog: pytest.LogCaptureFixture) -> None:
    ids = fake.seed(70)["users"]
    cursor = read_all(graph, "user")[-1].cursor
    fake.expire_tokens()
    with caplog.at_level(logging.WARNING, "syncd.connectors.graph"):
        batches = read_all(graph, "user", cursor)
    assert all(b.full for b in batches) and set(entries(batches)) == set(ids)
    assert any("no longer valid" in r.getMessage() for r in caplog.records)
    statuses = [r["status"] for r in delta_requests(fake)]
    assert 410 in statuses
    (inc,) = read_all(graph, "user", batches[-1].cursor)  # the new cursor is incremental
    assert not inc.full


def test_token_expiring_mid_round_is_retriable(fake: GraphFakeServer,
                                               graph: GraphConnector) -> None:
    fake.seed(120)
    rounds = graph.read("user", None, USER_ATTRS)
    assert len(next(rounds).entries) == 50
    fake.expire_tokens()
    with pytest.raises(Retriable, match="410"):
        next(rounds)


def test_cursor_for_other_attributes_or_endpoint_reads_all(
        fake: GraphFakeServer, graph: GraphConnector) -> None:
    fake.seed(20)
    cursor = read_all(graph, "user")[-1].cursor
    assert cursor is not None
    changed = read_all(graph, "user", cursor, [*USER_ATTRS, "mail"])
    assert changed[0].full and len(entries(changed)) == 20
    assert "mail" in next(iter(entries(changed).values())).raw
    foreign = cursor.replace("http://127.0.0.1", "https://attacker.example.com")
    fake.requests(clear=True)
    assert read_all(graph, "user", foreign)[0].full
    assert all("$deltatoken" not in r["query"] for r in fake.requests())


def test_target_listing_fills_canonical_attrs(fake: GraphFakeServer,
                                              graph: GraphConnector) -> None:
    fake.seed(3)
    (batch,) = list(graph.read("user", None, None))
    e = batch.entries[0]
    assert e.attrs["userPrincipalName"] == "user000001@contoso.example.com"
    assert e.attrs["accountEnabled"] is True and e.attrs["active"] is True
    assert e.attrs["employeeId"] == "100001"


# --- throttling ----------------------------------------------------------------------------


def test_429_retry_after_is_honoured_by_the_sdk(fake: GraphFakeServer,
                                                graph: GraphConnector) -> None:
    fake.seed(5)
    fake.requests(clear=True)
    fake.fault(429, retry_after="1", count=1, match="delta")
    (batch,) = read_all(graph, "user")
    assert len(batch.entries) == 5
    throttled, retried = delta_requests(fake)
    assert throttled["status"] == 429 and retried["status"] == 200
    assert retried["t"] - throttled["t"] >= 1.0
    assert graph.stats.get("http_429") == 1


def test_retries_run_out_as_retriable_with_retry_after(fake: GraphFakeServer) -> None:
    conn = GraphConnector("entra", settings(fake, max_retries=1))
    conn.open()
    try:
        uid = fake.seed(1)["users"][0]
        fake.requests(clear=True)
        fake.fault(429, retry_after="1", count=2, match="/users/")
        with pytest.raises(Retriable) as info:
            conn.update("user", uid, {"jobTitle": "x"})
        assert info.value.retry_after == 1.0
        assert "429" in str(info.value) and "TooManyRequests" in str(info.value)
        assert len(fake.requests()) == 2  # the attempt + max_retries, no more
        # a Retry-After beyond what the SDK waits for: no sleep, straight to the engine
        fake.requests(clear=True)
        fake.fault(429, retry_after="600", count=1, match="/users/")
        with pytest.raises(Retriable) as long:
            conn.update("user", uid, {"jobTitle": "y"})
        assert long.value.retry_after == 600.0 and len(fake.requests()) == 1
    finally:
        conn.close()


# --- writes --------------------------------------------------------------------------------


def test_create_update_deactivate_delete_user(fake: GraphFakeServer,
                                              graph: GraphConnector) -> None:
    created = graph.create("user", {"userPrincipalName": "ada@contoso.example.com",
                                    "givenName": "Ada", "department": "R&D", "active": True})
    uid = created.external_id
    state = fake.state()
    user = state["users"][uid]
    assert user["displayName"] == "ada" and user["mailNickname"] == "ada"
    assert user["accountEnabled"] is True
    assert uid in state["passwords"]  # a generated password satisfied Graph
    assert created.attrs["userPrincipalName"] == "ada@contoso.example.com"

    graph.update("user", uid, {"jobTitle": "Countess", "department": None})
    user = fake.state()["users"][uid]
    assert user["jobTitle"] == "Countess" and "department" not in user
    graph.deactivate("user", uid)
    assert fake.state()["users"][uid]["accountEnabled"] is False
    graph.update("user", uid, {"active": True})
    assert fake.state()["users"][uid]["accountEnabled"] is True

    graph.delete("user", uid)
    assert uid in fake.state()["deleted"]
    graph.delete("user", uid)  # 404: already gone is success
    with pytest.raises(Rejected, match="404"):
        graph.update("user", uid, {"jobTitle": "x"})


def test_write_errors_are_clear(fake: GraphFakeServer, graph: GraphConnector) -> None:
    graph.create("user", {"userPrincipalName": "bob@contoso.example.com"})
    with pytest.raises(Conflict, match="Request_BadRequest: Another object"):
        graph.create("user", {"userPrincipalName": "BOB@contoso.example.com"})
    with pytest.raises(Rejected, match="userPrincipalName is required"):
        graph.create("user", {"displayName": "No UPN"})
    with pytest.raises(Rejected, match="unknown Graph user attribute 'nickName'"):
        graph.update("user", "x", {"nickName": "x"})


def test_groups_and_members(fake: GraphFakeServer, graph: GraphConnector) -> None:
    users = fake.seed(45)["users"]
    group = graph.create("group", {"displayName": "Team Blue & Co"})
    g = fake.state()["groups"][group.external_id]
    assert (g["mailEnabled"], g["securityEnabled"], g["mailNickname"]) == (False, True,
                                                                          "TeamBlueCo")
    fake.requests(clear=True)
    graph.set_members(group.external_id, users[:41], [])
    assert fake.state()["groups"][group.external_id]["members"] == sorted(users[:41])
    assert [r["method"] for r in fake.requests()] == ["PATCH"] * 3  # binds of 20
    # adding members that are already there (a replayed change) is not an error
    graph.set_members(group.external_id, [users[0], users[44]], [users[1], users[42]])
    members = set(fake.state()["groups"][group.external_id]["members"])
    assert members == (set(users[:41]) | {users[44]}) - {users[1]}
    graph.deactivate("group", group.external_id)  # no such state in Graph: nothing happens
    graph.delete("group", group.external_id)
    assert group.external_id not in fake.state()["groups"]


def test_find_escapes_single_quotes(fake: GraphFakeServer, graph: GraphConnector) -> None:
    fake.add_user("o'neil@contoso.example.com", employeeId="E'1")
    fake.add_user("other@contoso.example.com")
    (e,) = graph.find("user", "userPrincipalName", "O'Neil@contoso.example.com")
    assert e.attrs["userPrincipalName"] == "o'neil@contoso.example.com"
    assert graph.find("user", "userPrincipalName", "x' or displayName eq 'other") == []
    (by_id,) = graph.find("user", "employeeId", "E'1")
    assert by_id.external_id == e.external_id
    assert "%24count=true" in fake.requests()[-1]["query"] or "$count=true" in fake.requests(
    )[-1]["query"]
    group = graph.create("group", {"displayName": "Ops 'n' Dev"})
    (found,) = graph.find("group", "displayName", "Ops 'n' Dev")
    assert found.external_id == group.external_id
    with pytest.raises(Rejected, match="cannot search"):
        graph.find("user", "nickName", "x")


def test_odata_literal() -> None:
    assert delta.odata_literal("it's") == "'it''s'"
    assert delta.odata_literal(True) == "true"
    assert delta.filter_for("user", "active", "false") == ("accountEnabled eq false", False)


# --- auth and secrets ----------------------------------------------------------------------


def test_wrong_token_is_fatal_and_secret_free(fake: GraphFakeServer) -> None:
    conn = GraphConnector("entra", settings(fake, token="wrong-secret-4711"))
    with pytest.raises(Fatal) as info:
        conn.open()
    text = str(info.value)
    assert "401" in text and "InvalidAuthenticationToken" in text
    assert "wrong-secret-4711" not in text and TOKEN not in text
    assert "wrong-secret-4711" not in repr(conn.config)


def test_client_secret_credential_failure_is_fatal_and_secret_free(
        fake: GraphFakeServer) -> None:
    """The real azure-identity path: nothing answers at the authority, the secret stays out."""
    secret = "client-secret-do-not-print-42"
    cfg = GraphConfig.model_validate({
        "tenant_id": "contoso.example.com", "client_id": "app-1", "client_secret": secret,
        "endpoint": fake.url, "authority_host": "https://127.0.0.1:9"})
    conn = GraphConnector("entra", cfg)
    with pytest.raises(Fatal) as info:
        conn.open()
    assert secret not in str(info.value) and secret not in repr(cfg)
    assert "could not get a token for http://127.0.0.1" in str(info.value)


def test_config_rules(fake: GraphFakeServer, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="https"):
        GraphConfig.model_validate({"auth": "token", "token": "t",
                                    "endpoint": "http://graph.example.com/v1.0"})
    with pytest.raises(ValidationError, match="loopback"):
        GraphConfig(auth="none", endpoint="https://graph.microsoft.com/v1.0")
    with pytest.raises(ValidationError, match="client_secret"):
        GraphConfig(tenant_id="t", client_id="c")
    with pytest.raises(ValidationError, match="does not exist"):
        GraphConfig(tenant_id="t", client_id="c", auth="certificate",
                    certificate=str(tmp_path / "missing.pem"))
    cfg = GraphConfig.model_validate({"tenant_id": "t", "client_id": "c", "client_secret": "s",
                                      "endpoint": "https://graph.microsoft.us/v1.0/"})
    assert cfg.endpoint == "https://graph.microsoft.us/v1.0"
    assert cfg.scope == "https://graph.microsoft.us/.default"


def test_shipped_configs_validate(monkeypatch: pytest.MonkeyPatch) -> None:
    from syncd.cli.main import main

    for var in ("ENTRA_CLIENT_SECRET", "APP_SCIM_TOKEN", "CORP_LDAP_PASSWORD"):
        monkeypatch.setenv(var, "x")
    for name in ("entra-to-scim.toml", "ldap-to-entra.toml"):
        res = CliRunner().invoke(main, ["validate", "--config", str(REPO / "config" / name)])
        assert res.exit_code == 0, res.output
        assert "ok" in res.output


def test_mapping_typo_for_graph_target_is_a_config_error(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from syncd.cli.main import main

    monkeypatch.setenv("ENTRA_CLIENT_SECRET", "x")
    monkeypatch.setenv("CORP_LDAP_PASSWORD", "x")
    text = (REPO / "config" / "ldap-to-entra.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('givenName = "givenName"', 'givenname = "givenName"'))
    res = CliRunner().invoke(main, ["validate", "--config", str(bad)])
    assert res.exit_code == 2, res.output
    assert "givenname" in res.output


def test_msgraph_is_imported_lazily() -> None:
    code = ("import syncd.cli, syncd.config, syncd_connectors.graph.config,"
            " syncd_connectors.graph.connector;"
            "from syncd import registry; registry.load('graph');"
            "import sys; bad = [m for m in ('msgraph', 'msgraph_core', 'azure.identity',"
            " 'kiota_http') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
    helps = ("import sys; sys.argv = ['syncd', '--help']\nfrom syncd.cli.main import main\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "assert 'msgraph' not in sys.modules")
    subprocess.run([sys.executable, "-c", helps], check=True, cwd=REPO, capture_output=True)
