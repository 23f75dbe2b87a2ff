"""Incremental reads of the LDAP connector against a real slapd: syncrepl (syncprov, which
tests/peers/slapd.py configures), the watermark fallback (a slapd without syncprov) and the
fall-back-to-full rules. Expected anchors come from an independent ldap3 search.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from syncd.errors import Fatal, Retriable
from syncd.model import Batch
from syncd_connectors.ldap.connector import LdapConnector
from syncd_connectors.ldap.feeds.cursor import make_cursor
from tests.connectors.test_ldap import (
    all_entries,
    connector,
    entry_uuids,
    expected_members,
    spy_searches,
)
from tests.peers.directory import GROUPS, PEOPLE, group_dn, group_member_indexes, user_dn
from tests.peers.ldap_fixtures import SMALL_USERS
from tests.peers.slapd import Slapd

pytestmark = pytest.mark.peers

ATTRS = ["uid", "cn", "title", "mail"]
DECODERS = pytest.mark.parametrize("decoder", ["lean", "stock"])


def full_read(conn: LdapConnector, kind: Any = "user") -> tuple[list[Batch], str]:
    batches = list(conn.read(kind, None, ATTRS if kind == "user" else ["cn"]))
    cursor = batches[-1].cursor
    assert cursor is not None
    return batches, cursor


def changes(conn: LdapConnector, cursor: str, kind: Any = "user") -> list[Batch]:
    return list(conn.read(kind, cursor, ATTRS if kind == "user" else ["cn"]))


def opened(server: Slapd, **overrides: Any) -> LdapConnector:
    conn = connector(server, **overrides)
    conn.open()
    return conn


# ---- syncrepl ------------------------------------------------------------------------------


@DECODERS
def test_full_read_hands_out_a_syncrepl_cursor_on_its_last_batch(
    slapd: Slapd, decoder: str
) -> None:
    conn = opened(slapd, page_size=7, decoder=decoder)
    batches, cursor = full_read(conn)
    assert conn.mechanism() == "syncrepl"
    assert cursor.startswith("syncrepl:")
    assert all(b.full and b.cursor is None for b in batches[:-1])
    assert batches[-1].full and batches[-1].complete
    assert sum(len(b.entries) for b in batches) == SMALL_USERS


@DECODERS
def test_no_change_reads_nothing(slapd: Slapd, decoder: str) -> None:
    conn = opened(slapd, decoder=decoder)
    _b, cursor = full_read(conn)
    (batch,) = changes(conn, cursor)
    assert (batch.entries, batch.deleted, batch.full, batch.complete) == ((), (), False, True)
    assert batch.cursor is not None and batch.cursor.startswith("syncrepl:")


@DECODERS
def test_modify_add_delete_and_rename_are_seen(slapd: Slapd, decoder: str) -> None:
    uuids = entry_uuids(slapd)
    conn = opened(slapd, decoder=decoder)
    _b, cursor = full_read(conn)

    slapd.modify(f"dn: {user_dn(1)}\nchangetype: modify\nreplace: title\ntitle: Changed\n")
    (batch,) = changes(conn, cursor)
    assert [e.external_id for e in batch.entries] == [uuids[user_dn(1).lower()]]
    assert batch.entries[0].raw["title"] == ("Changed",)
    assert batch.entries[0].raw["uid"] == ("user000001",)  # the whole entry, not the delta
    assert batch.full is False and batch.deleted == ()
    assert batch.cursor is not None
    cursor = batch.cursor

    slapd.add(f"dn: uid=new,{PEOPLE}\nobjectClass: inetOrgPerson\nuid: new\ncn: N\nsn: N\n")
    slapd.delete(user_dn(2))
    slapd.modify(f"dn: {user_dn(3)}\nchangetype: modrdn\nnewrdn: uid=renamed\ndeleteoldrdn: 1\n")
    (batch,) = changes(conn, cursor)
    now = entry_uuids(slapd)
    got = {e.name.lower(): e.external_id for e in batch.entries}
    assert got == {
        f"uid=new,{PEOPLE}": now[f"uid=new,{PEOPLE}"],
        f"uid=renamed,{PEOPLE}": uuids[user_dn(3).lower()],  # same anchor, new DN
    }
    assert batch.deleted == (uuids[user_dn(2).lower()],)
    assert batch.cursor is not None
    (batch,) = changes(conn, batch.cursor)  # and the new cursor starts after all that
    assert batch.entries == () and batch.deleted == ()


@DECODERS
def test_group_change_alone_resolves_members_in_bulk(
    slapd: Slapd, decoder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    uuids = entry_uuids(slapd)
    _b, cursor = full_read(opened(slapd, decoder=decoder), "group")
    new = [i for i in range(SMALL_USERS) if i not in group_member_indexes(1, SMALL_USERS, 8)][:2]
    slapd.modify(
        f"dn: {group_dn(1)}\nchangetype: modify\nadd: member\nmember: {user_dn(new[0])}\n"
        f"member: {user_dn(new[1])}\n"
    )
    calls = spy_searches(monkeypatch)
    conn = opened(slapd, decoder=decoder)  # a new session: no user was read, the map is empty
    (batch,) = changes(conn, cursor, "group")
    (group,) = batch.entries
    assert group.external_id == uuids[group_dn(1).lower()]
    expected = expected_members(uuids, 1) | {uuids[user_dn(i).lower()] for i in new}
    assert group.members == expected  # the full member list, not the two added
    lookups = [c for c in calls if c[0].lower() == PEOPLE]
    assert len(lookups) == 1  # one bulk search, not one per member


def test_renamed_user_is_resolved_under_its_new_dn_only(slapd: Slapd) -> None:
    conn = opened(slapd)
    _u, users_cursor = full_read(conn)
    _g, groups_cursor = full_read(conn, "group")
    member = next(iter(sorted(expected_members(entry_uuids(slapd), 0))))
    old_dn = next(dn for dn, u in entry_uuids(slapd).items() if u == member)
    slapd.modify(f"dn: {old_dn}\nchangetype: modrdn\nnewrdn: uid=moved\ndeleteoldrdn: 1\n")
    changes(conn, users_cursor)  # the rename is seen by the users read...
    new = next(i for i in range(SMALL_USERS) if i not in group_member_indexes(0, SMALL_USERS, 8))
    slapd.modify(  # ...and the group still naming the old DN no longer counts it as a member
        f"dn: {group_dn(0)}\nchangetype: modify\nadd: member\nmember: {user_dn(new)}\n"
    )
    (batch,) = changes(conn, groups_cursor, "group")
    assert member not in (batch.entries[0].members or frozenset())


def bad_cursors(conn: LdapConnector, good: str) -> dict[str, str]:
    _mech, fp, _payload = good.split(":", 2)
    return {
        "garbage": "nonsense",
        "other mechanism": make_cursor("watermark", fp, b"20200101000000Z"),
        "search changed": make_cursor("syncrepl", "000000000000", b"rid=000"),
        "bad base64": f"syncrepl:{fp}:@@@",
        "unknown cookie": make_cursor("syncrepl", fp, b"not a cookie"),
        "cookie from the future": make_cursor(
            "syncrepl", fp, b"rid=000,csn=29990101000000.000000Z#000000#000#000000"
        ),
        "expired cookie": make_cursor(
            "syncrepl", fp, b"rid=000,csn=20000101000000.000000Z#000000#000#000000"
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "garbage",
        "other mechanism",
        "search changed",
        "bad base64",
        "unknown cookie",
        "cookie from the future",
        "expired cookie",
    ],
)
def test_unusable_cursor_falls_back_to_a_full_read_with_a_warning(
    slapd_server: Slapd, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    conn = opened(slapd_server)
    _b, good = full_read(conn)
    cursor = bad_cursors(conn, good)[case]
    with caplog.at_level(logging.WARNING, logger="syncd.connectors.ldap"):
        batches = changes(conn, cursor)
    assert all(b.full for b in batches)
    assert sum(len(b.entries) for b in batches) == SMALL_USERS
    assert batches[-1].cursor is not None and batches[-1].cursor.startswith("syncrepl:")
    assert any("falling back to a full read" in r.getMessage() for r in caplog.records)


def test_present_mode_answer_falls_back_to_a_full_read(
    small_ldif: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Slapd(ldif=small_ldif, sessionlog=2) as server:
        conn = opened(server)
        _b, cursor = full_read(conn)
        server.delete(*(user_dn(i) for i in range(10, 16)))  # more than the session log holds
        with caplog.at_level(logging.WARNING, logger="syncd.connectors.ldap"):
            batches = changes(conn, cursor)
        assert all(b.full for b in batches)
        assert sum(len(b.entries) for b in batches) == SMALL_USERS - 6
        assert any("present mode" in r.getMessage() for r in caplog.records)


def test_attributes_change_invalidates_the_cursor(slapd_server: Slapd) -> None:
    conn = opened(slapd_server)
    _b, cursor = full_read(conn)
    batches = list(conn.read("user", cursor, ["uid", "telephoneNumber"]))
    assert batches[-1].full  # a new mapped attribute needs every entry again


def test_incremental_none_never_hands_out_a_cursor(slapd_server: Slapd) -> None:
    conn = opened(slapd_server, incremental="none")
    batches = list(conn.read("user", "syncrepl:x:y", ATTRS))
    assert all(b.full and b.cursor is None for b in batches)


# ---- failures ------------------------------------------------------------------------------


@DECODERS
def test_server_stopped_mid_read_is_never_a_complete_read(slapd: Slapd, decoder: str) -> None:
    conn = opened(slapd, page_size=5, decoder=decoder)
    pages = conn.read("user", None, ATTRS)
    first = next(pages)
    assert first.cursor is None  # the cursor comes only with the last page
    slapd.kill()
    with pytest.raises(Retriable):  # the next page may be on our socket already: the rest
        list(pages)


@DECODERS
def test_server_paused_during_incremental_read_is_retriable(slapd: Slapd, decoder: str) -> None:
    conn = opened(slapd, decoder=decoder, timeout=1)
    _b, cursor = full_read(conn)
    with slapd.paused(), pytest.raises(Retriable, match="interrupted"):
        changes(conn, cursor)
    (batch,) = changes(conn, cursor)  # reconnects; the cursor is still good
    assert batch.full is False


# ---- watermark -----------------------------------------------------------------------------


@pytest.fixture
def plain_slapd(small_ldif: Path) -> Any:
    with Slapd(ldif=small_ldif, syncprov=False) as server:
        yield server


def test_without_syncprov_auto_uses_watermarks(plain_slapd: Slapd) -> None:
    uuids = entry_uuids(plain_slapd)
    conn = opened(plain_slapd, watermark_overlap=0)
    _b, cursor = full_read(conn)
    assert conn.mechanism() == "watermark" and cursor.startswith("watermark:")
    plain_slapd.modify(f"dn: {user_dn(5)}\nchangetype: modify\nreplace: title\ntitle: New\n")
    plain_slapd.delete(user_dn(6))
    batches = changes(conn, cursor)
    entries = all_entries(batches)
    # Same-second changes count (>=): the change is there even if made within the second
    # the cursor was taken; entries loaded in that second may come too (duplicates are fine).
    assert entries[user_dn(5).lower()].raw["title"] == ("New",)
    assert entries[user_dn(5).lower()].external_id == uuids[user_dn(5).lower()]
    assert all(not b.full for b in batches)
    # Documented limitation: a watermark cannot see deletes (the periodic full read does).
    assert all(b.deleted == () for b in batches)
    assert user_dn(6).lower() not in entries
    again = batches[-1].cursor
    assert again is not None and again.startswith("watermark:")
    plain_slapd.modify(f"dn: {user_dn(7)}\nchangetype: modify\nreplace: title\ntitle: Now\n")
    assert user_dn(7).lower() in all_entries(changes(conn, again))


def test_forced_watermark_on_a_syncprov_server(slapd_server: Slapd) -> None:
    conn = opened(slapd_server, incremental="watermark")
    _b, cursor = full_read(conn)
    assert cursor.startswith("watermark:")
    assert all(not b.full for b in changes(conn, cursor))


def test_forced_syncrepl_without_syncprov_is_fatal(plain_slapd: Slapd) -> None:
    conn = opened(plain_slapd, incremental="syncrepl")
    with pytest.raises(Fatal, match="syncrepl"):
        full_read(conn)


def test_group_search_base_is_not_the_users_base() -> None:
    assert GROUPS != PEOPLE  # the bulk-lookup spy above relies on it
