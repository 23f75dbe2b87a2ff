"""End to end through the CLI with the shipped Graph configs: Entra ID (the Graph fake) ->
a real scim2-server, and a real slapd -> Entra ID (the Graph fake).

The flows' mappings come from config/entra-to-scim.toml and config/ldap-to-entra.toml
unchanged; only the connectors are pointed at the local peers. Both sides are checked with
plain HTTP (the fake's state dump, the SCIM server's REST API), not with syncd's connectors.
The engine reads full rounds on every run today; incremental reads are covered by
tests/connectors/test_graph.py.
"""

from __future__ import annotations

import contextlib
import json
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from syncd.cli.main import main
from tests.peers.directory import (
    GROUPS,
    PEOPLE,
    group_cn,
    group_dn,
    group_member_indexes,
    user_attrs,
    user_dn,
    user_uid,
)
from tests.peers.ldap_fixtures import SEED, SMALL_GROUPS, SMALL_MEMBERS, SMALL_USERS
from tests.peers.run_graph_fake import GraphFakeServer
from tests.peers.scim_servers import Scim2Server
from tests.peers.slapd import Slapd

REPO = Path(__file__).resolve().parents[2]
TOKEN = "graph-e2e-token-31337"
URN_ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
UPN_DOMAIN = "contoso.onmicrosoft.com"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # JSON strings are TOML basic strings
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):  # an inline table (inside arrays)
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}"
                                for k, x in v.items()) + " }"
    raise TypeError(type(v))


def to_toml(doc: dict[str, Any], prefix: tuple[str, ...] = ()) -> str:
    """TOML for a parsed config: every table as dotted keys (tomllib reads it back equal)."""
    lines = []
    for key, value in doc.items():
        path = (*prefix, key)
        if isinstance(value, dict):
            lines.append(to_toml(value, path))
        else:
            lines.append(".".join(json.dumps(p) for p in path) + " = " + _toml_value(value))
    return "\n".join(line for line in lines if line)


@dataclass
class Result:
    code: int
    out: str
    doc: dict[str, Any] | None


def run(config: Path, *args: str) -> Result:
    res = CliRunner().invoke(main, ["run", "--config", str(config), "--output", "json", *args])
    doc = None
    with contextlib.suppress(ValueError):
        doc = json.loads(res.stdout)
    return Result(res.exit_code, res.output, doc)


def shipped(name: str, tmp: Path, connectors: dict[str, dict[str, Any]]) -> Path:
    """The shipped config with its connectors replaced and a private state store."""
    doc = tomllib.loads((REPO / "config" / name).read_text(encoding="utf-8"))
    doc["state"] = {"url": f"sqlite:///{tmp / 'state.db'}"}
    doc["connectors"] = connectors
    path = tmp / name
    path.write_text(to_toml(doc), encoding="utf-8")
    return path


def changes(doc: dict[str, Any] | None, op: str, kind: str) -> list[dict[str, Any]]:
    assert doc is not None
    return [c for c in doc["changes"] if c["op"] == op and c["kind"] == kind]


@pytest.fixture(scope="module")
def _graph_fake() -> Iterator[GraphFakeServer]:
    with GraphFakeServer(token=TOKEN) as server:
        yield server


@pytest.fixture
def graph_fake(_graph_fake: GraphFakeServer) -> GraphFakeServer:
    _graph_fake.reset()
    return _graph_fake


def entra_connector(fake: GraphFakeServer) -> dict[str, Any]:
    return {"type": "graph", "auth": "token", "token": "env:E2E_GRAPH_TOKEN",
            "endpoint": fake.url, "page_size": 7}


# --- Entra ID -> SCIM ------------------------------------------------------------------------


