"""The LDAP connector's incremental reads against a real 389 Directory Server
(tests/peers/ds389.py): its RFC 4533 feed (cookies bound to the search, refreshDeletes FALSE
after a changes-only refresh, deletes named by nsUniqueId) and the watermark it falls back to
where that feed cannot serve. Expected anchors come from an independent ldap3 search.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import ldap3
import pytest

from syncd.model import Batch
from syncd_connectors.ldap.config import LdapConfig
from syncd_connectors.ldap.connector import LdapConnector
from syncd_connectors.ldap.feeds.cursor import make_cursor, parse_cursor
from tests.connectors.test_ldap import spy_searches
from tests.peers.directory import user_attrs
from tests.peers.ds389 import Ds389
from tests.peers.ds389_fixtures import TREE_USERS, Tree, ds389_settings, tree_ldif

pytestmark = pytest.mark.peers

ATTRS = ["uid", "cn", "title"]
ANCHORS = pytest.mark.parametrize("anchor", ["entryUUID", "nsUniqueId"])
FALLBACK = "falling back to a full read"


def opened(tree: Tree, **overrides: Any) -> LdapConnector:
    conn = LdapConnector("corp", LdapConfig(**ds389_settings(tree, **overrides)))
    conn.open()
    return conn


def read(conn: LdapConnector, cursor: str | None, kind: Any = "user") -> list[Batch]:
    return list(conn.read(kind, cursor, ATTRS if kind == "user" else ["cn"]))


def full_cursor(conn: LdapConnector, kind: Any = "user") -> str:
    batches = read(conn, None, kind)
    assert all(b.full for b in batches)
    cursor = batches[-1].cursor
    assert cursor is not None
    return cursor


def anchor_of(tree: Tree, anchor: str) -> dict[str, str]:
    """DN (lower-case) -> the anchor's value, read independently of the connector."""
    pick = 0 if anchor == "entryUUID" else 1
    return {dn: ids[pick] for dn, ids in tree.ids().items()}


def fallbacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if FALLBACK in r.getMessage()]


