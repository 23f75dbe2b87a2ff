"""Creating LDAP entries (connectors/syncd_connectors/ldap/write/create.py, wire/add.py): the
lean add with the Post-Read control (RFC 4527), its fallbacks and the stock path.

The encoder is checked byte for byte against ldap3's own encoding (a Hypothesis property);
the rest against a real slapd, whose root DSE lists the Post-Read control. Every created entry
is compared with what an independent read of the server gives, so the fast path is never
checked against itself. "No read-back happened" is observed by making the read-back fail.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ldap3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import syncd_connectors.ldap.write.create as create_module
import syncd_connectors.ldap.write.session as session_module
from syncd.errors import Conflict, Rejected, Retriable, Unreachable
from syncd.model import Entry
from syncd_connectors.ldap.config import LdapConfig
from syncd_connectors.ldap.connector import LdapConnector
from syncd_connectors.ldap.values import iso_timestamp
from syncd_connectors.ldap.wire.ber import Malformed, tlv
from syncd_connectors.ldap.wire.decode import Plan
from syncd_connectors.ldap.wire.events import OpDone
from syncd_connectors.ldap.wire.reply import parse_response
from syncd_connectors.ldap.wire.request import RequestControl, ldap_message
from syncd_connectors.ldap.wire.writes import (
    POST_READ,
    add_request,
    modify_request,
    post_read,
    post_read_row,
)
from syncd_connectors.ldap.write.writer import LdapWriter
from tests.peers.directory import PEOPLE
from tests.peers.ldap_fixtures import ldap_settings
from tests.peers.slapd import Slapd

NEW = {"uid": "zoë.neu", "cn": "Zoë Ångström-Neu", "sn": "Ångström", "givenName": "Zoë",
       "telephoneNumber": ("+1 1", "+1 2"), "description": "x" * 300}  # a long-form length


def make(server: Slapd, **overrides: Any) -> LdapConnector:
    conn = LdapConnector("corp", LdapConfig(**ldap_settings(server, **overrides)))
    conn.open()
    return conn


@pytest.fixture
def corp(slapd: Slapd) -> Iterator[LdapConnector]:
    conn = make(slapd)
    yield conn
    conn.close()


def writer(conn: LdapConnector) -> LdapWriter:
    return conn._writer


def no_read_back(monkeypatch: pytest.MonkeyPatch, w: LdapWriter) -> None:
    def fail(dn: str, plan: Plan) -> None:
        raise AssertionError(f"read back {dn}")

    monkeypatch.setattr(w, "_read_back", fail)


def count_read_backs(monkeypatch: pytest.MonkeyPatch, w: LdapWriter) -> list[str]:
    seen: list[str] = []
    real = w._read_back

    def spy(dn: str, plan: Plan) -> Any:
        seen.append(dn)
        return real(dn, plan)

    monkeypatch.setattr(w, "_read_back", spy)
    return seen


def server_entry(server: Slapd, dn: str) -> dict[str, list[str]]:
    conn = ldap3.Connection(ldap3.Server(server.url, get_info=ldap3.NONE), server.admin_dn,
                            server.admin_password, auto_bind=True)
    conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=["*", "+"])
    (found,) = [r for r in conn.response or [] if r.get("type") == "searchResEntry"]
    conn.unbind()
    return {k.lower(): [v.decode() for v in vs] for k, vs in found["raw_attributes"].items()}


def assert_is_the_server_entry(server: Slapd, created: Entry) -> None:
    stored = server_entry(server, created.name)
    assert created.external_id == stored["entryuuid"][0]
    assert created.modified == iso_timestamp(stored["modifytimestamp"][0])
    user = {k: tuple(v) for k, v in stored.items()
            if k in {"uid", "cn", "sn", "givenname", "telephonenumber", "description",
                     "objectclass"}}
    assert {k: v for k, v in created.raw.items()
            if k not in ("entryuuid", "modifytimestamp")} == user


# ---- the request, byte for byte -----------------------------------------------------------

_names = st.from_regex(r"[a-zA-Z][a-zA-Z0-9-]{0,20}", fullmatch=True)
_values = st.one_of(st.text(max_size=200), st.binary(max_size=300))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    message_id=st.integers(1, 2**31 - 1),
    dn=st.text(min_size=1, max_size=150),
    attributes=st.dictionaries(_names, st.lists(_values, min_size=1, max_size=4),
                               max_size=6),
    selection=st.lists(st.sampled_from(["*", "+", "entryUUID", "modifyTimestamp"]),
                       min_size=1, max_size=4),
    critical=st.booleans(),
)
def test_add_request_is_byte_for_byte_ldap3s(message_id: int, dn: str,
                                              attributes: dict[str, list[Any]],
                                              selection: list[str], critical: bool) -> None:
    """What the lean add sends is exactly what ldap3 would send for the same add and the
    same Post-Read control (so servers see nothing new)."""
    from ldap3.operation.add import add_operation
    from ldap3.protocol.convert import build_controls_list
    from ldap3.protocol.rfc4511 import LDAPMessage, MessageID, ProtocolOp
    from ldap3.protocol.rfc4527 import post_read_control
    from ldap3.utils.asn1 import encode

    oid, crit, value = post_read(selection)
    assert (oid, crit) == (POST_READ, False)
    controls: list[RequestControl] = [(oid, critical, value)]
    message = LDAPMessage()
    message["messageID"] = MessageID(message_id)
    message["protocolOp"] = ProtocolOp().setComponentByName(
        "addRequest", add_operation(dn, attributes, True))
    message["controls"] = build_controls_list([post_read_control(selection, critical)])
    assert ldap_message(message_id, add_request(dn, attributes), controls) == encode(message)


_ops = st.sampled_from([ldap3.MODIFY_ADD, ldap3.MODIFY_DELETE, ldap3.MODIFY_REPLACE])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    message_id=st.integers(1, 2**31 - 1),
    dn=st.text(min_size=1, max_size=150),
    changes=st.dictionaries(_names, st.lists(st.tuples(_ops, st.lists(_values, max_size=4)),
                                             min_size=1, max_size=3), max_size=5),
)
def test_modify_request_is_byte_for_byte_ldap3s(
    message_id: int, dn: str, changes: dict[str, list[tuple[str, list[Any]]]]
) -> None:
    """The lean modify (members, updates, disabling) sends what ldap3 would, empty REPLACEs
    (clearing an attribute) and many values included."""
    from ldap3.operation.modify import modify_operation
    from ldap3.protocol.rfc4511 import LDAPMessage, MessageID, ProtocolOp
    from ldap3.utils.asn1 import encode

    message = LDAPMessage()
    message["messageID"] = MessageID(message_id)
    message["protocolOp"] = ProtocolOp().setComponentByName(
        "modifyRequest", modify_operation(dn, changes, True))
    assert ldap_message(message_id, modify_request(dn, changes), []) == encode(message)


# ---- replies: strict, an error and never data -----------------------------------------------

@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=120))
def test_damaged_responses_raise_malformed_only(data: bytes) -> None:
    try:
        done = parse_response(data, 0, len(data), 5, 0x69)
    except Malformed:
        return
    assert isinstance(done, OpDone)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=120))
def test_damaged_post_read_entries_raise_malformed_only(data: bytes) -> None:
    plan = Plan("user", None, frozenset(), "entryuuid", "member")
    with contextlib.suppress(Malformed):
        post_read_row(OpDone(0, "", "", {POST_READ: data}), plan)


def test_a_reply_to_another_message_or_operation_is_malformed() -> None:
    result = tlv(0x0A, b"\x00") + tlv(0x04, b"") + tlv(0x04, b"")
    ok = tlv(0x02, b"\x05") + tlv(0x69, result)
    assert parse_response(ok, 0, len(ok), 5, 0x69).code == 0
    with pytest.raises(Malformed, match="message 5 while waiting for 6"):
        parse_response(ok, 0, len(ok), 6, 0x69)
    with pytest.raises(Malformed, match="protocolOp"):
        parse_response(ok, 0, len(ok), 5, 0x67)  # a ModifyResponse is not an AddResponse


# ---- against slapd ------------------------------------------------------------------------

@pytest.mark.peers
def test_slapd_offers_post_read_and_the_root_dse_is_read_once(
    corp: LdapConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = writer(corp)
    searched: list[str] = []
    real = w._search

    def spy(base: str, *args: Any) -> Any:
        searched.append(base)
        return real(base, *args)

    monkeypatch.setattr(w, "_search", spy)
    for i in range(3):
        corp.create("user", {"uid": f"n{i}", "cn": "N", "sn": "N"})
    assert w.offers_post_read() is True
    assert searched == [""]  # the root DSE, once; no read-back of any created entry


@pytest.mark.peers
def test_create_takes_the_entry_from_the_post_read_control(
    corp: LdapConnector, slapd: Slapd, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = writer(corp)
    no_read_back(monkeypatch, w)
    created = corp.create("user", dict(NEW))
    assert created.name == f"uid=zoë.neu,{PEOPLE}"
    assert created.attrs["telephonenumber"] == ("+1 1", "+1 2")
    assert_is_the_server_entry(slapd, created)
    assert (created.kind, created.members) == ("user", None)
    group = corp.create("group", {"cn": "team"})
    assert group.members == frozenset() and group.external_id == \
        server_entry(slapd, group.name)["entryuuid"][0]


@pytest.mark.peers
def test_post_read_entry_equals_the_read_back(corp: LdapConnector) -> None:
    """The entry the control brings is the entry a read-back of it would decode to."""
    w = writer(corp)
    created = corp.create("user", dict(NEW))
    again = w._created("user", created.name, w._read_back(created.name, w._plan("user")))
    assert again == created


@pytest.mark.peers
def test_create_reads_back_when_post_read_is_not_offered(
    corp: LdapConnector, slapd: Slapd, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = writer(corp)
    monkeypatch.setattr(w, "_post_read", False)  # as a root DSE without 1.3.6.1.1.13.2
    sent: list[Any] = []
    real_request = session_module.lean_request

    def spy(conn: Any, op: bytes, response: int, controls: Any = ()) -> OpDone:
        sent.append(list(controls))
        return real_request(conn, op, response, controls)

    monkeypatch.setattr(session_module, "lean_request", spy)
    read_backs = count_read_backs(monkeypatch, w)
    created = corp.create("user", dict(NEW))
    assert sent == [[]]  # the control is not sent to a server that does not list it
    assert read_backs == [created.name]
    assert_is_the_server_entry(slapd, created)


@pytest.mark.peers
def test_create_reads_back_when_the_server_sends_no_post_read_entry(
    corp: LdapConnector, slapd: Slapd, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server may ignore a non-critical control: slapd ignores one it does not know, so an
    unknown OID makes it answer the add without a Post-Read entry, as such a server would."""
    w = writer(corp)
    monkeypatch.setattr(create_module, "post_read",
                        lambda attrs: ("1.3.6.1.4.1.99999.1", False, post_read(attrs)[2]))
    read_backs = count_read_backs(monkeypatch, w)
    created = corp.create("user", dict(NEW))
    assert read_backs == [created.name]
    assert_is_the_server_entry(slapd, created)


