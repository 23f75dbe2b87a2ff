"""`groups_naming` of the LDAP connector against a real OpenLDAP: the groups a user back in
scope rejoins, found by a direct search rather than by waiting for the group to change.

The property: for any set of users, the answer is exactly the groups of the configured
scope whose member values name one of them, each whole (its members as a full listing
resolves them). The expectation comes from the generator of the directory and from an
independent full read, not from the code under test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd_connectors.ldap.config import LdapConfig
from syncd_connectors.ldap.connector import LdapConnector
from tests.peers.directory import group_cn, group_member_indexes, user_dn
from tests.peers.ldap_fixtures import (
    SEED,
    SMALL_GROUPS,
    SMALL_MEMBERS,
    SMALL_USERS,
    ldap_settings,
)
from tests.peers.slapd import Slapd

pytestmark = pytest.mark.peers


@pytest.fixture(scope="module")
def conn(slapd_server: Slapd) -> Iterator[LdapConnector]:
    c = LdapConnector("corp", LdapConfig(**ldap_settings(slapd_server)))
    c.open()
    yield c
    c.close()


@pytest.fixture(scope="module")
def listing(conn: LdapConnector) -> tuple[dict[str, str], dict[str, frozenset[str] | None]]:
    """(user DN, lower-case -> anchor), (group cn -> members) from full reads."""
    users = {e.name.lower(): e.external_id for b in conn.read("user") for e in b.entries
             if e.name}
    groups = {str(e.raw["cn"][0]): e.members for b in conn.read("group") for e in b.entries}
    return users, groups


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picked=st.sets(st.integers(0, SMALL_USERS - 1), max_size=6), unknown=st.booleans())
def test_exactly_the_groups_naming_the_users_whole(
        conn: LdapConnector,
        listing: tuple[dict[str, str], dict[str, frozenset[str] | None]],
        picked: set[int], unknown: bool) -> None:
    users, groups = listing
    ids = [users[user_dn(i).lower()] for i in sorted(picked)]
    if unknown:
        ids.append(str(uuid.uuid4()))  # no such user: names no group, and no error
    expected = {group_cn(j) for j in range(SMALL_GROUPS)
                if picked & set(group_member_indexes(j, SMALL_USERS, SMALL_MEMBERS, SEED))}
    got = {str(e.raw["cn"][0]): e.members for e in conn.groups_naming(ids, ["cn"])}
    assert set(got) == expected
    for cn, members in got.items():
        assert members == groups[cn]


def test_no_group_base_names_no_group(slapd_server: Slapd,
                                      listing: tuple[dict[str, str], object]) -> None:
    users, _ = listing
    settings_ = ldap_settings(slapd_server)
    del settings_["groups"]
    c = LdapConnector("corp", LdapConfig(**settings_))
    c.open()
    try:
        assert c.groups_naming(list(users.values())) == []
    finally:
        c.close()