class ScimSide:
    def __init__(self, server: Scim2Server) -> None:
        self.http = httpx.Client(base_url=server.url, timeout=30,
                                 headers={"Authorization": f"Bearer {server.token}"})

    def list(self, resource: str) -> list[dict[str, Any]]:
        r = self.http.get(f"/{resource}", params={"count": 1000})
        r.raise_for_status()
        return list(r.json().get("Resources", []))

    def users(self) -> dict[str, dict[str, Any]]:
        return {u["userName"]: u for u in self.list("Users")}

    def members(self, group: str) -> set[str]:
        (g,) = [g for g in self.list("Groups") if g["displayName"] == group]
        names = {u["id"]: u["userName"] for u in self.list("Users")}
        return {names[m["value"]] for m in g.get("members") or []}


def test_entra_to_scim(tmp_path: Path, graph_fake: GraphFakeServer, scim2_server: Scim2Server,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("E2E_GRAPH_TOKEN", TOKEN)
    monkeypatch.setenv("E2E_SCIM_TOKEN", scim2_server.token or "")
    config = shipped("entra-to-scim.toml", tmp_path, {
        "entra": entra_connector(graph_fake),
        "app": {"type": "scim", "url": scim2_server.url, "token": "env:E2E_SCIM_TOKEN"}})
    ids = {}
    for i in range(10):
        upn = f"person{i}@contoso.example.com"
        ids[upn] = graph_fake.add_user(
            upn, displayName=f"Person {i}", givenName="Per", surname=f"Son{i}",
            mail=f"Person{i}@Contoso.example.com", jobTitle="Engineer", department="R&D",
            employeeId=f"E{i:03d}", **({"city": "Berlin", "country": "DE", "postalCode": "10115",
                                        "officeLocation": "B-2.14", "preferredLanguage": "de-DE",
                                        "businessPhones": ["+49 30 1234", "+49 30 5678"],
                                        "mobilePhone": "+49 171 0000"} if i == 1 else {}))
    members = [f"person{i}@contoso.example.com" for i in (1, 2, 3)]
    r = graph_fake.graph("POST", "/groups", {
        "displayName": "Engineers", "mailEnabled": False, "securityEnabled": True,
        "mailNickname": "eng",
        "members@odata.bind": [f"{graph_fake.url}/directoryObjects/{ids[m]}" for m in members]})
    assert r.status_code == 201, r.text
    scim = ScimSide(scim2_server)

    first = run(config)
    assert first.code == 0, first.out
    users = scim.users()
    assert len(users) == 10
    p1 = users["person1@contoso.example.com"]
    assert p1["displayName"] == "Person 1" and p1["title"] == "Engineer"
    assert p1["name"] == {"givenName": "Per", "familyName": "Son1"} | {
        k: v for k, v in p1["name"].items() if k not in ("givenName", "familyName")}
    assert p1["emails"][0]["value"] == "person1@contoso.example.com"
    assert p1["active"] is True and p1["externalId"] == ids["person1@contoso.example.com"]
    assert p1[URN_ENTERPRISE] == {"department": "R&D", "employeeNumber": "E001"}
    # the rest of Entra's default mapping (config/entra-to-scim.toml)
    assert p1["name"]["formatted"] == "Per Son1" and p1["preferredLanguage"] == "de-DE"
    (work,) = p1["addresses"]
    assert (work["type"], work["locality"], work["country"], work["postalCode"],
            work["formatted"]) == ("work", "Berlin", "DE", "10115", "B-2.14")
    assert {(p["type"], p["value"]) for p in p1["phoneNumbers"]} == {
        ("work", "+49 30 1234"), ("mobile", "+49 171 0000")}
    assert "addresses" not in users["person2@contoso.example.com"]
    assert scim.members("Engineers") == set(members)
    assert changes(run(config).doc, "update", "user") == []

    # update in Entra -> PATCH on the SCIM side
    graph_fake.graph("PATCH", f"/users/{ids['person4@contoso.example.com']}",
                     {"jobTitle": "Lead", "accountEnabled": False})
    res = run(config)
    assert res.code == 0, res.out
    (up,) = changes(res.doc, "update", "user")
    assert up["attrs"] == {"title": "Lead", "active": False}
    assert scim.users()["person4@contoso.example.com"]["active"] is False

    # soft delete -> deprovisioned (active=false) and out of the group
    graph_fake.graph("DELETE", f"/users/{ids['person2@contoso.example.com']}")
    res = run(config)
    assert res.code == 0, res.out
    assert [c["name"] for c in changes(res.doc, "deprovision", "user")] == [
        "person2@contoso.example.com"]
    assert scim.users()["person2@contoso.example.com"]["active"] is False
    assert scim.members("Engineers") == {members[0], members[2]}

    # restore -> re-enabled, membership back
    r = graph_fake.graph("POST",
                         f"/directory/deletedItems/{ids['person2@contoso.example.com']}/restore")
    assert r.status_code == 200, r.text
    res = run(config)
    assert res.code == 0, res.out
    assert scim.users()["person2@contoso.example.com"]["active"] is True
    assert scim.members("Engineers") == set(members)
    again = run(config)
    assert again.doc is not None and again.doc["changes"] == []


def test_entra_nested_groups_flattened_to_scim(tmp_path: Path, graph_fake: GraphFakeServer,
                                               scim2_server: Scim2Server,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Entra ID as a source of nested groups: a group that is a member of a group comes
    in members@delta typed #microsoft.graph.group; with nested = "flatten" each SCIM group
    gets the users of the groups it contains. Later runs read delta rounds (incremental):
    a user added to the inner group, a group added to and one removed from the outer group
    reach the outer group without it being read in full; a full reconcile plans nothing."""
    monkeypatch.setenv("E2E_GRAPH_TOKEN", TOKEN)
    monkeypatch.setenv("E2E_SCIM_TOKEN", scim2_server.token or "")
    config = shipped("entra-to-scim.toml", tmp_path, {
        "entra": entra_connector(graph_fake),
        "app": {"type": "scim", "url": scim2_server.url, "token": "env:E2E_SCIM_TOKEN"}})
    doc = tomllib.loads(config.read_text(encoding="utf-8"))
    doc["flows"]["entra-to-app"]["groups"]["nested"] = "flatten"
    config.write_text(to_toml(doc), encoding="utf-8")
    upn = [f"nest{i}@contoso.example.com" for i in range(6)]
    ids = [graph_fake.add_user(u, displayName=f"Nest {i}", givenName="Ne", surname=f"St{i}",
                               mail=u) for i, u in enumerate(upn)]

    def group(name: str, *members: str) -> str:
        r = graph_fake.graph("POST", "/groups", {
            "displayName": name, "mailEnabled": False, "securityEnabled": True,
            "mailNickname": name.lower(),
            "members@odata.bind": [f"{graph_fake.url}/directoryObjects/{m}" for m in members]})
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def member(gid: str, oid: str, add: bool = True) -> None:
        r = (graph_fake.graph("POST", f"/groups/{gid}/members/$ref",
                              {"@odata.id": f"{graph_fake.url}/directoryObjects/{oid}"})
             if add else graph_fake.graph("DELETE", f"/groups/{gid}/members/{oid}/$ref"))
        assert r.status_code == 204, r.text

    inner = group("Inner", ids[1], ids[2])
    other = group("Other", ids[4])
    outer = group("Outer", ids[0], inner)
    scim = ScimSide(scim2_server)
    first = run(config)
    assert first.code == 0, first.out
    assert scim.members("Outer") == {upn[0], upn[1], upn[2]}
    assert scim.members("Inner") == {upn[1], upn[2]}

    member(inner, ids[3])
    member(outer, other)
    second = run(config)
    assert second.code == 0, second.out
    assert second.doc is not None
    assert second.doc["flows"][0]["reads"]["group"] == "incremental"
    assert scim.members("Outer") == {upn[0], upn[1], upn[2], upn[3], upn[4]}
    assert scim.members("Inner") == {upn[1], upn[2], upn[3]}

    member(outer, inner, add=False)
    third = run(config)
    assert third.code == 0, third.out
    assert scim.members("Outer") == {upn[0], upn[4]}
    full = run(config, "--full")
    assert full.doc is not None and full.doc["changes"] == [], full.out


# --- LDAP -> Entra ID ------------------------------------------------------------------------


def test_ldap_to_entra(tmp_path: Path, slapd: Slapd, graph_fake: GraphFakeServer,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("E2E_GRAPH_TOKEN", TOKEN)
    monkeypatch.setenv("E2E_LDAP_PASSWORD", slapd.admin_password)
    config = shipped("ldap-to-entra.toml", tmp_path, {
        "corp": {"type": "ldap", "url": slapd.url, "bind_dn": slapd.admin_dn,
                 "bind_password": "env:E2E_LDAP_PASSWORD",
                 "users": {"base": PEOPLE, "filter": "(objectClass=inetOrgPerson)"},
                 "groups": {"base": GROUPS, "filter": "(objectClass=groupOfNames)"}},
        "entra": entra_connector(graph_fake)})

    def users() -> dict[str, dict[str, Any]]:
        return {u["userPrincipalName"]: u for u in graph_fake.state()["users"].values()}

    def upn(i: int) -> str:
        return f"{user_uid(i)}@{UPN_DOMAIN}"

    def cn(i: int) -> str:
        return user_attrs(i, SEED)["cn"][0]

    def group_members(j: int) -> set[str]:
        state = graph_fake.state()
        (g,) = [g for g in state["groups"].values() if g["displayName"] == group_cn(j)]
        return {state["users"][m]["userPrincipalName"] for m in g["members"]}

    first = run(config)
    assert first.code == 0, first.out
    got = users()
    assert len(got) == SMALL_USERS
    u1, attrs1 = got[upn(1)], user_attrs(1, SEED)
    assert u1["displayName"] == attrs1["cn"][0] and u1["surname"] == attrs1["sn"][0]
    assert u1["givenName"] == attrs1["givenname"][0] and u1["mailNickname"] == user_uid(1)
    assert u1["jobTitle"] == attrs1["title"][0] and u1["employeeId"] == "100001"
    assert u1["mail"] == f"{user_uid(1)}@example.com" and u1["accountEnabled"] is True
    assert set(graph_fake.state()["passwords"]) >= {u["id"] for u in got.values()}
    state = graph_fake.state()
    assert len(state["groups"]) == SMALL_GROUPS
    assert all(g["securityEnabled"] and not g["mailEnabled"] for g in state["groups"].values())
    expected = {upn(i) for i in group_member_indexes(0, SMALL_USERS, SMALL_MEMBERS, SEED)}
    assert group_members(0) == expected
    again = run(config)
    assert again.doc is not None and again.doc["changes"] == [], again.out

    # update and clear -> PATCH with exactly those properties
    slapd.modify(f"dn: {user_dn(1)}\nchangetype: modify\nreplace: title\ntitle: Chief\n")
    slapd.modify(f"dn: {user_dn(2)}\nchangetype: modify\ndelete: title\n")
    res = run(config)
    assert res.code == 0, res.out
    # the engine labels changes by userName / userPrincipalName, else displayName
    ups = {c["name"]: c["attrs"] for c in changes(res.doc, "update", "user")}
    assert ups == {upn(1): {"jobTitle": "Chief"}, upn(2): {"jobTitle": None}}
    assert users()[upn(1)]["jobTitle"] == "Chief" and "jobTitle" not in users()[upn(2)]

    # removed from LDAP -> accountEnabled=false, and out of its groups
    index = group_member_indexes(0, SMALL_USERS, SMALL_MEMBERS, SEED)[0]
    member = upn(index)
    slapd.delete(user_dn(index))
    slapd.modify(f"dn: {group_dn(0)}\nchangetype: modify\ndelete: member\n"
                 f"member: {user_dn(index)}\n")
    res = run(config)
    assert res.code == 0, res.out
    # named as its creates are: by the userPrincipalName the mapping wrote
    assert [c["name"] for c in changes(res.doc, "deprovision", "user")] == [member]
    assert users()[member]["accountEnabled"] is False
    assert member not in group_members(0)
    final = run(config)
    assert final.doc is not None and final.doc["changes"] == [], final.out


# --- Entra ID -> LDAP ------------------------------------------------------------------------


def test_entra_to_ldap(tmp_path: Path, graph_fake: GraphFakeServer, slapd: Slapd,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    import ldap3

    monkeypatch.setenv("E2E_GRAPH_TOKEN", TOKEN)
    monkeypatch.setenv("E2E_LDAP_PASSWORD", slapd.admin_password)
    slapd.add(f"dn: ou=disabled,{slapd.base}\nobjectClass: organizationalUnit\nou: disabled\n")
    config = shipped("entra-to-ldap.toml", tmp_path, {
        "entra": entra_connector(graph_fake),
        "corp": {"type": "ldap", "url": slapd.url, "bind_dn": slapd.admin_dn,
                 "bind_password": "env:E2E_LDAP_PASSWORD",
                 "users": {"base": PEOPLE, "filter": "(objectClass=inetOrgPerson)",
                           "write": {"rdn_attribute": "uid", "disable": {
                               "method": "move", "ou": f"ou=disabled,{slapd.base}"}}},
                 "groups": {"base": GROUPS, "filter": "(objectClass=groupOfNames)"}}})
    ids = {i: graph_fake.add_user(f"Entra{i}@contoso.example.com", displayName=f"Entra {i}",
                                  givenName="En", surname=f"Tra{i}",
                                  mail=f"Entra{i}@Contoso.example.com", jobTitle="Engineer")
           for i in range(4)}
    r = graph_fake.graph("POST", "/groups", {
        "displayName": "Entra Team", "mailEnabled": False, "securityEnabled": True,
        "mailNickname": "team",
        "members@odata.bind": [f"{graph_fake.url}/directoryObjects/{ids[i]}" for i in (0, 1)]})
    assert r.status_code == 201, r.text
    r = graph_fake.graph("PUT", f"/users/{ids[1]}/manager/$ref",
                         {"@odata.id": f"{graph_fake.url}/users/{ids[0]}"})
    assert r.status_code == 204, r.text

    def ldap_users() -> dict[str, dict[str, Any]]:
        conn = ldap3.Connection(slapd.url, slapd.admin_dn, slapd.admin_password, auto_bind=True)
        conn.search(slapd.base, "(uid=entra*)", attributes=["*"])
        out = {str(e.uid): {**e.entry_attributes_as_dict, "dn": e.entry_dn}
               for e in conn.entries}
        conn.unbind()
        return out

    first = run(config)
    assert first.code == 0, first.out
    users = ldap_users()
    assert set(users) == {f"entra{i}" for i in range(4)}
    assert users["entra1"]["sn"] == ["Tra1"] and users["entra1"]["mail"] == [
        "entra1@contoso.example.com"]
    assert [m.lower() for m in users["entra1"]["manager"]] == [users["entra0"]["dn"].lower()]
    assert "manager" not in users["entra0"]
    conn = ldap3.Connection(slapd.url, slapd.admin_dn, slapd.admin_password, auto_bind=True)
    conn.search(GROUPS, "(cn=Entra Team)", attributes=["member"])
    members = {str(m).lower() for m in conn.entries[0].member.values}
    conn.unbind()
    assert {users["entra0"]["dn"].lower(), users["entra1"]["dn"].lower()} <= members
    assert run(config).doc["changes"] == []  # type: ignore[index]

    graph_fake.graph("PATCH", f"/users/{ids[2]}", {"jobTitle": "Lead"})
    res = run(config)
    assert res.code == 0, res.out
    (up,) = changes(res.doc, "update", "user")
    assert up["attrs"] == {"title": "Lead"}
    assert ldap_users()["entra2"]["title"] == ["Lead"]

    graph_fake.graph("DELETE", f"/users/{ids[3]}")
    res = run(config)
    assert res.code == 0, res.out
    assert "ou=disabled" in ldap_users()["entra3"]["dn"].lower()
