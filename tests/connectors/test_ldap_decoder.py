"""The lean decoder (connectors/ldap/wire.py) against ldap3's stock decoder on a real slapd:
both must produce identical entries, whatever the replies contain. Plus the decoder's
strictness on damaged input: an error, never data.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

import connectors.ldap.base as base_module
from connectors.ldap.wire import (
    Malformed,
    ber_int,
    ber_seq,
    parse_message,
    split_messages,
    tlv,
)
from syncd.errors import Fatal
from syncd.model import Batch
from tests.connectors.test_ldap import connector
from tests.peers.directory import BASE, PEOPLE, user_dn
from tests.peers.ldap_fixtures import SMALL_USERS
from tests.peers.slapd import Slapd

pytestmark = pytest.mark.peers


def read_both(server: Slapd, kind: Any, attributes: Any, **overrides: Any) -> list[list[Batch]]:
    out = []
    for decoder in ("lean", "stock"):
        conn = connector(server, decoder=decoder, incremental="none", **overrides)
        conn.open()
        out.append(list(conn.read(kind, None, attributes)))
        conn.close()
    return out


def assert_same(server: Slapd, kind: Any, attributes: Any, **overrides: Any) -> list[Batch]:
    lean, stock = read_both(server, kind, attributes, **overrides)
    assert lean == stock
    return lean


@pytest.mark.parametrize("attributes", [None, ["uid", "cn", "telephoneNumber"], []])
@pytest.mark.parametrize("page_size", [7, 500])
def test_users_identical(slapd_server: Slapd, attributes: Any, page_size: int) -> None:
    batches = assert_same(slapd_server, "user", attributes, page_size=page_size)
    assert sum(len(b.entries) for b in batches) == SMALL_USERS


def test_groups_identical(slapd_server: Slapd) -> None:
    batches = assert_same(slapd_server, "group", None, page_size=3)
    assert all(e.members for b in batches for e in b.entries)


def test_empty_result_identical(slapd_server: Slapd) -> None:
    users = {"base": PEOPLE, "filter": "(uid=nobody)"}
    assert assert_same(slapd_server, "user", ["uid"], users=users) == [Batch("user", ())]


def test_binary_non_ascii_and_huge_entries_identical(slapd: Slapd) -> None:
    photo = bytes(range(256)) * 8192  # 2 MiB: many socket reads, 4-byte BER lengths
    slapd.modify(
        f"dn: {user_dn(4)}\nchangetype: modify\nadd: jpegPhoto\n"
        f"jpegPhoto:: {base64.b64encode(photo).decode()}\n"
        "-\nadd: description\n"
        + "".join(f"description: Ünïcödé {i} {'x' * i}\n" for i in range(300))
    )
    batches = assert_same(slapd, "user", None)
    (four,) = [e for b in batches for e in b.entries if e.name == user_dn(4)]
    assert base64.b64decode(four.raw["jpegphoto"][0]) == photo
    assert len(four.raw["description"]) == 300 and four.raw["description"][1] == "Ünïcödé 1 x"


def test_referral_identical_and_incomplete(slapd: Slapd) -> None:
    slapd._tool(
        "ldapmodify",
        ["-a", "-M"],
        f"dn: ou=elsewhere,{PEOPLE}\nobjectClass: referral\nobjectClass: extensibleObject\n"
        "ou: elsewhere\nref: ldap://other.example.org/ou=elsewhere,dc=example,dc=org\n",
    )
    batches = assert_same(slapd, "user", ["uid"])
    assert batches[-1].complete is False  # part of the tree lives elsewhere


def test_tls_identical(small_ldif: Any) -> None:
    with Slapd(ldif=small_ldif, tls=True) as server:
        batches = assert_same(server, "user", None, url=server.ldaps_url, ca_file=server.ca_file)
        assert sum(len(b.entries) for b in batches) == SMALL_USERS


# ---- strictness ----------------------------------------------------------------------------


def _message() -> bytes:
    def attr(name: bytes, *values: bytes) -> bytes:
        return ber_seq(tlv(0x04, name), tlv(0x31, b"".join(tlv(0x04, v) for v in values)))

    body = tlv(0x04, f"uid=a,{BASE}".encode()) + ber_seq(
        attr(b"uid", b"a"), attr(b"cn", "Zoë".encode(), b"x" * 300), attr(b"sn", b"")
    )
    return ber_seq(ber_int(7), tlv(0x64, body))


def test_valid_message_parses() -> None:
    buf = _message()
    ((s, e, nxt),) = list(split_messages(buf, 0))
    event = parse_message(buf, s, e, 7)
    assert nxt == len(buf)
    assert event.dn == f"uid=a,{BASE}"  # type: ignore[union-attr]
    assert event.attrs == {"uid": [b"a"], "cn": ["Zoë".encode(), b"x" * 300], "sn": [b""]}  # type: ignore[union-attr]


def test_every_truncation_is_an_error_never_data() -> None:
    buf = _message()
    start = 4  # the outer header is 0x30 0x82 LL LL
    for cut in range(start, len(buf)):
        with pytest.raises(Malformed):
            parse_message(buf[:cut], start, cut, 7)
        assert list(split_messages(buf[:cut], 0)) == []  # incomplete: wait for more


@pytest.mark.parametrize("delta", [1, -1])
def test_every_changed_length_is_an_error(delta: int) -> None:
    buf = _message()
    good = parse_message(buf, 4, len(buf), 7)
    for pos in range(4, len(buf)):
        damaged = bytearray(buf)
        damaged[pos] = (damaged[pos] + delta) % 256
        try:
            got = parse_message(bytes(damaged), 4, len(buf), 7)
        except Malformed:
            continue
        # A change inside a value or name changes the data but never the structure.
        assert type(got) is type(good)
        assert len(got.attrs) == len(good.attrs)  # type: ignore[union-attr]
        assert [len(v) for v in got.attrs.values()] == [len(v) for v in good.attrs.values()]  # type: ignore[union-attr]


def test_wrong_message_id_is_an_error() -> None:
    buf = _message()
    with pytest.raises(Malformed, match="message 7"):
        parse_message(buf, 4, len(buf), 8)


def test_decoder_error_is_fatal_and_names_the_fallback(
    slapd_server: Slapd, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_a: Any, **_k: Any) -> Any:
        raise Malformed("test damage")
        yield  # pragma: no cover

    monkeypatch.setattr(base_module, "lean_search", broken)
    conn = connector(slapd_server, incremental="none")
    conn.open()
    with pytest.raises(Fatal, match='decoder = "stock"'):
        list(conn.read("user", None, ["uid"]))


# ---- control codecs (the DirSync ones are all the suite can check without an AD) ----------


def test_dirsync_control_codecs() -> None:
    from connectors.ldap.sync import dirsync_request, dirsync_response
    from connectors.ldap.wire import DIRSYNC, children, decode_int, sequence

    oid, critical, value = dirsync_request(b"\x01cookie", max_bytes=1000)
    assert (oid, critical) == (DIRSYNC, True)
    parts = sequence(value)
    assert [t for t, _c in parts] == [0x02, 0x02, 0x04]
    assert decode_int(parts[0][1]) == 0x801 and decode_int(parts[1][1]) == 1000
    assert parts[2][1] == b"\x01cookie"
    reply = ber_seq(ber_int(1), ber_int(0), tlv(0x04, b"next"))
    assert dirsync_response(reply) == (True, b"next")
    with pytest.raises(Malformed):
        dirsync_response(ber_seq(ber_int(1)))
    assert children(reply)[0][0] == 0x30


def test_sync_info_and_state_codecs() -> None:
    import uuid

    from connectors.ldap.sync import sync_info, sync_state

    u = uuid.uuid4()
    state = ber_seq(tlv(0x0A, b"\x03"), tlv(0x04, u.bytes))
    assert sync_state(state) == (3, str(u))
    with pytest.raises(Malformed):
        sync_state(ber_seq(tlv(0x0A, b"\x03"), tlv(0x04, b"short")))
    id_set = tlv(0xA3, tlv(0x04, b"c") + tlv(0x01, b"\xff") + tlv(0x31, tlv(0x04, u.bytes)))
    info = sync_info(id_set)
    assert (info.kind, info.cookie, info.refresh_deletes, info.uuids) == (
        "syncIdSet", b"c", True, [str(u)],
    )  # fmt: skip
    assert sync_info(tlv(0x80, b"new")).cookie == b"new"
    with pytest.raises(Malformed):
        sync_info(tlv(0xA7, b""))
