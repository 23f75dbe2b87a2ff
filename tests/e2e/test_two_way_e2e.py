"""Two-way LDAP (real slapd) <-> SCIM (real scim2-server), through the CLI.

Each test settles an initial sync first, then edits one or both sides directly (ldapmodify,
plain SCIM HTTP) and checks what syncd did to the other side, and that the flow reaches a
fixed point: a further cycle plans nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ldap3
import pytest
from click.testing import CliRunner

from syncd.cli.main import main
from tests.peers.directory import GROUPS, PEOPLE, group_dn, user_dn, user_uid
from tests.peers.scim_servers import Scim2Server
from tests.peers.slapd import Slapd

PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

CONFIG = """
[state]
url = "sqlite:///{state}"

[connectors.corp]
type = "ldap"
url = "{ldap}"
bind_dn = "{bind_dn}"
bind_password = "env:TW_LDAP_PASSWORD"
users = {{ base = "{people}", filter = "(objectClass=inetOrgPerson)" }}
groups = {{ base = "{groups}", filter = "(objectClass=groupOfNames)" }}

[connectors.app]
type = "scim"
url = "{scim}"
token = "env:TW_SCIM_TOKEN"

[flows.two]
source = "corp"
target = "app"
mode = "two_way"
match = ["userName"]
{extra}

[flows.two.users]
{users_extra}

[flows.two.users.mapping]
userName = "uid"
displayName = "cn"
"name.givenName" = "givenName"
"name.familyName" = "sn"
"emails.work" = "mail"
title = "title"
"enterprise.costCenter" = "uidNumber"
externalId = "entryUUID"

