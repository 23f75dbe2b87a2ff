"""LDAP write-back (connectors/syncd_connectors/ldap/write/writer.py) against a real OpenLDAP, one
fresh server per test.

Every outcome is checked with plain ldap3 searches (`server_entry`), independently of the
connector, so the writer is never checked against itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import ldap3
import pytest

from syncd.errors import Conflict, Fatal, Rejected, Retriable, Unreachable
from syncd.model import Attrs, Entry, Kind
from syncd.testing import ConnectorContract
from syncd_connectors.ldap.config import LdapConfig
from syncd_connectors.ldap.connector import LdapConnector
from syncd_connectors.ldap.values import iso_timestamp
from syncd_connectors.ldap.write.session import WriteSession
from syncd_connectors.ldap.write.writer import LdapWriter
from tests.peers.directory import BASE, GROUPS, PEOPLE, group_dn, user_attrs, user_dn
from tests.peers.ldap_fixtures import SEED, ldap_settings
from tests.peers.slapd import Slapd

pytestmark = pytest.mark.peers

DISABLED = f"ou=disabled,{BASE}"
NEW_USER = {"uid": "zoë.neu", "cn": "Zoë Ångström-Neu", "sn": "Ångström", "givenName": "Zoë"}


def make(server: Slapd, **overrides: Any) -> LdapConnector:
    conn = LdapConnector("corp", LdapConfig(**ldap_settings(server, **overrides)))
    conn.open()
    return conn


def disabling(server: Slapd, kind: str, **disable: Any) -> LdapConnector:
    """A connector whose `kind` (users/groups) search deactivates with `disable`."""
    spec = {**ldap_settings(server)[kind], "write": {"disable": disable}}
    return make(server, **{kind: spec})


@pytest.fixture
def corp(slapd: Slapd) -> Iterator[LdapConnector]:
    conn = make(slapd)
    yield conn
    conn.close()


def admin(server: Slapd) -> ldap3.Connection:
    return ldap3.Connection(
        ldap3.Server(server.url, get_info=ldap3.NONE),
        server.admin_dn,
        server.admin_password,
        auto_bind=True,
    )


def server_entry(server: Slapd, dn: str) -> dict[str, list[str]] | None:
    """The entry at `dn` as the server has it (user and operational attributes), or None."""
    conn = admin(server)
    try:
        conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=["*", "+"])
        found = [r for r in conn.response or [] if r.get("type") == "searchResEntry"]
        if not found:
            return None
        return {
            k.lower(): [v.decode("utf-8", "replace") for v in vs]
            for k, vs in found[0]["raw_attributes"].items()
        }
    finally:
        conn.unbind()


def uuid_of(server: Slapd, dn: str) -> str:
    entry = server_entry(server, dn)
    assert entry is not None, dn
    return entry["entryuuid"][0]


def dn_of(server: Slapd, anchor: str) -> str | None:
    conn = admin(server)
    conn.search(BASE, f"(entryUUID={anchor})", attributes=["1.1"])
    dns = [r["dn"] for r in conn.response or [] if r.get("type") == "searchResEntry"]
    conn.unbind()
    return dns[0] if dns else None


def members(server: Slapd, dn: str) -> set[str]:
    entry = server_entry(server, dn)
    assert entry is not None
    return {m.lower() for m in entry.get("member", [])}


def can_bind(server: Slapd, dn: str, password: str) -> bool:
    conn = ldap3.Connection(ldap3.Server(server.url, get_info=ldap3.NONE), dn, password)
    try:
        return bool(conn.bind())
    finally:
        conn.unbind()


# ---- create ------------------------------------------------------------------------------


def test_capabilities(corp: LdapConnector) -> None:
    caps = corp.capabilities
    assert caps.write and caps.attribute_names_case_insensitive


def test_create_user_non_ascii_returns_the_server_entry(corp: LdapConnector, slapd: Slapd) -> None:
    created = corp.create("user", {**NEW_USER, "telephoneNumber": ("+1 1", "+1 2")})
    dn = f"uid=zoë.neu,{PEOPLE}"
    stored = server_entry(slapd, dn)
    assert stored is not None
    assert created.external_id == stored["entryuuid"][0]
    assert created.name == dn
    assert stored["cn"] == ["Zoë Ångström-Neu"]
    assert {c.lower() for c in stored["objectclass"]} == {
        "inetorgperson",
        "organizationalperson",
        "person",
        "top",
    }
    assert created.attrs["cn"] == "Zoë Ångström-Neu"
    assert created.attrs["telephonenumber"] == ("+1 1", "+1 2")
    assert created.modified is not None and created.modified.endswith("Z")
    assert created.modified == iso_timestamp(stored["modifytimestamp"][0])


def test_create_escapes_the_rdn_value(corp: LdapConnector, slapd: Slapd) -> None:
    nasty = 'a,b+c="d"\\e #'
    created = corp.create("user", {"uid": nasty, "cn": "Nasty", "sn": "N"})
    stored = server_entry(slapd, created.name)
    assert stored is not None and stored["uid"] == [nasty]
    assert [e.external_id for e in corp.find("user", "uid", nasty)] == [created.external_id]


def test_duplicate_create_is_a_conflict(corp: LdapConnector) -> None:
    with pytest.raises(Conflict, match="uid=USER000001"):  # uid matches case-insensitively
        corp.create("user", {"uid": "USER000001", "cn": "Dup", "sn": "Dup"})


def test_create_group_holds_the_placeholder_until_members_arrive(
    corp: LdapConnector, slapd: Slapd
) -> None:
    group = corp.create("group", {"cn": "team", "description": "A team"})
    dn = f"cn=team,{GROUPS}"
    assert group.name == dn and group.members == frozenset()
    assert members(slapd, dn) == {slapd.admin_dn.lower()}
    u1, u2 = uuid_of(slapd, user_dn(1)), uuid_of(slapd, user_dn(2))

    corp.set_members(group.external_id, [u1, u2], [])
    assert members(slapd, dn) == {user_dn(1).lower(), user_dn(2).lower()}
    corp.set_members(group.external_id, [u1, u2], [])  # replay: a no-op, not an error
    corp.set_members(group.external_id, [], [u1])
    corp.set_members(group.external_id, [], [u1])
    assert members(slapd, dn) == {user_dn(2).lower()}
    corp.set_members(group.external_id, [], [u2])  # the last one: the placeholder comes back
    assert members(slapd, dn) == {slapd.admin_dn.lower()}
    (read,) = [e for b in corp.read("group") for e in b.entries if e.name == dn]
    assert read.members == frozenset()


def test_create_refusals_name_the_dn_and_the_rest_proceeds(
    corp: LdapConnector, slapd: Slapd
) -> None:
    with pytest.raises(Rejected) as info:
        corp.create("user", {"uid": "nosn", "cn": "No Surname"})  # sn is a MUST of person
    assert f"uid=nosn,{PEOPLE}" in str(info.value)
    assert "sn" in str(info.value)  # the server's own message
    with pytest.raises(Rejected, match="without uid"):
        corp.create("user", {"cn": "No uid", "sn": "x"})
    assert corp.create("user", {"uid": "withsn", "cn": "With", "sn": "Surname"}).external_id
    assert server_entry(slapd, f"uid=nosn,{PEOPLE}") is None


# ---- update ------------------------------------------------------------------------------


def test_update_sends_only_changed_attributes_in_one_modify(
    corp: LdapConnector, slapd: Slapd, monkeypatch: pytest.MonkeyPatch
) -> None:
    anchor = uuid_of(slapd, user_dn(1))
    before = server_entry(slapd, user_dn(1))
    sent: list[dict[str, Any]] = []
    real = WriteSession._modify  # every modify, lean or through ldap3 (decoder = "stock")

    def spy(self: WriteSession, what: str, dn: str, changes: dict[str, Any]) -> Any:
        sent.append(changes)
        return real(self, what, dn, changes)

    monkeypatch.setattr(WriteSession, "_modify", spy)
    corp.update("user", anchor, {"Title": "Chief", "telephoneNumber": ("+1 7", "+1 8")})
    assert len(sent) == 1 and set(sent[0]) == {"title", "telephonenumber"}
    after = server_entry(slapd, user_dn(1))
    assert before is not None and after is not None
    assert after["title"] == ["Chief"]
    assert after["telephonenumber"] == ["+1 7", "+1 8"]
    for name in ("uid", "cn", "sn", "givenname", "mail", "employeenumber", "entryuuid"):
        assert after[name] == before[name], name


def test_clearing_present_and_absent_attributes(corp: LdapConnector, slapd: Slapd) -> None:
    assert "title" in user_attrs(1, SEED) and "title" not in user_attrs(0, SEED)
    corp.update("user", uuid_of(slapd, user_dn(1)), {"title": None})
    one = server_entry(slapd, user_dn(1))
    assert one is not None and "title" not in one
    # user 0 has no title: clearing it must not fail, and the other change goes through
    corp.update("user", uuid_of(slapd, user_dn(0)), {"title": None, "mail": "zoe@example.com"})
    zero = server_entry(slapd, user_dn(0))
    assert zero is not None and "title" not in zero and zero["mail"] == ["zoe@example.com"]


def test_rdn_change_is_a_modrdn_that_keeps_the_anchor(corp: LdapConnector, slapd: Slapd) -> None:
    anchor = uuid_of(slapd, user_dn(2))
    corp.update("user", anchor, {"uid": "renamed", "title": "Renamed"})
    assert server_entry(slapd, user_dn(2)) is None
    new = server_entry(slapd, f"uid=renamed,{PEOPLE}")
    assert new is not None
    assert new["entryuuid"] == [anchor] and new["uid"] == ["renamed"]  # old RDN value gone
    assert new["title"] == ["Renamed"]
    # renamed behind our back: the remembered DN is stale, the anchor finds it again
    slapd.modify(
        f"dn: uid=renamed,{PEOPLE}\nchangetype: modrdn\nnewrdn: uid=moved\ndeleteoldrdn: 1\n"
    )
    corp.update("user", anchor, {"title": "Again"})
    assert dn_of(slapd, anchor) == f"uid=moved,{PEOPLE}"
    moved = server_entry(slapd, f"uid=moved,{PEOPLE}")
    assert moved is not None and moved["title"] == ["Again"]


def test_schema_violations_are_rejected_for_that_object_only(
    corp: LdapConnector, slapd: Slapd
) -> None:
    anchor = uuid_of(slapd, user_dn(4))
    for bad, says in (
        ({"uidNumber": "5"}, "objectClassViolation"),  # posixAccount's, not inetOrgPerson's
        ({"noSuchThing": "x"}, "undefinedAttributeType"),
        ({"mail": "jürgen@example.com"}, "invalidAttributeSyntax"),  # IA5 only
        ({"uid": None}, "RDN"),
    ):
        with pytest.raises(Rejected) as info:
            corp.update("user", anchor, bad)
        assert user_dn(4) in str(info.value) and says in str(info.value), str(info.value)
    corp.update("user", anchor, {"title": "Fine"})
    after = server_entry(slapd, user_dn(4))
    assert after is not None and after["title"] == ["Fine"] and "uidnumber" not in after


def test_update_of_a_vanished_entry_is_rejected(corp: LdapConnector, slapd: Slapd) -> None:
    anchor = uuid_of(slapd, user_dn(5))
    slapd.delete(user_dn(5))
    with pytest.raises(Rejected, match="gone"):
        corp.update("user", anchor, {"title": "x"})


# ---- members -----------------------------------------------------------------------------


def test_members_of_an_existing_group_are_idempotent(corp: LdapConnector, slapd: Slapd) -> None:
    dn = group_dn(1)
    start = members(slapd, dn)
    inside = next(d for d in sorted(start) if d.startswith("uid="))
    outside = next(user_dn(i).lower() for i in range(30) if user_dn(i).lower() not in start)
    a_in, a_out = uuid_of(slapd, inside), uuid_of(slapd, outside)
    gid = uuid_of(slapd, dn)
    corp.set_members(gid, [a_in, a_out], [])
    assert members(slapd, dn) == start | {outside}
    corp.set_members(gid, [], [a_out, a_out])
    corp.set_members(gid, [], [a_out])
    assert members(slapd, dn) == start


def test_member_changes_fall_back_when_the_group_changed_meanwhile(
    corp: LdapConnector, slapd: Slapd, monkeypatch: pytest.MonkeyPatch
) -> None:
    dn = group_dn(2)
    start = members(slapd, dn)
    inside = next(d for d in sorted(start) if d.startswith("uid="))
    outside = next(user_dn(i).lower() for i in range(30) if user_dn(i).lower() not in start)
    writer: LdapWriter = corp._writer
    real = writer._search

    def blind(base: str, filter_: str, scope: str, attrs: list[str]) -> Any:
        found = real(base, filter_, scope, attrs)
        if scope == ldap3.BASE and base == dn:  # pretend the member was not there yet
            return [(d, {k: v for k, v in a.items() if k.lower() != "member"}) for d, a in found]
        return found

    monkeypatch.setattr(writer, "_search", blind)
    corp.set_members(uuid_of(slapd, dn), [uuid_of(slapd, inside), uuid_of(slapd, outside)], [])
    assert members(slapd, dn) == start | {outside}


def test_unknown_member_anchors_are_rejected_after_the_rest(
    corp: LdapConnector, slapd: Slapd
) -> None:
    dn = group_dn(3)
    start = members(slapd, dn)
    outside = next(user_dn(i).lower() for i in range(30) if user_dn(i).lower() not in start)
    unknown = "00000000-0000-0000-0000-000000000000"
    with pytest.raises(Rejected, match=unknown):
        corp.set_members(uuid_of(slapd, dn), [unknown, uuid_of(slapd, outside)], [])
    assert members(slapd, dn) == start | {outside}


# ---- deactivate and delete ---------------------------------------------------------------


def test_default_deactivation_removes_the_password(corp: LdapConnector, slapd: Slapd) -> None:
    change = "changetype: modify\nreplace: userPassword\nuserPassword: pw\n"
    slapd.modify(f"dn: {user_dn(6)}\n{change}")
    assert can_bind(slapd, user_dn(6), "pw")
    anchor = uuid_of(slapd, user_dn(6))
    corp.deactivate("user", anchor)
    corp.deactivate("user", anchor)
    entry = server_entry(slapd, user_dn(6))
    assert entry is not None and "userpassword" not in entry
    assert not can_bind(slapd, user_dn(6), "pw")


def test_deactivate_by_moving(slapd: Slapd) -> None:
    slapd.add(f"dn: {DISABLED}\nobjectClass: organizationalUnit\nou: disabled\n")
    corp = disabling(slapd, "users", method="move", ou=DISABLED)
    anchor = uuid_of(slapd, user_dn(7))
    corp.deactivate("user", anchor)
    corp.deactivate("user", anchor)  # already there
    assert dn_of(slapd, anchor) == f"uid=user000007,{DISABLED}"
    corp.update("user", anchor, {"title": "Former"})  # still reachable by its anchor
    corp.delete("user", anchor)
    assert dn_of(slapd, anchor) is None
    corp.close()


def test_deactivate_by_attribute_value_and_bit(slapd: Slapd) -> None:
    by_value = disabling(slapd, "users", method="attribute", attribute="description", value="off")
    by_bit = disabling(slapd, "users", method="attribute", attribute="employeeNumber", bit=2)
    by_value.deactivate("user", uuid_of(slapd, user_dn(8)))
    by_bit.deactivate("user", uuid_of(slapd, user_dn(9)))
    by_bit.deactivate("user", uuid_of(slapd, user_dn(9)))  # OR is idempotent
    eight, nine = server_entry(slapd, user_dn(8)), server_entry(slapd, user_dn(9))
    assert eight is not None and eight["description"] == ["off"]
    assert nine is not None and nine["employeenumber"] == [str(100009 | 2)]
    by_value.close()
    by_bit.close()


def test_active_flag_deactivates_and_reactivates(slapd: Slapd) -> None:
    slapd.add(f"dn: {DISABLED}\nobjectClass: organizationalUnit\nou: disabled\n")
    moving = disabling(slapd, "users", method="move", ou=DISABLED)
    created = moving.create("user", {**NEW_USER, "active": True})
    entry = server_entry(slapd, created.name)
    assert entry is not None and "active" not in entry
    moving.update("user", created.external_id, {"active": False, "title": "Gone"})
    assert dn_of(slapd, created.external_id) == f"uid=zoë.neu,{DISABLED}"
    moving.update("user", created.external_id, {"active": True})
    assert dn_of(slapd, created.external_id) == created.name
    moving.close()

    flag = disabling(slapd, "users", method="attribute", attribute="employeeNumber", bit=4)
    anchor = uuid_of(slapd, user_dn(12))  # employeeNumber 100012 has bit 4 set already
    flag.update("user", anchor, {"active": False})
    flag.update("user", anchor, {"active": True})
    twelve = server_entry(slapd, user_dn(12))
    assert twelve is not None and twelve["employeenumber"] == [str(100012 & ~4)]
    flag.close()

    marker = disabling(slapd, "users", method="attribute", attribute="description", value="off")
    anchor = uuid_of(slapd, user_dn(13))
    marker.update("user", anchor, {"active": False})
    marker.update("user", anchor, {"active": True})
    marker.update("user", anchor, {"active": True})
    thirteen = server_entry(slapd, user_dn(13))
    assert thirteen is not None and "description" not in thirteen
    marker.close()


def test_groups_deactivate_only_by_delete_or_move(slapd: Slapd, corp: LdapConnector) -> None:
    gid = uuid_of(slapd, group_dn(0))
    with pytest.raises(Rejected, match="cannot be deactivated"):
        corp.deactivate("group", gid)
    deleting = disabling(slapd, "groups", method="delete")
    deleting.deactivate("group", gid)
    assert server_entry(slapd, group_dn(0)) is None
    deleting.close()


def test_delete_twice_and_unknown_are_fine(corp: LdapConnector, slapd: Slapd) -> None:
    anchor = uuid_of(slapd, user_dn(10))
    corp.delete("user", anchor)
    corp.delete("user", anchor)
    corp.delete("user", "00000000-0000-0000-0000-000000000000")
    assert server_entry(slapd, user_dn(10)) is None


# ---- reads for targets, find, failures ---------------------------------------------------


def test_reads_fill_attrs_and_modified(corp: LdapConnector, slapd: Slapd) -> None:
    entries = {
        e.name: e for b in corp.read("user", None, ["uid", "telephoneNumber"]) for e in b.entries
    }
    three = entries[user_dn(3)]
    assert three.attrs["uid"] == "user000003"
    assert three.attrs["telephonenumber"] == tuple(user_attrs(3, SEED)["telephonenumber"])
    stored = server_entry(slapd, user_dn(3))
    assert stored is not None
    assert three.modified == iso_timestamp(stored["modifytimestamp"][0])
    assert "modifytimestamp" not in three.raw  # only what was asked for is kept


def test_find_escapes_and_returns_attrs(corp: LdapConnector) -> None:
    created = corp.create("user", {"uid": "st*r(1)", "cn": "Star", "sn": "S"})
    assert corp.find("user", "uid", "st*") == []
    assert corp.find("user", "uid", "*") == []
    (found,) = corp.find("user", "uid", "st*r(1)")
    assert found.external_id == created.external_id
    assert found.attrs["cn"] == "Star" and found.modified


def test_lost_connection_is_retriable_then_down_is_fatal(corp: LdapConnector, slapd: Slapd) -> None:
    anchor = uuid_of(slapd, user_dn(11))
    corp.update("user", anchor, {"title": "Before"})  # the write connection is open
    slapd.kill()
    with pytest.raises(Retriable, match=r"update|search"):
        corp.update("user", anchor, {"title": "After"})
    with pytest.raises(Fatal, match="cannot connect"):
        corp.update("user", anchor, {"title": "After"})


def test_reset_connection_is_unreachable_and_a_slow_server_only_retriable(slapd: Slapd) -> None:
    """No answer at all (the server died under an open connection) is `Unreachable`, so the
    engine can take the target for down; an answer that is only late is not."""
    anchor = uuid_of(slapd, user_dn(11))
    slow = make(slapd, timeout=1)
    slow.update("user", anchor, {"title": "Before"})  # the write connection is open
    with slapd.paused(), pytest.raises(Retriable) as late:
        slow.update("user", anchor, {"title": "Late"})
    assert not isinstance(late.value, Unreachable)
    corp = make(slapd)
    corp.update("user", anchor, {"title": "Before"})
    slapd.kill()
    with pytest.raises(Unreachable, match=r"update|search"):
        corp.update("user", anchor, {"title": "After"})
    slow.close()
    corp.close()


def test_bad_credentials_are_fatal_without_the_password(slapd: Slapd) -> None:
    conn = LdapConnector("corp", LdapConfig(**ldap_settings(slapd, bind_password="wrong-pw-42")))
    with pytest.raises(Fatal) as info:
        conn.create("user", dict(NEW_USER))
    assert "wrong-pw-42" not in str(info.value) and "bind failed" in str(info.value)


def test_timestamps_and_object_guid_filters() -> None:
    assert iso_timestamp("20261127093000Z") == "2026-11-27T09:30:00.000000Z"
    assert iso_timestamp("20261127093000.5Z") == "2026-11-27T09:30:00.500000Z"
    assert iso_timestamp("20261127103000+0100") == "2026-11-27T09:30:00.000000Z"
    assert iso_timestamp("yesterday") is None
    cfg = LdapConfig.model_validate(
        {
            "type": "ldap",
            "url": "ldap://127.0.0.1:1",
            "anchor": "objectGUID",
            "users": {"base": PEOPLE},
        }
    )
    writer = LdapWriter("ad", cfg, lambda: None)
    guid = "01020304-0506-0708-090a-0b0c0d0e0f10"  # bytes_le: 04 03 02 01 06 05 08 07 ...
    assert writer._anchor_filter(guid) == (
        "(objectGUID=\\04\\03\\02\\01\\06\\05\\08\\07\\09\\0a\\0b\\0c\\0d\\0e\\0f\\10)"
    )
    assert writer._anchor_filter("not-a-guid") is None
    disable = writer.settings("user").disable
    assert disable is not None and (disable.attribute, disable.bit) == ("userAccountControl", 2)


# ---- the connector contract --------------------------------------------------------------

_LDAP_NAMES = {"userName": "uid"}


class _LdapNames:
    """The engine maps canonical paths to LDAP names; the contract speaks SCIM's userName."""

    def __init__(self, conn: LdapConnector) -> None:
        self._conn = conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def create(self, kind: Kind, attrs: Attrs) -> Entry:
        return self._conn.create(kind, {_LDAP_NAMES.get(k, k): v for k, v in attrs.items()})

    def find(self, kind: Kind, attribute: str, value: str) -> list[Entry]:
        return self._conn.find(kind, _LDAP_NAMES.get(attribute, attribute), value)


class TestLdapContract(ConnectorContract):
    user_attrs = {"userName": "contract.user", "cn": "Contract User", "sn": "User", "active": True}

    @pytest.fixture
    def connector(self, slapd: Slapd) -> Iterator[_LdapNames]:
        conn = make(slapd)
        yield _LdapNames(conn)
        conn.close()
