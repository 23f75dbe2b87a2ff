"""The LDAP connector against a real Active Directory stand-in: a Samba AD DC
(tests/peers/samba.py). What only AD does: objectGUID anchors (16 little-endian bytes ->
canonical UUID strings), DirSync incremental reads whose deletes are tombstones (isDeleted),
``member`` resolved by objectGUID, and disabling through bit 2 of ``userAccountControl``.
Expected anchors come from an independent ldap3 read (`SambaDC.guid`).
"""

from __future__ import annotations

import logging
from typing import Any

import ldap3
import pytest

from syncd.model import Batch, Entry
from syncd_connectors.ldap.config import LdapConfig
from syncd_connectors.ldap.connector import LdapConnector
from syncd_connectors.ldap.feeds.cursor import make_cursor
from tests.peers.ad_fixtures import AD_USER_FILTER, ad_settings
from tests.peers.samba import PEOPLE, UAC_ACCOUNTDISABLE, SambaDC

pytestmark = pytest.mark.peers

USER_ATTRS = ["sAMAccountName", "givenName", "title", "mail", "userAccountControl"]


def opened(dc: SambaDC, **overrides: Any) -> LdapConnector:
    conn = LdapConnector("ad", LdapConfig(**ad_settings(dc, **overrides)))
    conn.open()
    return conn


def read(conn: LdapConnector, kind: Any = "user", cursor: str | None = None) -> list[Batch]:
    return list(conn.read(kind, cursor, USER_ATTRS if kind == "user" else ["cn"]))


def entries(batches: list[Batch]) -> dict[str, Entry]:
    return {e.external_id: e for b in batches for e in b.entries}


def deleted(batches: list[Batch]) -> set[str]:
    return {d for b in batches for d in b.deleted}


def cursor_of(batches: list[Batch]) -> str:
    cursor = batches[-1].cursor
    assert cursor is not None and cursor.startswith("dirsync:")
    assert all(b.cursor is None for b in batches[:-1])
    return cursor


@pytest.fixture
def people(samba_dc: SambaDC) -> dict[str, str]:
    """Three enabled users in OU=People: name -> DN."""
    return {
        "alice": samba_dc.add_user("alice", givenName="Alice", title="Dev", mail="a@syncd.test"),
        "bob": samba_dc.add_user("bob", givenName="Bob"),
        "élodie": samba_dc.add_user("élodie", givenName="Élodie"),
    }


# ---- full reads ----------------------------------------------------------------------------


@pytest.mark.parametrize("decoder", ["lean", "stock"])
def test_full_read_anchors_users_by_object_guid_and_hands_out_a_dirsync_cursor(
    samba_dc: SambaDC, people: dict[str, str], decoder: str
) -> None:
    conn = opened(samba_dc, decoder=decoder, page_size=2)
    batches = read(conn)
    cursor_of(batches)
    assert all(b.full for b in batches) and batches[-1].complete
    got = entries(batches)
    want = {samba_dc.guid(dn): dn for dn in people.values()}
    assert set(got) == set(want)  # only OU=People: no built-in accounts, no computers
    for guid, dn in want.items():
        assert got[guid].name.lower() == dn.lower()
    alice = got[samba_dc.guid(people["alice"])]
    assert alice.raw["title"] == ("Dev",) and alice.raw["samaccountname"] == ("alice",)
    assert got[samba_dc.guid(people["élodie"])].raw["givenname"] == ("Élodie",)
    conn.close()


def test_auto_detects_dirsync_on_ad_with_an_object_guid_anchor(samba_dc: SambaDC) -> None:
    conn = opened(samba_dc, incremental="auto")
    assert conn.mechanism() == "dirsync"
    conn.close()


def test_find_by_attribute_returns_the_object_guid_anchor(
    samba_dc: SambaDC, people: dict[str, str]
) -> None:
    conn = opened(samba_dc)
    (found,) = conn.find("user", "sAMAccountName", "bob")
    assert found.external_id == samba_dc.guid(people["bob"])
    conn.close()


# ---- DirSync incremental reads -------------------------------------------------------------


def test_no_change_reads_nothing(samba_dc: SambaDC, people: dict[str, str]) -> None:
    conn = opened(samba_dc)
    (batch,) = read(conn, cursor=cursor_of(read(conn)))
    assert (batch.entries, batch.deleted, batch.full, batch.complete) == ((), (), False, True)
    cursor_of([batch])
    conn.close()


def test_added_user_shows_up_incrementally(samba_dc: SambaDC, people: dict[str, str]) -> None:
    conn = opened(samba_dc)
    cursor = cursor_of(read(conn))
    dn = samba_dc.add_user("dave", givenName="Dave")
    outside = samba_dc.add_user("eve", parent=f"CN=Users,{samba_dc.base}")
    batches = read(conn, cursor=cursor)
    got = entries(batches)
    assert set(got) == {samba_dc.guid(dn)}  # eve is outside the base: no entry
    assert got[samba_dc.guid(dn)].raw["givenname"] == ("Dave",)
    # DirSync covers the whole naming context; a changed object the re-read within the base
    # does not find counts as "left the scope" (the engine ignores anchors it never linked).
    assert deleted(batches) <= {samba_dc.guid(outside)}
    assert not batches[-1].full
    (again,) = read(conn, cursor=cursor_of(batches))
    assert again.entries == () and again.deleted == ()
    conn.close()