[flows.two.groups.mapping]
displayName = "cn"
"""


class TwoWayPeers:
    def __init__(self, tmp: Path, ldap: Slapd, scim: Scim2Server,
                 mp: pytest.MonkeyPatch) -> None:
        self.tmp, self.ldap, self.scim = tmp, ldap, scim
        mp.setenv("TW_LDAP_PASSWORD", ldap.admin_password)
        mp.setenv("TW_SCIM_TOKEN", scim.token or "")
        self.http = httpx.Client(base_url=scim.url, timeout=30,
                                 headers={"Authorization": f"Bearer {scim.token}"})
        self.configure()

    def configure(self, extra: str = "", users_extra: str = "") -> None:
        self.config = self.tmp / "two.toml"
        self.config.write_text(CONFIG.format(
            state=self.tmp / "state.db", ldap=self.ldap.url, bind_dn=self.ldap.admin_dn,
            people=PEOPLE, groups=GROUPS, scim=self.scim.url, extra=extra,
            users_extra=users_extra))

    def run(self, *args: str, ok: bool = True) -> dict[str, Any]:
        res = CliRunner().invoke(main, ["run", "-c", str(self.config), "-o", "json", *args])
        doc = json.loads(res.stdout)
        if ok:
            assert res.exit_code == 0, res.output
        return doc

    def settle(self) -> None:
        self.run()
        assert self.run()["changes"] == [], "fixed point after the initial sync"

    # -- SCIM side ----------------------------------------------------------------------
    def scim_user(self, uid: str) -> dict[str, Any]:
        r = self.http.get("/Users", params={"filter": f'userName eq "{uid}"'})
        (u,) = r.json()["Resources"]
        return u

    def scim_patch(self, uid: str, ops: list[dict[str, Any]]) -> None:
        r = self.http.patch(f"/Users/{self.scim_user(uid)['id']}",
                            json={"schemas": [PATCH], "Operations": ops})
        assert r.status_code in (200, 204), r.text

    # -- LDAP side ----------------------------------------------------------------------
    def ldap_entry(self, uid: str) -> dict[str, Any] | None:
        conn = ldap3.Connection(self.ldap.url, self.ldap.admin_dn, self.ldap.admin_password,
                                auto_bind=True)
        conn.search(PEOPLE, f"(uid={uid})", attributes=["*", "entryUUID"])
        found = [dict(e.entry_attributes_as_dict) for e in conn.entries]
        conn.unbind()
        return found[0] if found else None

    def ldap_set(self, i: int, attr: str, value: str | None) -> None:
        op = f"replace: {attr}\n{attr}: {value}\n" if value is not None else f"delete: {attr}\n"
        self.ldap.modify(f"dn: {user_dn(i)}\nchangetype: modify\n{op}")


@pytest.fixture
def tw(tmp_path: Path, slapd: Slapd, scim2_server: Scim2Server,
       monkeypatch: pytest.MonkeyPatch) -> Iterator[TwoWayPeers]:
    yield TwoWayPeers(tmp_path, slapd, scim2_server, monkeypatch)


def updates(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in doc["changes"] if c["op"] == "update"]


def test_ldap_change_reaches_scim_and_is_not_echoed(tw: TwoWayPeers) -> None:
    tw.settle()
    tw.ldap_set(1, "title", "From LDAP")
    doc = tw.run()
    (c,) = updates(doc)
    assert c["attrs"] == {"title": "From LDAP"} and "source_attrs" not in c
    assert tw.scim_user(user_uid(1))["title"] == "From LDAP"
    assert tw.run()["changes"] == [] and tw.run()["changes"] == []


def test_scim_change_is_written_back_to_ldap(tw: TwoWayPeers) -> None:
    tw.settle()
    tw.scim_patch(user_uid(2), [{"op": "replace", "path": "title", "value": "From App"}])
    doc = tw.run()
    (c,) = updates(doc)
    assert c["source_attrs"] == {"title": "From App"} and "attrs" not in c
    assert tw.ldap_entry(user_uid(2))["title"] == ["From App"]  # type: ignore[index]
    assert tw.run()["changes"] == [], "the write-back must not echo"


def test_different_attributes_on_both_sides_both_propagate(tw: TwoWayPeers) -> None:
    tw.settle()
    tw.ldap_set(3, "title", "LDAP title")
    tw.scim_patch(user_uid(3), [{"op": "replace", "path": "name.givenName", "value": "Appy"}])
    tw.run()
    assert tw.scim_user(user_uid(3))["title"] == "LDAP title"
    assert tw.ldap_entry(user_uid(3))["givenName"] == ["Appy"]  # type: ignore[index]
    assert tw.run()["changes"] == []


@pytest.mark.parametrize(("rule", "winner"), [
    ("source", "L"), ("target", "S"), ("newest", "S")])
def test_same_attribute_changed_on_both_sides_follows_authority(
        tw: TwoWayPeers, rule: str, winner: str) -> None:
    tw.configure(users_extra=f'authority = {{ title = "{rule}" }}')
    tw.settle()
    tw.ldap_set(4, "title", "L")
    tw.scim_patch(user_uid(4), [{"op": "replace", "path": "title", "value": "S"}])  # later
    tw.run()
    assert tw.scim_user(user_uid(4))["title"] == winner
    assert tw.ldap_entry(user_uid(4))["title"] == [winner]  # type: ignore[index]
    assert tw.run()["changes"] == []


def test_manual_conflict_is_held_and_resolved_by_operator(tw: TwoWayPeers) -> None:
    tw.configure(users_extra='authority = { title = "manual" }')
    tw.settle()
    tw.ldap_set(5, "title", "L")
    tw.scim_patch(user_uid(5), [{"op": "replace", "path": "title", "value": "S"}])
    doc = tw.run()
    assert any("conflict on title" in h["reason"] for h in doc["flows"][0]["held"])
    listed = CliRunner().invoke(main, ["conflicts", "-c", str(tw.config), "-o", "json"])
    (row,) = json.loads(listed.stdout)
    assert (row["source_value"], row["target_value"]) == ("L", "S")
    res = CliRunner().invoke(main, ["conflicts", "-c", str(tw.config), "resolve", row["id"],
                                    "--take", "Agreed"])
    assert res.exit_code == 0, res.output
    tw.run()
    assert tw.scim_user(user_uid(5))["title"] == "Agreed"
    assert tw.ldap_entry(user_uid(5))["title"] == ["Agreed"]  # type: ignore[index]
    assert tw.run()["changes"] == []


def test_rename_on_scim_renames_ldap_entry_keeping_its_anchor(tw: TwoWayPeers) -> None:
    tw.settle()
    before = tw.ldap_entry(user_uid(6))
    assert before is not None
    tw.scim_patch(user_uid(6), [{"op": "replace", "path": "userName", "value": "renamed6"}])
    tw.run()
    assert tw.ldap_entry(user_uid(6)) is None
    after = tw.ldap_entry("renamed6")
    assert after is not None and after["entryUUID"] == before["entryUUID"]
    assert tw.run()["changes"] == []


def test_deletes_on_either_side(tw: TwoWayPeers) -> None:
    tw.settle()
    tw.ldap.delete(user_dn(7))
    tw.run()
    assert tw.scim_user(user_uid(7))["active"] is False
    # a SCIM delete: recreated by default ...
    gone = tw.scim_user(user_uid(8))["id"]
    assert tw.http.delete(f"/Users/{gone}").status_code == 204
    doc = tw.run("--full")
    assert [c["op"] for c in doc["changes"] if c["name"] == user_uid(8)] == ["create"]
    assert tw.scim_user(user_uid(8))["id"] != gone
    # ... or deletes the LDAP entry with reverse_deprovision = "delete"
    tw.configure(extra='reverse_deprovision = "delete"')
    assert tw.http.delete(f"/Users/{tw.scim_user(user_uid(9))['id']}").status_code == 204
    tw.run("--full")
    assert tw.ldap_entry(user_uid(9)) is None


def test_creates_on_either_side_per_rule(tw: TwoWayPeers) -> None:
    tw.settle()
    tw.ldap.add(f"dn: uid=newldap,{PEOPLE}\nobjectClass: inetOrgPerson\nuid: newldap\n"
                f"cn: New Ldap\nsn: Ldap\nmail: newldap@example.com\n")
    tw.run()
    assert tw.scim_user("newldap")["name"]["familyName"] == "Ldap"
    r = tw.http.post("/Users", json={
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "newapp",
        "displayName": "New App", "name": {"familyName": "App", "givenName": "New"}})
    assert r.status_code == 201, r.text
    doc = tw.run()
    assert not [c for c in doc["changes"] if c["name"] == "newapp"], "create = source"
    assert tw.ldap_entry("newapp") is None
    tw.configure(extra='create = "both"')
    tw.run("--full")
    entry = tw.ldap_entry("newapp")
    assert entry is not None and entry["sn"] == ["App"] and entry["cn"] == ["New App"]
    tw.run()
    assert tw.run()["changes"] == []


def test_group_membership_edited_on_both_sides(tw: TwoWayPeers) -> None:
    tw.settle()
    g = tw.http.get("/Groups", params={"filter": 'displayName eq "group0000"'}).json()[
        "Resources"][0]
    in_scim = {m["value"] for m in g.get("members") or []}
    extra_user = next(u for u in (tw.scim_user(user_uid(i)) for i in range(20, 30))
                      if u["id"] not in in_scim)
    r = tw.http.patch(f"/Groups/{g['id']}", json={"schemas": [PATCH], "Operations": [
        {"op": "add", "path": "members", "value": [{"value": extra_user["id"]}]}]})
    assert r.status_code in (200, 204), r.text
    tw.ldap.modify(f"dn: {group_dn(0)}\nchangetype: modify\nadd: member\n"
                   f"member: {user_dn(29 if extra_user['userName'] != user_uid(29) else 28)}\n")
    tw.run()
    conn = ldap3.Connection(tw.ldap.url, tw.ldap.admin_dn, tw.ldap.admin_password,
                            auto_bind=True)
    conn.search(group_dn(0), "(objectClass=*)", search_scope="BASE", attributes=["member"])
    members = {str(m).lower() for m in conn.entries[0].member.values}
    conn.unbind()
    assert user_dn(int(extra_user["userName"][4:])).lower() in members, "app add -> LDAP"
    g2 = tw.http.get(f"/Groups/{g['id']}").json()
    assert len(g2["members"]) == len(in_scim) + 2, "both additions on the app side"
    assert tw.run()["changes"] == []


def test_schema_violation_on_ldap_rejects_only_that_object(tw: TwoWayPeers) -> None:
    """inetOrgPerson has no uidNumber: writing it back is refused by slapd for that user,
    while another user's write-back in the same run succeeds."""
    tw.settle()
    tw.scim_patch(user_uid(10), [{"op": "add", "path": (
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter"),
        "value": "4711"}])
    tw.scim_patch(user_uid(11), [{"op": "replace", "path": "title", "value": "Fine"}])
    doc = tw.run(ok=False)
    (f,) = doc["flows"][0]["failures"]
    assert f["name"] == user_uid(10) and f["error_class"] == "Rejected"
    assert "uid=" in f["message"]
    assert tw.ldap_entry(user_uid(11))["title"] == ["Fine"]  # type: ignore[index]