@pytest.mark.peers
def test_stock_decoder_adds_and_modifies_through_ldap3(
    slapd: Slapd, monkeypatch: pytest.MonkeyPatch
) -> None:
    corp = make(slapd, decoder="stock")
    w = writer(corp)
    monkeypatch.setattr(session_module, "lean_request",
                        lambda *a: pytest.fail("the lean path is not used with stock"))
    read_backs = count_read_backs(monkeypatch, w)
    created = corp.create("user", dict(NEW))
    assert read_backs == [created.name]
    assert_is_the_server_entry(slapd, created)
    with pytest.raises(Conflict, match="uid=USER000001"):
        corp.create("user", {"uid": "USER000001", "cn": "Dup", "sn": "Dup"})
    corp.update("user", created.external_id, {"title": "Stock", "description": None})
    stored = server_entry(slapd, created.name)
    assert stored["title"] == ["Stock"] and "description" not in stored
    corp.close()


@pytest.mark.peers
def test_lean_add_errors_are_the_servers_and_leave_nothing_behind(
    corp: LdapConnector, slapd: Slapd
) -> None:
    with pytest.raises(Conflict, match=r"uid=USER000001.*entryAlreadyExists \(68\)"):
        corp.create("user", {"uid": "USER000001", "cn": "Dup", "sn": "Dup"})
    with pytest.raises(Rejected, match=r"uid=nosn.*objectClassViolation \(65\)") as info:
        corp.create("user", {"uid": "nosn", "cn": "No Surname"})  # sn is a MUST of person
    assert "sn" in str(info.value)  # the server's own message
    # the connection is fine after refusals: the next add goes through on it
    assert_is_the_server_entry(slapd, corp.create("user", {"uid": "ok", "cn": "O", "sn": "K"}))


