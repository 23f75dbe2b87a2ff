"""The lean decoder (connectors/syncd_connectors/ldap/wire/reply.py) against ldap3's stock decoder
on a real slapd: both must produce identical entries, whatever the replies contain. Plus the
decoder's strictness on damaged input: an error, never data.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

import syncd_connectors.ldap.wire.paging as base_module
from syncd.errors import Fatal
from syncd.model import Batch, Entry
from syncd_connectors.ldap.values import BINARY_ATTRIBUTES
from syncd_connectors.ldap.wire.ber import Malformed, ber_int, ber_seq, tlv
from syncd_connectors.ldap.wire.decode import Plan, make_entry, row_from_event
from syncd_connectors.ldap.wire.events import SearchEntry
from syncd_connectors.ldap.wire.reply import parse_message, split_messages
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


# ---- the same strictness on the rows path (decode.row_from_ber) ------------------------------


def _entry_message() -> bytes:
    """An entry as a full read sees it: short single values (the fast path), a long
    multi-valued one, an empty value, the anchor and modifyTimestamp."""

    def attr(name: bytes, *values: bytes) -> bytes:
        return ber_seq(tlv(0x04, name), tlv(0x31, b"".join(tlv(0x04, v) for v in values)))

    body = tlv(0x04, f"uid=a,{BASE}".encode()) + ber_seq(
        attr(b"uid", b"a"),
        attr(b"cn", "Zoë".encode(), b"x" * 300),
        attr(b"sn", b""),
        attr(b"mail", b"a@example.com"),
        attr(b"entryUUID", b"0b3c5a8e-1d2f-4a6b-9c8d-7e6f5a4b3c2d"),
        attr(b"modifyTimestamp", b"20261127093000Z"),
    )
    return ber_seq(ber_int(7), tlv(0x64, body))


def _plan(warm: bool, keep_all: bool = False) -> Plan:
    """A plan as a read of uid, cn, sn, mail makes (or of everything); warm: its header
    cache already knows every short attribute of `_entry_message` (a long read's path)."""
    keep = None if keep_all else {"uid", "cn", "sn", "mail"}
    plan = Plan("user", keep, BINARY_ATTRIBUTES, "entryuuid", "member")
    if warm:
        buf = _entry_message()
        parse_message(buf, 4, len(buf), 7, plan)
        assert len(plan.headers) == 5  # all but cn (two values)
    return plan


@pytest.mark.parametrize("warm", [False, True])
def test_rows_equal_the_reference_decoding(warm: bool) -> None:
    buf = _entry_message()
    plan = _plan(warm)
    row = parse_message(buf, 4, len(buf), 7, plan)
    reference = parse_message(buf, 4, len(buf), 7)
    assert isinstance(reference, SearchEntry)
    assert row == row_from_event(reference, _plan(False))
    assert row == (
        f"uid=a,{BASE}",
        "0b3c5a8e-1d2f-4a6b-9c8d-7e6f5a4b3c2d",
        {"uid": ("a",), "cn": ("Zoë", "x" * 300), "sn": ("",), "mail": ("a@example.com",)},
        {"uid": "a", "cn": ("Zoë", "x" * 300), "sn": "", "mail": "a@example.com"},
        None,
        "2026-11-27T09:30:00.000000Z",
    )


@pytest.mark.parametrize("warm", [False, True])
def test_rows_every_truncation_is_an_error(warm: bool) -> None:
    buf = _entry_message()
    for cut in range(4, len(buf)):
        with pytest.raises(Malformed):
            parse_message(buf[:cut], 4, cut, 7, _plan(warm))


@pytest.mark.parametrize("warm", [False, True])
@pytest.mark.parametrize("delta", [1, -1])
def test_rows_every_changed_length_is_an_error(warm: bool, delta: int) -> None:
    buf = _entry_message()
    good = parse_message(buf, 4, len(buf), 7, _plan(False, keep_all=True))
    assert isinstance(good, tuple) and len(good[2]) == 6
    for pos in range(4, len(buf)):
        damaged = bytearray(buf)
        damaged[pos] = (damaged[pos] + delta) % 256
        try:
            got = parse_message(bytes(damaged), 4, len(buf), 7, _plan(warm, keep_all=True))
        except Malformed:
            continue
        # A change inside a value or name changes the data but never the structure.
        assert isinstance(got, tuple)
        assert [len(v) for v in got[2].values()] == [len(v) for v in good[2].values()]
        assert [len(x) for v in got[2].values() for x in v] == [
            len(x) for v in good[2].values() for x in v
        ]


@pytest.mark.parametrize("warm", [False, True])
def test_rows_a_known_attribute_cut_short_is_an_error(warm: bool) -> None:
    """The last attribute's header (known to a warm plan) claims more than the entry holds,
    while every enclosing length agrees with the cut: never read past the entry."""
    mail = ber_seq(tlv(0x04, b"mail"), tlv(0x31, tlv(0x04, b"a@example.com")))
    body = tlv(0x04, f"uid=a,{BASE}".encode()) + tlv(0x30, mail[:-1])
    cut = ber_seq(ber_int(7), tlv(0x64, body)) + b"\x30\x03\x02\x01\x07"  # a neighbour
    ((start, end, _next), *_rest) = list(split_messages(cut, 0))
    with pytest.raises(Malformed):
        parse_message(cut, start, end, 7, _plan(warm))


def test_rows_reject_a_duplicate_attribute() -> None:
    uid = ber_seq(tlv(0x04, b"uid"), tlv(0x31, tlv(0x04, b"b")))
    body = tlv(0x04, f"uid=a,{BASE}".encode()) + ber_seq(uid, uid)
    twice = ber_seq(ber_int(7), tlv(0x64, body))
    ((start, end, _next),) = list(split_messages(twice, 0))
    for warm in (False, True):
        with pytest.raises(Malformed, match="twice"):
            parse_message(twice, start, end, 7, _plan(warm))


def test_make_entry_is_the_dataclass_constructor() -> None:
    members = frozenset({"m"})
    kwargs: dict[str, Any] = {
        "raw": {"uid": ("a",)}, "attrs": {"uid": "a"}, "name": "uid=a", "modified": "t",
    }  # fmt: skip
    for kind, extra in (("user", None), ("group", members)):
        fast = make_entry(kind, "id", kwargs["raw"], kwargs["attrs"], "uid=a", "t", extra)
        slow = Entry(kind, "id", members=extra, **kwargs)  # type: ignore[arg-type]
        assert fast == slow and repr(fast) == repr(slow)
        assert vars(fast) == vars(slow)  # every field, none extra


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

    def damaged(*_a: Any, **_k: Any) -> Any:
        raise Malformed("test damage")

    monkeypatch.setattr(base_module, "lean_search", broken)
    monkeypatch.setattr(base_module, "receive_reply", damaged)  # the pipelined paged read
    conn = connector(slapd_server, incremental="none")
    conn.open()
    with pytest.raises(Fatal, match='decoder = "stock"'):
        list(conn.read("user", None, ["uid"]))


# ---- control codecs (the DirSync ones are all the suite can check without an AD) ----------


def test_dirsync_control_codecs() -> None:
    from syncd_connectors.ldap.feeds.controls import dirsync_request, dirsync_response
    from syncd_connectors.ldap.wire.ber import children, decode_int, sequence
    from syncd_connectors.ldap.wire.request import DIRSYNC

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

    from syncd_connectors.ldap.feeds.controls import sync_info, sync_state

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


# ---- requests (connectors/syncd_connectors/ldap/wire/request.py) ------------------------------


@pytest.mark.parametrize("message_id", [1, 127, 128, 300, 70_000])
@pytest.mark.parametrize(
    "controls",
    [
        [],
        [("1.2.840.113556.1.4.319", False, b"0\x06\x02\x02\x01\xf4\x04\x00")],
        [("1.2.3", False, None), ("1.3.6.1.4.1.4203.1.9.1.1", True, b"0\x03\n\x01\x01")],
    ],
)
def test_ldap_message_is_byte_for_byte_ldap3s(message_id: int, controls: Any) -> None:
    """The envelope we assemble around the cached request equals ldap3's own encoding."""
    import ldap3
    from ldap3.operation.search import search_operation
    from ldap3.protocol.convert import build_controls_list
    from ldap3.protocol.rfc4511 import LDAPMessage, MessageID, ProtocolOp
    from ldap3.utils.asn1 import encode

    from syncd_connectors.ldap.wire.request import ldap_message, search_request

    args = (PEOPLE, "(&(objectClass=inetOrgPerson)(cn=Zoë*))", "sub", ("uid", "cn"))
    request = search_operation(
        PEOPLE, args[1], ldap3.SUBTREE, ldap3.DEREF_NEVER, ["uid", "cn"],
        0, 0, False, True, True, None, None, False,
    )  # fmt: skip
    message = LDAPMessage()
    message["messageID"] = MessageID(message_id)
    message["protocolOp"] = ProtocolOp().setComponentByName("searchRequest", request)
    built = build_controls_list(controls)
    if built is not None:
        message["controls"] = built
    op = search_request(*args, True, True)
    assert search_request(*args, True, True) is op  # encoded once, then reused
    assert ldap_message(message_id, op, controls) == encode(message)
