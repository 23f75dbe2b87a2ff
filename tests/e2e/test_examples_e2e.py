"""The shipped example configs run as written against the real servers they are for: only
the connectors' addresses, credentials and bases are replaced (and a private state store).

- config/openldap-to-scim.toml: slapd -> scim2-server: scope (staff, or contractors with a
  sponsor), "Given Family", ASCII lower-case mail, active = not (a nologin shell), title for
  contractors, telephone digits, the manager as the application's user id.
- config/ad-to-scim.toml: a Samba AD DC -> scim2-server with a custom extension:
  userAccountControl's ACCOUNTDISABLE bit, accountExpires (FILETIME) as a dateTime, the
  manager, service accounts out of scope, nested groups flattened.

The SCIM side is read with plain HTTP, independent of syncd's connector.
"""

from __future__ import annotations

import base64
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_graph_e2e import Result, run, to_toml
from tests.peers.samba import BASE as AD_BASE
from tests.peers.samba import SambaDC
from tests.peers.scim_fixtures import URN_ACME
from tests.peers.scim_servers import Scim2Server
from tests.peers.slapd import Slapd

pytestmark = pytest.mark.peers

REPO = Path(__file__).resolve().parents[2]
URN_ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def shipped(name: str, tmp: Path, connectors: dict[str, dict[str, Any]]) -> Path:
    """The shipped config, with each named connector's keys overridden and a private store."""
    doc = tomllib.loads((REPO / "config" / name).read_text(encoding="utf-8"))
    doc["state"] = {"url": f"sqlite:///{tmp / 'state.db'}"}
    for conn, keys in connectors.items():
        doc["connectors"][conn].update(keys)
    path = tmp / name
    path.write_text(to_toml(doc), encoding="utf-8")
    return path


def scim_users(server: Scim2Server) -> dict[str, dict[str, Any]]:
    with httpx.Client(base_url=server.url, timeout=30,
                      headers={"Authorization": f"Bearer {server.token}"}) as http:
        body = http.get("/Users", params={"count": 500}).json()
    return {u["userName"]: u for u in body.get("Resources", [])}


def scim_groups(server: Scim2Server) -> dict[str, set[str]]:
    """Group name -> member user names."""
    users = {u["id"]: name for name, u in scim_users(server).items()}
    with httpx.Client(base_url=server.url, timeout=30,
                      headers={"Authorization": f"Bearer {server.token}"}) as http:
        body = http.get("/Groups", params={"count": 500}).json()
    return {g["displayName"]: {users[m["value"]] for m in g.get("members") or []}
            for g in body.get("Resources", [])}


def quiet(res: Result) -> bool:
    assert res.doc is not None, res.out
    return res.doc["changes"] == [] and res.code == 0


# --- OpenLDAP ------------------------------------------------------------------------------

STAFF = "ou=staff,dc=example,dc=org"
TEAMS = "ou=teams,dc=example,dc=org"


def _person(uid: str, given: str, sn: str, kind: str, **more: str) -> str:
    posix = "shell" in more
    lines = [f"dn: uid={uid},{STAFF}", "objectClass: inetOrgPerson"]
    if posix:
        lines += ["objectClass: posixAccount", f"uidNumber: {1000 + len(uid)}",
                  "gidNumber: 100", f"homeDirectory: /home/u{1000 + len(uid)}",
                  f"loginShell: {more.pop('shell')}"]
    lines += [f"uid: {uid}", f"cn: {given} {sn}", f"givenName: {given}", f"sn: {sn}",
              f"employeeType: {kind}"]
    lines += [f"{k}: {v}" for k, v in more.items()]
    return "\n".join(lines) + "\n"


