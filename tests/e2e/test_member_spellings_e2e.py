"""Member values spelled unlike their users' DNs sync to the right SCIM members, end to end:
real slapd -> syncd CLI -> scim2-server, verified with plain HTTP.

Users whose DNs need escaping (``cn=Jörg``, ``cn=Smith\\2C John``, ``cn=a+uid=b``); groups
whose member values spell them otherwise -- slapd keeps value case, inner spaces and
``uniqueMember``'s optional ``#'0101'B`` UID as written, so those reach the connector as is.
"""

from __future__ import annotations

from tests.connectors.test_ldap_members import add_odd_users
from tests.e2e.conftest import Sync
from tests.peers.directory import user_uid

GROUPS_OF_NAMES = '(objectClass=groupOfNames)" }'


def test_member_spellings_sync_to_the_right_scim_members(sync_scim2: Sync) -> None:
    s = sync_scim2
    add_odd_users(s.ldap)
    assert s.run().code == 0
    assert s.member_names("odd") == {"joerg", "jsmith", "b", "alee"}  # not the ghost/admin


def test_unique_members_with_their_uid_suffix(sync_scim2: Sync) -> None:
    s = sync_scim2
    add_odd_users(s.ldap)
    text = s.config.read_text()
    assert GROUPS_OF_NAMES in text
    s.config.write_text(text.replace(
        GROUPS_OF_NAMES, '(objectClass=groupOfUniqueNames)" }\nmember_attribute = "uniqueMember"'))
    res = s.run()
    assert res.code == 0, res.out
    assert s.member_names("unique") == {"joerg", user_uid(3), "alee"}
