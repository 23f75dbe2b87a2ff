"""Nested groupOfNames on a real OpenLDAP: member values naming groups come back as
`Entry.member_groups` (anchors), resolved from groups read earlier in the session or by a
lookup of the groups base; users stay in `Entry.members`; nothing about a nested group is
warned as "names no user". The same on a Samba AD DC (Active Directory's ``member``)."""

from __future__ import annotations

import logging
from typing import Any

import ldap3
import pytest

from syncd_connectors.ldap.config import LdapConfig
from syncd_connectors.ldap.connector import LdapConnector
from tests.peers.ad_fixtures import ad_settings
from tests.peers.directory import BASE, GROUPS, user_dn
from tests.peers.ldap_fixtures import ldap_settings
from tests.peers.samba import SambaDC
from tests.peers.slapd import Slapd

pytestmark = pytest.mark.peers

OUTER, INNER, LOOP = (f"cn={n},{GROUPS}" for n in ("nest-outer", "nest-inner", "nest-loop"))


def add_nested(server: Slapd) -> dict[str, str]:
    """outer = {user 0, inner, loop}; inner = {user 1, loop}; loop = {user 2, outer}."""
    server.add(f"dn: {LOOP}\nobjectClass: groupOfNames\ncn: nest-loop\n"
               f"member: {user_dn(2)}\n")
    server.add(f"dn: {INNER}\nobjectClass: groupOfNames\ncn: nest-inner\n"
               f"member: {user_dn(1)}\nmember: {LOOP}\n")
    server.add(f"dn: {OUTER}\nobjectClass: groupOfNames\ncn: nest-outer\n"
               f"member: {user_dn(0)}\nmember: CN=Nest-Inner, ou=groups,{BASE}\n"
               f"member: {LOOP}\n")
    server.modify(f"dn: {LOOP}\nchangetype: modify\nadd: member\nmember: {OUTER}\n")
    conn = ldap3.Connection(ldap3.Server(server.url), server.admin_dn, server.admin_password,
                            auto_bind=True)
    out = {}
    for base, flt in ((BASE, "(|(objectClass=inetOrgPerson)(objectClass=groupOfNames))"),):
        conn.search(base, flt, attributes=["entryUUID"])
        out = {e.entry_dn.lower(): str(e.entryUUID.value) for e in conn.entries}
    conn.unbind()
    return out


def read(server: Slapd, users_first: bool, **overrides: Any) -> dict[str, Any]:
    conn = LdapConnector("corp", LdapConfig(**ldap_settings(server, **overrides)))
    conn.open()
    try:
        if users_first:
            list(conn.read("user", None, ["uid"]))
        return {e.name.lower(): e for b in conn.read("group", None, ["cn"])
                for e in b.entries}
    finally:
        conn.close()


@pytest.mark.parametrize("decoder", ["lean", "stock"])
@pytest.mark.parametrize("users_first", [True, False], ids=["dn-map", "lookups"])
def test_member_groups_are_reported_by_anchor(
        slapd: Slapd, decoder: str, users_first: bool, caplog: pytest.LogCaptureFixture
) -> None:
    ids = add_nested(slapd)
    caplog.set_level(logging.WARNING, "syncd.connectors.ldap")
    got = read(slapd, users_first, decoder=decoder, page_size=2)
    outer, inner, loop = got[OUTER.lower()], got[INNER.lower()], got[LOOP.lower()]
    assert outer.members == {ids[user_dn(0).lower()]}
    assert outer.member_groups == {ids[INNER.lower()], ids[LOOP.lower()]}
    assert inner.member_groups == {ids[LOOP.lower()]}
    assert loop.member_groups == {ids[OUTER.lower()]}
    assert loop.members == {ids[user_dn(2).lower()]}
    assert not [r for r in caplog.records if "nest-" in r.getMessage()]


def test_groups_without_nesting_report_none_and_shared_base_finds_groups(
        slapd: Slapd) -> None:
    """Users and groups under one base: a group DN is no user, then found as a group."""
    ids = add_nested(slapd)
    got = read(slapd, False, users={"base": BASE, "filter": "(objectClass=inetOrgPerson)"},
               groups={"base": BASE, "filter": "(objectClass=groupOfNames)"})
    assert got[OUTER.lower()].member_groups == {ids[INNER.lower()], ids[LOOP.lower()]}
    plain = [e for n, e in got.items() if "nest-" not in n]
    assert plain and all(e.member_groups == frozenset() for e in plain)


def test_active_directory_member_groups_full_and_dirsync(samba_dc: SambaDC) -> None:
    """Samba AD: ``member`` values naming groups become member_groups (objectGUIDs), in a
    full read and in a DirSync incremental read of the one group that changed."""
    alice, bob = samba_dc.add_user("alice"), samba_dc.add_user("bob")
    inner = samba_dc.add_group("inner", [bob])
    outer = samba_dc.add_group("outer", [alice, inner])
    conn = LdapConnector("ad", LdapConfig(**ad_settings(samba_dc)))
    conn.open()
    try:
        batches = list(conn.read("group", None, ["cn"]))
        got = {e.external_id: e for b in batches for e in b.entries}
        g = samba_dc.guid
        assert got[g(outer)].members == {g(alice)}
        assert got[g(outer)].member_groups == {g(inner)}
        assert got[g(inner)].member_groups == frozenset()
        cursor = batches[-1].cursor
        samba_dc.modify(inner, {"member": [(ldap3.MODIFY_ADD, [outer])]})  # a cycle
        changed = {e.external_id: e for b in conn.read("group", cursor, ["cn"])
                   for e in b.entries}
        assert set(changed) == {g(inner)}
        assert changed[g(inner)].member_groups == {g(outer)}
        assert changed[g(inner)].members == {g(bob)}
    finally:
        conn.close()
