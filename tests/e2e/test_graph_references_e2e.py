"""Manager references with Microsoft Graph (the local fake, through the real msgraph-sdk)
on either side, through the CLI with the shipped configs: slapd -> Entra ID (``manager`` DN ->
the manager's object id, written with ``PUT manager/$ref``) and Entra ID -> scim2-server (the
manager's object id -> the SCIM id in ``enterprise.manager.value``). Each side is checked
with plain HTTP (the fake's state dump, the SCIM REST API)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_graph_e2e import (
    TOKEN,
    UPN_DOMAIN,
    URN_ENTERPRISE,
    ScimSide,
    entra_connector,
    run,
    shipped,
)
from tests.peers.directory import GROUPS, PEOPLE, user_dn, user_uid
from tests.peers.run_graph_fake import GraphFakeServer
from tests.peers.scim_servers import Scim2Server
from tests.peers.slapd import Slapd

pytestmark = pytest.mark.peers


@pytest.fixture(scope="module")
def _fake() -> Iterator[GraphFakeServer]:
    with GraphFakeServer(token=TOKEN) as server:
        yield server


@pytest.fixture
def fake(_fake: GraphFakeServer) -> GraphFakeServer:
    _fake.reset()
    return _fake


def test_ldap_managers_become_entra_managers(tmp_path: Path, slapd: Slapd,
                                            fake: GraphFakeServer,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("E2E_GRAPH_TOKEN", TOKEN)
    monkeypatch.setenv("E2E_LDAP_PASSWORD", slapd.admin_password)
    config = shipped("ldap-to-entra.toml", tmp_path, {
        "corp": {"type": "ldap", "url": slapd.url, "bind_dn": slapd.admin_dn,
                 "bind_password": "env:E2E_LDAP_PASSWORD",
                 "users": {"base": PEOPLE, "filter": "(objectClass=inetOrgPerson)"},
                 "groups": {"base": GROUPS, "filter": "(objectClass=groupOfNames)"}},
        "entra": entra_connector(fake)})

    def set_manager(i: int, j: int | None) -> None:
        value = f"replace: manager\nmanager: {user_dn(j)}\n" if j is not None else (
            "delete: manager\n")
        slapd.modify(f"dn: {user_dn(i)}\nchangetype: modify\n{value}")

    def managers() -> dict[str, str]:
        state = fake.state()
        upn = {u: o["userPrincipalName"].split("@")[0] for u, o in state["users"].items()}
        return {upn[u]: upn[m] for u, m in state["managers"].items()}

    set_manager(1, 0)  # listed after its manager
    set_manager(0, 3)  # listed before its manager
    first = run(config)
    assert first.code == 0, first.out
    assert managers() == {user_uid(1): user_uid(0), user_uid(0): user_uid(3)}
    assert f"@{UPN_DOMAIN}" in next(iter(fake.state()["users"].values()))["userPrincipalName"]
    again = run(config)
    assert again.doc is not None and again.doc["changes"] == [], again.out
    set_manager(1, 5)
    set_manager(0, None)
    res = run(config)
    assert res.code == 0, res.out
    assert managers() == {user_uid(1): user_uid(5)}
    assert run(config).doc["changes"] == []  # type: ignore[index]


def test_entra_managers_become_scim_managers(tmp_path: Path, fake: GraphFakeServer,
                                             scim2_server: Scim2Server,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("E2E_GRAPH_TOKEN", TOKEN)
    monkeypatch.setenv("E2E_SCIM_TOKEN", scim2_server.token or "")
    config = shipped("entra-to-scim.toml", tmp_path, {
        "entra": entra_connector(fake),
        "app": {"type": "scim", "url": scim2_server.url, "token": "env:E2E_SCIM_TOKEN"}})
    ids = {i: fake.add_user(f"p{i}@contoso.example.com", displayName=f"P {i}",
                            mail=f"p{i}@contoso.example.com") for i in range(4)}

    def put(i: int, j: int) -> None:
        r = fake.graph("PUT", f"/users/{ids[i]}/manager/$ref",
                       {"@odata.id": f"{fake.url}/users/{ids[j]}"})
        assert r.status_code == 204, r.text

    def managers(scim: ScimSide) -> dict[str, Any]:
        users = scim.users()
        by_id = {u["id"]: name for name, u in users.items()}
        return {name: by_id.get(((u.get(URN_ENTERPRISE) or {}).get("manager") or {})
                                .get("value"))
                for name, u in users.items()
                if ((u.get(URN_ENTERPRISE) or {}).get("manager") or {}).get("value")}

    put(1, 0)
    put(0, 3)
    first = run(config)
    assert first.code == 0, first.out
    scim = ScimSide(scim2_server)
    assert managers(scim) == {"p1@contoso.example.com": "p0@contoso.example.com",
                              "p0@contoso.example.com": "p3@contoso.example.com"}
    assert run(config).doc["changes"] == []  # type: ignore[index]
    put(1, 2)
    assert fake.graph("DELETE", f"/users/{ids[0]}/manager/$ref").status_code == 204
    res = run(config)
    assert res.code == 0, res.out
    assert managers(scim) == {"p1@contoso.example.com": "p2@contoso.example.com"}
    assert run(config).doc["changes"] == []  # type: ignore[index]
