"""Member values that spell a DN differently from the entry resolve to the right user, on a
real OpenLDAP; a value that names no user in scope is logged once per group and read.

slapd prettifies stored DN values itself (hex escapes to UTF-8, ``\\,`` to ``\\2C``, no
spaces around separators, sorted multi-valued RDNs) but keeps the case of values, inner
spaces and ``uniqueMember``'s ``#'0101'B`` UID; other servers keep more. Both paths are
covered: members resolved against users read before (the DN map), and bulk lookups.
"""

from __future__ import annotations

import logging
from typing import Any

import ldap3
import pytest

from syncd_connectors.ldap.config import LdapConfig
from syncd_connectors.ldap.connector import LdapConnector
from syncd_connectors.ldap.members import DnMap
from tests.peers.directory import BASE, GROUPS, PEOPLE, user_dn
from tests.peers.ldap_fixtures import ldap_settings
from tests.peers.slapd import Slapd

pytestmark = pytest.mark.peers

#: (DN as created, uid) of users whose names need escaping.
ODD_USERS = [
    (f"cn=J\\c3\\b6rg,{PEOPLE}", "joerg", "Jörg"),
    (f"cn=Smith\\2C John,{PEOPLE}", "jsmith", "Smith, John"),
    (f"cn=a+uid=b,{PEOPLE}", "b", "a"),
    (f"cn=Ann Lee,{PEOPLE}", "alee", "Ann Lee"),
]
#: The same users as members, spelled otherwise (and as slapd keeps them).
SPELLINGS = [
    f"CN=J\\C3\\B6RG,{PEOPLE}",
    f"CN = Smith\\, John , ou=People,{BASE}",
    f"uid=b+cn=a,{PEOPLE}",
    f"cn=ANN  LEE,{PEOPLE}",
]
GHOST = f"uid=ghost,{PEOPLE}"
ODD_GROUP = f"cn=odd,{GROUPS}"
UNIQUE_GROUP = f"cn=unique,{GROUPS}"


def add_odd_users(server: Slapd) -> dict[str, str]:
    """Create `ODD_USERS` and the two groups; uid -> entryUUID (read with plain ldap3)."""
    for dn, uid, cn in ODD_USERS:
        server.add(f"dn: {dn}\nobjectClass: inetOrgPerson\ncn: {cn}\nsn: X\nuid: {uid}\n")
    members = "".join(f"member: {m}\n" for m in [*SPELLINGS, GHOST, server.admin_dn])
    server.add(f"dn: {ODD_GROUP}\nobjectClass: groupOfNames\ncn: odd\n{members}")
    unique = "".join(f"uniqueMember: {m}#'0101'B\n" for m in [SPELLINGS[0], user_dn(3)])
    server.add(f"dn: {UNIQUE_GROUP}\nobjectClass: groupOfUniqueNames\ncn: unique\n"
               f"{unique}uniqueMember: {SPELLINGS[3]}\n")  # fmt: skip
    conn = ldap3.Connection(ldap3.Server(server.url), server.admin_dn, server.admin_password,
                            auto_bind=True)  # fmt: skip
    conn.search(PEOPLE, "(objectClass=inetOrgPerson)", attributes=["uid", "entryUUID"])
    out = {str(e.uid.value): str(e.entryUUID.value) for e in conn.entries}
    conn.unbind()
    return out


def groups(server: Slapd, users_first: bool, **overrides: Any) -> dict[str, Any]:
    conn = LdapConnector("corp", LdapConfig(**ldap_settings(server, **overrides)))
    conn.open()
    if users_first:
        list(conn.read("user", None, ["uid"]))
    out = {e.name.lower(): e for b in conn.read("group", None, ["cn"]) for e in b.entries}
    conn.close()
    return out


@pytest.mark.parametrize("decoder", ["lean", "stock"])
@pytest.mark.parametrize("users_first", [True, False], ids=["dn-map", "lookups"])
def test_other_spellings_resolve_to_the_right_users(
    slapd: Slapd, decoder: str, users_first: bool
) -> None:
    anchors = add_odd_users(slapd)
    got = groups(slapd, users_first, decoder=decoder)[ODD_GROUP]
    assert got.members == {anchors[uid] for _dn, uid, _cn in ODD_USERS}


@pytest.mark.parametrize("users_first", [True, False], ids=["dn-map", "lookups"])
def test_unique_member_with_its_optional_uid(slapd: Slapd, users_first: bool) -> None:
    anchors = add_odd_users(slapd)
    unique = {"base": GROUPS, "filter": "(objectClass=groupOfUniqueNames)"}
    got = groups(slapd, users_first, groups=unique, member_attribute="uniqueMember")
    assert got[UNIQUE_GROUP].members == {anchors["joerg"], anchors["user000003"],
                                         anchors["alee"]}  # fmt: skip


def test_a_value_naming_no_user_is_warned_once_per_group_and_read(
    slapd: Slapd, caplog: pytest.LogCaptureFixture
) -> None:
    add_odd_users(slapd)
    caplog.set_level(logging.WARNING, logger="syncd.connectors.ldap")
    conn = LdapConnector("corp", LdapConfig(**ldap_settings(slapd)))
    conn.open()
    for _read in range(2):
        list(conn.read("group", None, ["cn"]))
    conn.close()
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 2  # one per read, only for the group with the ghost
    for text in warned:
        assert ODD_GROUP in text and repr(GHOST) in text
        assert "admin" not in text  # outside the users' base: not a user by design


def test_values_that_are_no_dn_are_reported_and_outside_values_are_not() -> None:
    """A server that does not check DN syntax (or a uniqueMember with a UID) can hand out
    anything; what is no DN is reported, what lies outside the users' base is not."""
    seen: list[str] = []

    def search(filter_: str) -> list[tuple[str, str]]:
        seen.append(filter_)
        return [(f"cn=J\\c3\\b6rg,{PEOPLE}", "u-1")]

    dn_map = DnMap(PEOPLE, "sub", unique=True)
    (got,) = dn_map.resolve([["no dn at all", f"CN=JÖRG,{PEOPLE}#'01'B", f"cn=g,{GROUPS}",
                              f"uid=ghost,{PEOPLE}"]], search)  # fmt: skip
    assert got.anchors == {"u-1"}
    assert got.unresolved == ("no dn at all", f"uid=ghost,{PEOPLE}")
    assert seen == ["(|(cn=JÖRG)(uid=ghost))"]  # one bulk lookup, values as written