@pytest.mark.peers
def test_lean_add_to_a_dead_server_is_unreachable_and_to_a_slow_one_retriable(
    slapd: Slapd,
) -> None:
    slow = make(slapd, timeout=1)
    slow.create("user", {"uid": "early", "cn": "E", "sn": "E"})  # connection and root DSE
    with slapd.paused(), pytest.raises(Retriable, match="create uid=late") as late:
        slow.create("user", {"uid": "late", "cn": "L", "sn": "L"})
    assert not isinstance(late.value, Unreachable)
    corp = make(slapd)
    corp.create("user", {"uid": "first", "cn": "F", "sn": "F"})  # the write connection is open
    slapd.kill()
    with pytest.raises(Unreachable, match="create uid=second"):
        corp.create("user", {"uid": "second", "cn": "S", "sn": "S"})
    slow.close()
    corp.close()


@pytest.mark.peers
@pytest.mark.parametrize("mode", ["ldaps", "start_tls"])
def test_lean_writes_over_tls(small_ldif: Path, mode: str,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The lean add and modify write to ldap3's socket, which is the TLS one here."""
    with Slapd(ldif=small_ldif, tls=True) as server:
        url = server.ldaps_url if mode == "ldaps" else server.url
        conn = make(server, url=url, start_tls=mode == "start_tls", ca_file=server.ca_file)
        no_read_back(monkeypatch, writer(conn))
        created = conn.create("user", dict(NEW))
        assert_is_the_server_entry(server, created)
        conn.update("user", created.external_id, {"title": "Over TLS"})
        assert server_entry(server, created.name)["title"] == ["Over TLS"]
        conn.close()
