"""The lean add: an AddRequest written to ldap3's socket, its AddResponse parsed by hand, and
the created entry taken from a Post-Read control (RFC 4527) when the server offers it.

Why: an initial sync into a directory is one add per entry, and with ldap3 each add cost an
ASN.1 encoding through pyasn1, a generic decoding of the response, then a whole base search
to read the entry back for its anchor (entryUUID), encoded and decoded the same way. Profiled
at 20k users slapd -> slapd, those three were ~2/3 of syncd's CPU. Here the request is a few
byte joins (like `request.ldap_message`), the response is one short message, and a server
that supports the Post-Read control (OpenLDAP: 1.3.6.1.1.13.2 in the root DSE's
``supportedControl``) returns the entry, as it stands after the add, in that same response:
no second round trip. The caller reads the entry back when the control is not offered or the
server sent none (`write.writer`).

The entry in the control is a SearchResultEntry (``PostReadResponseValue``), decoded by the
same `decode.row_from_ber` a read uses, with the strictness of `reply.py`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import ldap3
from ldap3.core.exceptions import LDAPException

from syncd_connectors.ldap.wire.ber import Malformed, header, tlv
from syncd_connectors.ldap.wire.decode import Plan, Row, row_from_ber
from syncd_connectors.ldap.wire.events import Failed, Interrupted, OpDone
from syncd_connectors.ldap.wire.lean import receive_message
from syncd_connectors.ldap.wire.reply import parse_response
from syncd_connectors.ldap.wire.request import RequestControl, ldap_message

#: RFC 4527 Post-Read control: the entry as it is after the update, in the response.
POST_READ = "1.3.6.1.1.13.2"
#: Protocol op tags (RFC 4511): AddRequest ``[APPLICATION 8]``, AddResponse ``[APPLICATION 9]``.
ADD_REQUEST, ADD_RESPONSE = 0x68, 0x69
#: The entry in a Post-Read response: a SearchResultEntry ``[APPLICATION 4]``.
_ENTRY = 0x64


def post_read(attributes: Sequence[str]) -> RequestControl:
    """The Post-Read request control: ``AttributeSelection ::= SEQUENCE OF selector
    LDAPString``. Not critical: a server that cannot honour it still adds the entry (and
    the caller reads it back)."""
    value = tlv(0x30, b"".join(tlv(0x04, a.encode("utf-8")) for a in attributes))
    return (POST_READ, False, value)


def add_request(dn: str, attributes: Mapping[str, Sequence[str | bytes]]) -> bytes:
    """The AddRequest protocolOp, byte for byte as ldap3 encodes it (a test compares them):
    ``[APPLICATION 8] SEQUENCE { entry LDAPDN, attributes SEQUENCE OF SEQUENCE { type,
    vals SET OF value } }``, attributes in the mapping's order, text values in UTF-8."""
    parts = []
    for name, values in attributes.items():
        vals = b"".join(
            tlv(0x04, v if isinstance(v, bytes) else v.encode("utf-8")) for v in values
        )
        parts.append(tlv(0x30, tlv(0x04, name.encode("utf-8")) + tlv(0x31, vals)))
    return tlv(ADD_REQUEST, tlv(0x04, dn.encode("utf-8")) + tlv(0x30, b"".join(parts)))


def lean_add(
    conn: ldap3.Connection,
    dn: str,
    attributes: Mapping[str, Sequence[str | bytes]],
    controls: Sequence[RequestControl] = (),
) -> OpDone:
    """Send one AddRequest on ldap3's bound connection and wait for its AddResponse.

    Network trouble (timeout, reset, closed) raises `Interrupted` and an unparsable answer
    `Malformed`: in both cases whether the entry was added is unknown, and the connection
    must be dropped (a late reply may still arrive on it)."""
    try:
        message_id = conn.server.next_message_id()
    except LDAPException as exc:
        raise Failed(str(exc)) from None
    payload = ldap_message(message_id, add_request(dn, attributes), controls)
    sock = conn.socket
    if sock is None or conn.closed:
        raise Interrupted("the connection is closed")
    try:
        sock.sendall(payload)
    except OSError as exc:
        raise Interrupted(f"connection error: {exc}") from None
    buf, s, e = receive_message(conn)
    return parse_response(buf, s, e, message_id, ADD_RESPONSE)


def post_read_row(done: OpDone, plan: Plan) -> Row | None:
    """The entry of a Post-Read response control, decoded like a search entry; None when
    the server sent no such control (it may ignore a non-critical control)."""
    value = done.controls.get(POST_READ)
    if value is None:
        return None
    _tag, s, e = header(value, 0, len(value), _ENTRY)
    if e != len(value):
        raise Malformed("trailing bytes after the Post-Read entry")
    return row_from_ber(value, s, e, plan)