def test_deleted_user_shows_up_in_batch_deleted(samba_dc: SambaDC, people: dict[str, str]) -> None:
    conn = opened(samba_dc)
    cursor = cursor_of(read(conn))
    gone = samba_dc.guid(people["bob"])
    samba_dc.delete(people["bob"])  # a tombstone under CN=Deleted Objects, isDeleted=TRUE
    batches = read(conn, cursor=cursor)
    assert gone in deleted(batches)
    assert entries(batches) == {}
    (again,) = read(conn, cursor=cursor_of(batches))
    assert again.deleted == ()
    conn.close()


def test_modified_user_shows_up_incrementally(samba_dc: SambaDC, people: dict[str, str]) -> None:
    conn = opened(samba_dc)
    cursor = cursor_of(read(conn))
    samba_dc.modify(people["alice"], {"title": "Boss"})
    got = entries(read(conn, cursor=cursor))
    assert set(got) == {samba_dc.guid(people["alice"])}
    assert got[samba_dc.guid(people["alice"])].raw["title"] == ("Boss",)
    conn.close()


def test_user_moved_out_of_the_base_is_reported_deleted(
    samba_dc: SambaDC, people: dict[str, str]
) -> None:
    conn = opened(samba_dc)
    cursor = cursor_of(read(conn))
    guid = samba_dc.guid(people["bob"])
    samba_dc.admin.modify_dn(people["bob"], "CN=bob", new_superior=f"CN=Users,{samba_dc.base}")
    assert guid in deleted(read(conn, cursor=cursor))
    conn.close()