@pytest.fixture(autouse=True)
def _warnings(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    with caplog.at_level(logging.INFO, logger="syncd.connectors.ldap"):
        yield


# ---- the RFC 4533 feed -----------------------------------------------------------------------


@ANCHORS
def test_incremental_read_sees_exactly_the_adds_modifies_renames_and_deletes(
    ds389_tree: Tree, anchor: str, caplog: pytest.LogCaptureFixture
) -> None:
    tree = ds389_tree
    before = anchor_of(tree, anchor)
    conn = opened(tree, anchor=anchor)
    cursor = full_cursor(conn)
    assert conn.mechanism() == "syncrepl" and cursor.startswith("syncrepl:")

    tree.server.modify(tree.user_dn(1), {"title": "Changed"})
    new_dn = tree.add_user("newbie", title="New")
    renamed = tree.server.rename(tree.user_dn(3), "uid=renamed")
    tree.server.delete(tree.user_dn(2))
    tree.server.delete(tree.user_dn(4))

    (batch,) = read(conn, cursor)
    after = anchor_of(tree, anchor)
    got = {e.name.lower(): (e.external_id, e.raw.get("title")) for e in batch.entries}
    assert got == {
        tree.user_dn(1).lower(): (before[tree.user_dn(1).lower()], ("Changed",)),
        new_dn.lower(): (after[new_dn.lower()], ("New",)),
        renamed.lower(): (before[tree.user_dn(3).lower()], before_title(tree, 3)),
    }
    assert sorted(batch.deleted) == sorted(
        [before[tree.user_dn(2).lower()], before[tree.user_dn(4).lower()]]
    )
    assert batch.full is False and batch.complete
    assert batch.entries[0].modified is not None  # operational attributes were read too
    assert fallbacks(caplog) == []

    assert batch.cursor is not None
    (again,) = read(conn, batch.cursor)  # the new cursor starts after all that
    assert (again.entries, again.deleted, again.full) == ((), (), False)


def before_title(tree: Tree, i: int) -> tuple[str, ...] | None:
    title = user_attrs(i).get("title")
    return tuple(title) if title else None


def test_no_change_cycle_reads_nothing_and_does_not_fall_back(
    ds389_tree: Tree, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = ds389_tree
    cursor = full_cursor(opened(tree))
    tree.server.modify(tree.group_dn(1), {"description": "a change outside the users' base"})
    conn = opened(tree)  # a new session, as every CLI run is
    calls = spy_searches(monkeypatch)
    (batch,) = read(conn, cursor)
    assert (batch.entries, batch.deleted, batch.full, batch.complete) == ((), (), False, True)
    assert batch.cursor is not None and batch.cursor.startswith("syncrepl:")
    (again,) = read(conn, batch.cursor)
    assert (again.entries, again.deleted, again.full) == ((), (), False)
    reads = [c for c in calls if c[0].lower() == tree.people.lower() and c[2]]
    assert len(reads) == 2  # one sync search per read: no listing, no re-read
    assert fallbacks(caplog) == []


def test_a_cookie_that_really_is_invalid_falls_back_once_with_a_warning(
    ds389_tree: Tree, caplog: pytest.LogCaptureFixture
) -> None:
    conn = opened(ds389_tree)
    good = full_cursor(conn)
    _mech, fp, _payload = good.split(":", 2)
    cookie = parse_cursor(good, "syncrepl", fp)
    other = cookie.replace(b"(objectClass=inetOrgPerson)", b"(objectClass=person)")
    assert other != cookie  # bound to another filter: 389-ds says "Invalid session cookie"
    batches = read(conn, make_cursor("syncrepl", fp, other))
    assert all(b.full for b in batches)
    assert sum(len(b.entries) for b in batches) == TREE_USERS
    (warning,) = fallbacks(caplog)
    assert "e-syncRefreshRequired" in warning

    cursor = batches[-1].cursor
    assert cursor is not None
    ds389_tree.server.modify(ds389_tree.user_dn(5), {"title": "After"})
    (batch,) = read(conn, cursor)  # the fallback's cursor works: once, not every cycle
    assert batch.full is False and [e.raw["title"] for e in batch.entries] == [("After",)]
    assert len(fallbacks(caplog)) == 1


def test_an_entry_that_leaves_the_filter_is_reported_deleted(ds389_tree: Tree) -> None:
    """389-ds skips a changed entry that no longer matches instead of sending a delete; a
    full read would not list it, so the incremental one reports it deleted."""
    tree = ds389_tree
    users = {"base": tree.people, "filter": "(&(objectClass=inetOrgPerson)(!(title=Gone)))"}
    conn = opened(tree, users=users)
    cursor = full_cursor(conn)
    ids = tree.ids()
    tree.server.modify(tree.user_dn(6), {"title": "Gone"})
    tree.server.modify(tree.user_dn(7), {"title": "Still here"})
    (batch,) = read(conn, cursor)
    assert [e.name.lower() for e in batch.entries] == [tree.user_dn(7).lower()]
    assert batch.deleted == (ids[tree.user_dn(6).lower()][0],)


def test_group_change_comes_back_with_its_whole_member_list(ds389_tree: Tree) -> None:
    tree = ds389_tree
    conn = opened(tree)
    read(conn, None)  # users first, as the engine does
    cursor = full_cursor(conn, "group")
    outsider = next(i for i in range(TREE_USERS) if i not in tree.members(0))
    tree.server.admin.modify(tree.group_dn(0),
                             {"member": [(ldap3.MODIFY_ADD, [tree.user_dn(outsider)])]})
    (batch,) = read(conn, cursor, "group")
    (group,) = batch.entries
    ids = tree.ids()
    assert group.external_id == ids[tree.group_dn(0).lower()][0]
    expected = {ids[tree.user_dn(i).lower()][0] for i in [*tree.members(0), outsider]}
    assert group.members == frozenset(expected)


@pytest.mark.parametrize("users_first", [True, False], ids=["dn-map", "lookups"])
def test_unique_member_values_with_a_uid_name_nested_groups(ds389_tree: Tree,
                                                            users_first: bool) -> None:
    """groupOfUniqueNames: ``uniqueMember`` values with the optional UID suffix
    (``dn#'0101'B``, RFC 4517 NameAndOptionalUID) name users and groups alike; the groups
    are reported as `Entry.member_groups`, in a full read and in an incremental one."""
    tree = ds389_tree
    inner, outer = (f"cn={n},{tree.groups}" for n in ("u-inner", "u-outer"))
    unique = ["top", "groupOfUniqueNames"]
    tree.server.add(inner, {"objectClass": unique, "cn": "u-inner",
                            "uniqueMember": [tree.user_dn(1) + "#'0101'B"]})
    tree.server.add(outer, {"objectClass": unique, "cn": "u-outer", "uniqueMember": [
        tree.user_dn(0), inner.upper() + "#'1'B"]})
    conn = opened(tree, member_attribute="uniqueMember",
                  groups={"base": tree.groups, "filter": "(objectClass=groupOfUniqueNames)"})
    ids = {dn: pair[0] for dn, pair in tree.ids().items()}
    if users_first:
        read(conn, None)
    batches = read(conn, None, "group")
    got = {e.name.lower(): e for b in batches for e in b.entries}
    assert got[outer.lower()].members == {ids[tree.user_dn(0).lower()]}
    assert got[outer.lower()].member_groups == {ids[inner.lower()]}
    assert got[inner.lower()].members == {ids[tree.user_dn(1).lower()]}
    assert got[inner.lower()].member_groups == frozenset()
    cursor = batches[-1].cursor
    conn.close()
    conn = opened(tree, member_attribute="uniqueMember",  # a new session: lookups only
                  groups={"base": tree.groups, "filter": "(objectClass=groupOfUniqueNames)"})
    tree.server.admin.modify(outer, {"uniqueMember": [
        (ldap3.MODIFY_ADD, [tree.user_dn(2) + "#'0'B"])]})
    (batch,) = read(conn, cursor, "group")
    (changed,) = batch.entries
    assert changed.external_id == ids[outer.lower()]
    assert changed.member_groups == {ids[inner.lower()]}
    assert changed.members == {ids[tree.user_dn(i).lower()] for i in (0, 2)}
    conn.close()


# ---- where the feed cannot serve: watermark, chosen once -----------------------------------


def test_a_bind_dn_that_cannot_read_the_changelog_gets_watermarks_with_one_note(
    ds389_tree: Tree, caplog: pytest.LogCaptureFixture
) -> None:
    """With anchor entryUUID, deletes are named through cn=changelog; an account that may
    read the users but not the changelog gets watermark reads, chosen once, noted once."""
    tree = ds389_tree
    svc = f"uid=svc,{tree.base}"
    tree.server.add(svc, {"objectClass": ["top", "account", "simpleSecurityObject"],
                          "uid": "svc", "userPassword": "Svc-Secret-1"})  # fmt: skip
    aci = (f'(targetattr="*")(version 3.0; acl "syncd svc"; allow (read,search,compare) '
           f'userdn="ldap:///{svc}";)')  # fmt: skip
    tree.server.admin.modify(tree.base, {"aci": [(ldap3.MODIFY_ADD, [aci])]})
    conns = [opened(tree, bind_dn=svc, bind_password="Svc-Secret-1") for _ in range(2)]
    for conn in conns:  # two sessions (a daemon's cycles): one note
        assert conn.mechanism() == "watermark"
    notes = [r.getMessage() for r in caplog.records
             if r.levelno == logging.WARNING and "via watermark" in r.getMessage()]
    assert len(notes) == 1 and "cannot read the retro changelog" in notes[0]
    cursor = full_cursor(conns[1])
    assert cursor.startswith("watermark:")
    tree.server.modify(tree.user_dn(8), {"title": "Seen"})
    batches = read(conns[1], cursor)
    assert all(not b.full for b in batches)
    assert ("Seen",) in [e.raw.get("title") for b in batches for e in b.entries]
    assert fallbacks(caplog) == []
    by_nsid = opened(tree, bind_dn=svc, bind_password="Svc-Secret-1", anchor="nsUniqueId")
    assert by_nsid.mechanism() == "syncrepl"  # deletes need no changelog there


@pytest.fixture(scope="module")
def ds389_plain_changelog() -> Iterator[Ds389]:
    """A 389-ds whose retro changelog logs nsUniqueId but not entryUUID."""
    with Ds389(changelog_entryuuid=False) as server:
        server.load(tree_ldif(f"ou=plain,{server.base}", TREE_USERS, 0, 0))
        yield server


def test_changelog_without_entryuuid_means_watermark_for_entryuuid_anchors_only(
    ds389_plain_changelog: Ds389, caplog: pytest.LogCaptureFixture
) -> None:
    tree = Tree(ds389_plain_changelog, f"ou=plain,{ds389_plain_changelog.base}")
    conn = opened(tree)
    assert conn.mechanism() == "watermark"
    assert any("does not log entryUUID" in r.getMessage() for r in caplog.records)
    assert full_cursor(conn).startswith("watermark:")
    by_nsid = opened(tree, anchor="nsUniqueId")  # nsUniqueId anchors need no changelog
    assert by_nsid.mechanism() == "syncrepl"
    cursor = full_cursor(by_nsid)
    ids = tree.ids()
    tree.server.delete(tree.user_dn(9))
    (batch,) = read(by_nsid, cursor)
    assert batch.deleted == (ids[tree.user_dn(9).lower()][1],)


def test_killed_server_restarts_and_the_cursor_still_works(
    ds389_plain_changelog: Ds389,
) -> None:
    """After a SIGKILL ns-slapd's lock file names a dead PID; the launcher clears it."""
    server = ds389_plain_changelog
    tree = Tree(server, f"ou=plain,{server.base}")
    conn = opened(tree, anchor="nsUniqueId")
    cursor = full_cursor(conn)
    dead = server.pid
    server.kill()
    assert any((server.lock_dir / "server").glob("*")), "no stale lock to clear"
    server.start()
    assert server.pid != dead
    server.modify(tree.user_dn(10), {"title": "Survived"})
    conn = opened(tree, anchor="nsUniqueId")
    (batch,) = read(conn, cursor)
    assert batch.full is False and [e.raw["title"] for e in batch.entries] == [("Survived",)]


# ---- the pure parts --------------------------------------------------------------------------


def test_syncuuid_to_nsuniqueid_and_cookie_numbers() -> None:
    from syncd_connectors.ldap.feeds.controls import ds389_change_number, nsuniqueid

    assert nsuniqueid("69d0ee94-edc0-11f1-85c5-86d4dfeb9760") == (
        "69d0ee94-edc011f1-85c586d4-dfeb9760"
    )
    assert ds389_change_number(b"localhost:389#cn=dm:ou=people,dc=x:(objectClass=*)#42") == 42
    assert ds389_change_number(b"rid=000,csn=20261201000000.000000Z#000000#000#000000") is None
    assert ds389_change_number(b"host#client#") is None