def test_openldap_example(tmp_path: Path, slapd: Slapd, scim2_server: Scim2Server,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    boss = f"uid=boss,{STAFF}"
    slapd.add(f"dn: {STAFF}\nobjectClass: organizationalUnit\nou: staff\n\n"
              f"dn: {TEAMS}\nobjectClass: organizationalUnit\nou: teams\n\n" + "\n".join([
                  # the report comes before its manager in the listing: resolved all the same
                  # no mail (IA5 cannot hold it anyway): built from the uid, ASCII
                  _person("Zoë", "Zoë", "Ångström", "staff",
                          manager=boss.upper(), shell="/bin/bash",
                          telephoneNumber="+49 (30) 1234-56", title="Engineer"),
                  _person("boss", "Bo", "Ss", "staff", mail="BOSS@example.com"),
                  _person("locked", "Lock", "Ed", "staff", shell="/usr/sbin/nologin"),
                  _person("carl", "Carl", "Tor", "contractor", manager=boss, title="Tester"),
                  _person("nosponsor", "No", "Sponsor", "contractor"),
                  _person("intern", "In", "Tern", "intern"),
              ]) + f"\ndn: cn=app-users,{TEAMS}\nobjectClass: groupOfNames\ncn: app-users\n"
              f"member: uid=Zoë,{STAFF}\nmember: uid=carl,{STAFF}\n")
    monkeypatch.setenv("CORP_LDAP_PASSWORD", slapd.admin_password)
    monkeypatch.setenv("APP_SCIM_TOKEN", scim2_server.token or "")
    cfg = shipped("openldap-to-scim.toml", tmp_path, {
        "corp": {"url": slapd.url, "bind_dn": slapd.admin_dn,
                 "users": {"base": STAFF, "filter": "(objectClass=inetOrgPerson)"},
                 "groups": {"base": TEAMS, "filter": "(objectClass=groupOfNames)"}},
        "app": {"url": scim2_server.url}})

    first = run(cfg)
    assert first.code == 0, first.out
    users = scim_users(scim2_server)
    assert set(users) == {"zoë", "boss", "locked", "carl"}
    zoe = users["zoë"]
    assert zoe["displayName"] == "Zoë Ångström"
    assert zoe["emails"][0]["value"] == "zoe@example.com"
    assert users["boss"]["emails"][0]["value"] == "boss@example.com"
    assert zoe["phoneNumbers"][0]["value"] == "+4930123456"
    assert zoe["title"] == "Engineer" and zoe["active"] is True
    assert zoe[URN_ENTERPRISE]["manager"]["value"] == users["boss"]["id"]
    assert users["carl"]["title"] == "Tester (contractor)"
    assert users["carl"][URN_ENTERPRISE]["manager"]["value"] == users["boss"]["id"]
    assert users["locked"]["active"] is False
    assert "manager" not in users["boss"].get(URN_ENTERPRISE, {})
    assert scim_groups(scim2_server) == {"app-users": {"zoë", "carl"}}
    assert quiet(run(cfg))
    assert quiet(run(cfg, "--full"))

    # carl loses his sponsor: out of the scope, deprovisioned (disabled), and said why
    slapd.modify(f"dn: uid=carl,{STAFF}\nchangetype: modify\ndelete: manager\n")
    res = run(cfg)
    assert res.doc is not None
    (gone,) = [c for c in res.doc["changes"] if c["op"] == "deprovision"]
    assert gone["name"] == "carl" and "manager present" in gone["reason"]
    assert scim_users(scim2_server)["carl"]["active"] is False


# --- Active Directory ----------------------------------------------------------------------


def _filetime(year: int, month: int, day: int) -> str:
    from datetime import UTC, datetime

    seconds = (datetime(year, month, day, tzinfo=UTC) - datetime(1601, 1, 1, tzinfo=UTC)
               ).total_seconds()
    return str(int(seconds) * 10_000_000)


def test_active_directory_example(tmp_path: Path, samba_dc: SambaDC,
                                  acme_scim2_server: Scim2Server,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    dc, scim = samba_dc, acme_scim2_server
    boss = dc.add_user("boss", givenName="Bo", sn="Ss", displayName="Bo Ss",
                       employeeID="1", department="Sales", accountExpires="0")
    ann = dc.add_user("ann", givenName="Ann", sn="Lee", mail="Ann.Lee@Corp.Example.com",
                      manager=boss, employeeID="2", accountExpires=_filetime(2027, 3, 31))
    dc.add_user("gone", givenName="Gone", sn="Away", enabled=False)
    svc = dc.add_user("svc-backup", givenName="Back", sn="Up")
    sales = dc.add_group("Sales", [ann])
    dc.add_group("App Users", [sales, boss])  # nested: Sales' members are App Users
    monkeypatch.setenv("AD_PASSWORD", dc.admin_password)
    monkeypatch.setenv("APP_SCIM_TOKEN", scim.token or "")
    people, groups = f"OU=People,{AD_BASE}", f"OU=Groups,{AD_BASE}"
    cfg = shipped("ad-to-scim.toml", tmp_path, {
        "ad": {"url": dc.url, "bind_dn": dc.admin_dn,
               "users": {"base": people,
                         "filter": "(&(objectCategory=person)(objectClass=user))"},
               "groups": {"base": groups, "filter": "(objectClass=group)"}},
        "app": {"url": scim.url}})

    first = run(cfg)
    assert first.code == 0, first.out
    users = scim_users(scim)
    assert set(users) == {"boss@syncd.test", "ann@syncd.test", "gone@syncd.test"}
    ann_u, boss_u = users["ann@syncd.test"], users["boss@syncd.test"]
    assert ann_u["displayName"] == "Ann Lee" and boss_u["displayName"] == "Bo Ss"
    assert ann_u["emails"][0]["value"] == "ann.lee@corp.example.com"
    assert ann_u["active"] is True and users["gone@syncd.test"]["active"] is False
    assert ann_u[URN_ENTERPRISE]["manager"]["value"] == boss_u["id"]
    assert ann_u[URN_ENTERPRISE]["employeeNumber"] == "2"
    assert boss_u[URN_ENTERPRISE]["department"] == "Sales"
    assert ann_u[URN_ACME]["accountExpires"].startswith("2027-03-31T00:00:00")
    assert URN_ACME not in boss_u or "accountExpires" not in boss_u[URN_ACME]  # never
    # objectGUID's raw value is its 16 bytes in base64: the form of Entra's ImmutableId
    (guid,) = dc.get(ann, "objectGUID")["objectguid"]
    assert ann_u["externalId"] == base64.b64encode(bytes(guid)).decode()
    assert scim_groups(scim) == {"Sales": {"ann@syncd.test"},
                                 "App Users": {"ann@syncd.test", "boss@syncd.test"}}
    assert svc  # created in AD, out of the flow's scope
    assert quiet(run(cfg))

    # disable ann in AD: the next (DirSync) cycle turns her inactive, nothing else
    from tests.peers.samba import UAC_ACCOUNTDISABLE

    dc.modify(ann, {"userAccountControl": str(dc.uac(ann) | UAC_ACCOUNTDISABLE)})
    res = run(cfg)
    assert res.code == 0, res.out
    assert scim_users(scim)["ann@syncd.test"]["active"] is False
    assert quiet(run(cfg))