def test_unusable_dirsync_cookie_falls_back_to_a_full_read(
    samba_dc: SambaDC, people: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    conn = opened(samba_dc)
    fp = cursor_of(read(conn)).split(":")[1]
    bogus = make_cursor("dirsync", fp, b"MSDS" + b"\x00" * 60)  # not a cookie of this DC
    with caplog.at_level(logging.WARNING):
        batches = read(conn, cursor=bogus)
    assert batches[-1].full and set(entries(batches)) == {
        samba_dc.guid(dn) for dn in people.values()
    }
    assert "falling back to a full read" in caplog.text
    conn.close()


# ---- groups --------------------------------------------------------------------------------


def test_group_members_are_resolved_to_object_guids(
    samba_dc: SambaDC, people: dict[str, str]
) -> None:
    staff = samba_dc.add_group("staff", [people["alice"], people["élodie"]])
    outsider = samba_dc.add_user("admin2", parent=f"CN=Users,{samba_dc.base}")
    mixed = samba_dc.add_group("mixed", [people["bob"], outsider, staff])  # nested: ignored
    empty = samba_dc.add_group("empty")
    conn = opened(samba_dc)
    read(conn)  # users first, as the engine does
    groups = entries(read(conn, "group"))
    assert set(groups) == {samba_dc.guid(staff), samba_dc.guid(mixed), samba_dc.guid(empty)}
    assert groups[samba_dc.guid(staff)].members == {
        samba_dc.guid(people["alice"]),
        samba_dc.guid(people["élodie"]),
    }
    assert groups[samba_dc.guid(mixed)].members == {samba_dc.guid(people["bob"])}
    conn.close()


def test_group_members_resolve_without_a_prior_user_read(
    samba_dc: SambaDC, people: dict[str, str]
) -> None:
    staff = samba_dc.add_group("staff", [people["alice"], people["bob"]])
    conn = opened(samba_dc)
    (group,) = entries(read(conn, "group")).values()
    assert group.external_id == samba_dc.guid(staff)
    assert group.members == {samba_dc.guid(people["alice"]), samba_dc.guid(people["bob"])}
    conn.close()


def test_deleted_group_shows_up_incrementally(samba_dc: SambaDC, people: dict[str, str]) -> None:
    old = samba_dc.add_group("old", [people["alice"]])
    conn = opened(samba_dc)
    cursor = cursor_of(read(conn, "group"))
    old_guid = samba_dc.guid(old)
    samba_dc.delete(old)
    batches = read(conn, "group", cursor)
    assert entries(batches) == {}
    assert old_guid in deleted(batches)
    conn.close()


def test_added_group_shows_up_incrementally(samba_dc: SambaDC, people: dict[str, str]) -> None:
    conn = opened(samba_dc)
    cursor = cursor_of(read(conn, "group"))
    new = samba_dc.add_group("new", [people["bob"]])
    got = entries(read(conn, "group", cursor))
    assert set(got) == {samba_dc.guid(new)}
    assert got[samba_dc.guid(new)].members == {samba_dc.guid(people["bob"])}
    conn.close()


def test_membership_change_shows_up_incrementally(
    samba_dc: SambaDC, people: dict[str, str]
) -> None:
    staff = samba_dc.add_group("staff", [people["alice"]])
    conn = opened(samba_dc)
    cursor = cursor_of(read(conn, "group"))
    samba_dc.modify(staff, {"member": [(ldap3.MODIFY_ADD, [people["bob"]])]})
    got = entries(read(conn, "group", cursor))
    assert got[samba_dc.guid(staff)].members == {
        samba_dc.guid(people["alice"]),
        samba_dc.guid(people["bob"]),
    }
    conn.close()


# ---- write-back ----------------------------------------------------------------------------


def test_update_finds_the_entry_by_object_guid(samba_dc: SambaDC, people: dict[str, str]) -> None:
    conn = opened(samba_dc)
    conn.update("user", samba_dc.guid(people["alice"]), {"title": "CTO"})
    assert samba_dc.get(people["alice"], "title")["title"] == [b"CTO"]
    conn.close()


def test_deactivate_sets_bit_2_of_user_account_control_and_enable_clears_it(
    samba_dc: SambaDC, people: dict[str, str]
) -> None:
    conn = opened(samba_dc)
    guid = samba_dc.guid(people["bob"])
    before = samba_dc.uac(people["bob"])
    assert not before & UAC_ACCOUNTDISABLE
    conn.deactivate("user", guid)
    assert samba_dc.uac(people["bob"]) == before | UAC_ACCOUNTDISABLE  # other bits kept
    conn.deactivate("user", guid)  # replay: still disabled, no error
    assert samba_dc.uac(people["bob"]) == before | UAC_ACCOUNTDISABLE
    conn.update("user", guid, {"active": True})  # two-way re-enable
    assert samba_dc.uac(people["bob"]) == before
    assert samba_dc.uac(people["alice"]) == before  # nobody else touched
    conn.close()


def test_create_active_user_is_enabled(samba_dc: SambaDC) -> None:
    """AD creates an account without a password disabled (546): a user created with
    ``active`` True is enabled (bit 2 cleared, the other bits kept); False stays disabled;
    a mapped userAccountControl is written as given."""
    conn = opened(samba_dc, users={"base": PEOPLE, "filter": AD_USER_FILTER, "write": {
        "rdn_attribute": "cn", "object_classes": ["top", "person", "organizationalPerson",
                                                  "user"]}})
    on = conn.create("user", {"cn": "on", "sAMAccountName": "on", "active": True})
    off = conn.create("user", {"cn": "off", "sAMAccountName": "off", "active": False})
    own = conn.create("user", {"cn": "own", "sAMAccountName": "own", "active": True,
                               "userAccountControl": "66082"})
    assert samba_dc.uac(on.name) == 544
    assert samba_dc.uac(off.name) == 544 | UAC_ACCOUNTDISABLE
    assert samba_dc.uac(own.name) == 66082  # 65536 | 546: as mapped, not second-guessed
    conn.close()


def test_deactivate_of_a_deleted_user_is_not_an_error(
    samba_dc: SambaDC, people: dict[str, str]
) -> None:
    conn = opened(samba_dc)
    guid = samba_dc.guid(people["bob"])
    samba_dc.delete(people["bob"])
    conn.deactivate("user", guid)  # already gone: logged, no error
    conn.close()


def test_deactivation_shows_up_incrementally(samba_dc: SambaDC, people: dict[str, str]) -> None:
    conn = opened(samba_dc)
    cursor = cursor_of(read(conn))
    guid = samba_dc.guid(people["bob"])
    conn.deactivate("user", guid)
    got = entries(read(conn, cursor=cursor))
    assert int(got[guid].raw["useraccountcontrol"][0]) & UAC_ACCOUNTDISABLE
    conn.close()


# ---- absence is not proof --------------------------------------------------------------------


def test_confirm_gone_by_object_guid(samba_dc: SambaDC, people: dict[str, str]) -> None:
    """objectGUID lookups (each byte escaped): a deleted user (a tombstone, invisible to a
    plain search) and one moved out of the base are gone; a present one and an anchor that
    cannot be an objectGUID are not confirmed."""
    guids = {name: samba_dc.guid(dn) for name, dn in people.items()}
    samba_dc.delete(people["bob"])
    users = f"CN=Users,{samba_dc.base}"
    samba_dc.admin.modify_dn(people["élodie"], "CN=élodie", new_superior=users)
    never = "01020304-0506-0708-090a-0b0c0d0e0f10"
    conn = opened(samba_dc)
    asked = [guids["alice"], guids["bob"], guids["élodie"], never, "not-a-guid"]
    assert conn.confirm_gone("user", asked) == {guids["bob"], guids["élodie"], never}
    conn.close()
    samba_dc.stop()
    assert conn.confirm_gone("user", asked) == set()  # unreachable: nothing, no exception
