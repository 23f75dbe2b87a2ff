"""`confirm_gone` of the LDAP connector against a real OpenLDAP: absence is not proof.

Only an anchor a complete direct lookup within the configured base, scope and filter does
not find is confirmed gone; an error, a stopped server or a cut-short answer confirms
nothing and raises nothing. Anchors come from an independent ldap3 read.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ldap3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd_connectors.ldap.config import LdapConfig
from syncd_connectors.ldap.connector import LdapConnector
from tests.peers.directory import BASE, group_dn, user_dn
from tests.peers.ldap_fixtures import SMALL_USERS, ldap_settings
from tests.peers.slapd import Slapd

pytestmark = pytest.mark.peers

ELSEWHERE = f"ou=elsewhere,{BASE}"


def uuids(server: Slapd) -> dict[str, str]:
    """DN (lower-case) -> entryUUID, read with plain ldap3."""
    conn = ldap3.Connection(
        ldap3.Server(server.url), server.admin_dn, server.admin_password, auto_bind=True
    )
    conn.search(BASE, "(objectClass=*)", attributes=["entryUUID"])
    out = {e.entry_dn.lower(): str(e.entryUUID.value) for e in conn.entries}
    conn.unbind()
    return out


def opened(server: Slapd, **overrides: Any) -> LdapConnector:
    conn = LdapConnector("corp", LdapConfig(**ldap_settings(server, **overrides)))
    conn.open()
    return conn


@pytest.fixture(scope="module")
def changed(small_ldif: Path) -> Iterator[tuple[Slapd, set[str], set[str]]]:
    """A server where some users were deleted, moved out of the base or out of the filter:
    (server, anchors of users still in scope, anchors of users that left it)."""
    with Slapd(ldif=small_ldif) as server:
        before = uuids(server)
        server.add(f"dn: {ELSEWHERE}\nobjectClass: organizationalUnit\nou: elsewhere\n")
        server.delete(user_dn(1), user_dn(2))
        server.modify(f"dn: {user_dn(3)}\nchangetype: modrdn\nnewrdn: uid=user000003\n"
                      f"deleteoldrdn: 1\nnewsuperior: {ELSEWHERE}\n")  # fmt: skip
        # still under the base, no longer an inetOrgPerson: out of the filter
        server.delete(user_dn(4))
        server.add(f"dn: {user_dn(4)}\nobjectClass: account\nuid: user000004\n")
        left = {before[user_dn(i).lower()] for i in (1, 2, 3, 4)}
        kept = {before[user_dn(i).lower()] for i in range(5, SMALL_USERS)}
        yield server, kept, left


def test_only_what_left_the_scope_is_gone(changed: tuple[Slapd, set[str], set[str]]) -> None:
    server, kept, left = changed
    never = str(uuid.uuid4())
    conn = opened(server)
    assert conn.confirm_gone("user", [*sorted(kept), *sorted(left), never]) == left | {never}
    conn.close()


def test_entry_moved_out_of_the_base_or_filter_is_gone(
    changed: tuple[Slapd, set[str], set[str]],
) -> None:
    server, _kept, _left = changed
    now = uuids(server)
    moved = now[f"uid=user000003,{ELSEWHERE}".lower()]  # exists, outside the base
    recreated = now[user_dn(4).lower()]  # exists under the base, outside the filter
    conn = opened(server)
    assert conn.confirm_gone("user", [moved, recreated]) == {moved, recreated}
    wide = opened(server, users={"base": BASE, "filter": "(uid=*)"})
    assert wide.confirm_gone("user", [moved, recreated]) == set()  # in that scope: not gone
    conn.close()
    wide.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_confirmed_is_exactly_the_absent_anchors(
    changed: tuple[Slapd, set[str], set[str]], data: st.DataObject
) -> None:
    """Property: for any mix of present, departed and never-seen anchors (duplicates,
    filter metacharacters), the result is exactly the absent ones."""
    server, kept, left = changed
    strange = st.sampled_from(["*", "*)(uid=*", "\\", "(", "not-a-uuid", ""])
    absent = st.one_of(st.sampled_from(sorted(left)), st.uuids().map(str), strange)
    anchors = data.draw(st.lists(st.one_of(st.sampled_from(sorted(kept)), absent), max_size=40))
    conn = opened(server)
    try:
        assert conn.confirm_gone("user", anchors) == {a for a in anchors if a not in kept}
    finally:
        conn.close()


def test_lookups_are_batched(changed: tuple[Slapd, set[str], set[str]],
                             monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    server, kept, left = changed
    conn = opened(server)
    calls: list[str] = []
    real = conn._search

    def spy(base: str, filter_: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(filter_)
        return real(base, filter_, *args, **kwargs)

    monkeypatch.setattr(conn, "_search", spy)
    fresh = [str(uuid.uuid4()) for _ in range(230)]
    assert conn.confirm_gone("user", [*kept, *fresh, *left]) == set(fresh) | left
    assert len(calls) == 3  # 100 anchors per search
    assert all(f.startswith("(&(objectClass=inetOrgPerson)(|(entryUUID=") for f in calls)
    conn.close()


def test_groups_use_the_groups_scope(slapd: Slapd) -> None:
    before = uuids(slapd)
    slapd.delete(group_dn(1))
    conn = opened(slapd)
    g0, g1 = before[group_dn(0).lower()], before[group_dn(1).lower()]
    u0 = before[user_dn(0).lower()]
    # a user's anchor is not a group: gone from the groups' scope
    assert conn.confirm_gone("group", [g0, g1, u0]) == {g1, u0}
    conn.close()


def test_stopped_server_confirms_nothing_and_raises_nothing(
    slapd: Slapd, caplog: pytest.LogCaptureFixture
) -> None:
    conn = opened(slapd)
    slapd.stop()
    with caplog.at_level(logging.WARNING, logger="syncd.connectors.ldap"):
        assert conn.confirm_gone("user", [str(uuid.uuid4()), str(uuid.uuid4())]) == set()
    assert any("confirm_gone" in r.getMessage() for r in caplog.records)
    conn.close()


def test_paused_server_times_out_and_confirms_nothing(slapd: Slapd) -> None:
    conn = opened(slapd, timeout=1)
    with slapd.paused():
        assert conn.confirm_gone("user", [str(uuid.uuid4())]) == set()
    conn.close()


def test_answer_cut_short_by_a_size_limit_confirms_nothing(small_ldif: Path) -> None:
    with Slapd(ldif=small_ldif, size_limit=5) as server:
        server.add(f"dn: cn=reader,{BASE}\nobjectClass: person\ncn: r\nsn: r\nuserPassword: pw\n")
        present = [uuids(server)[user_dn(i).lower()] for i in range(8)]
        server.delete(user_dn(7))
        reader = {"bind_dn": f"cn=reader,{BASE}", "bind_password": "pw"}
        conn = opened(server, **reader)
        # 7 matches > the size limit of 5: the server stops early, which proves nothing
        assert conn.confirm_gone("user", present) == set()
        # under the limit the answer is complete again
        assert conn.confirm_gone("user", present[4:]) == {present[7]}
        conn.close()


def test_missing_base_confirms_nothing(slapd: Slapd) -> None:
    conn = opened(slapd, users={"base": f"ou=nowhere,{BASE}"})
    assert conn.confirm_gone("user", [str(uuid.uuid4())]) == set()
    conn.close()
