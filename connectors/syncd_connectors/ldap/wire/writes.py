"""The lean writes: an AddRequest or ModifyRequest written to ldap3's socket, its response
parsed by hand, and a created entry taken from a Post-Read control (RFC 4527) when the server
offers it.

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

Modifies go the same way for the same reason: an initial sync sets the members of every
group in one modify of a hundred or more DNs, which ldap3 encoded value by value through
pyasn1 (~4 % of the CPU of a 50k-user initial sync).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import ldap3
from ldap3.core.exceptions import LDAPException

from syncd_connectors.ldap.wire.ber import Malformed, header, tlv
from syncd_connectors.ldap.wire.decode import Plan, Row, row_from_ber
from syncd_connectors.ldap.wire.events import Failed, OpDone
from syncd_connectors.ldap.wire.lean import receive_message, send
from syncd_connectors.ldap.wire.reply import parse_response
from syncd_connectors.ldap.wire.request import RequestControl, ldap_message

#: RFC 4527 Post-Read control: the entry as it is after the update, in the response.
POST_READ = "1.3.6.1.1.13.2"
#: Protocol op tags (RFC 4511): ModifyRequest/Response ``[APPLICATION 6/7]``,
#: AddRequest/Response ``[APPLICATION 8/9]``.
MODIFY_REQUEST, MODIFY_RESPONSE, ADD_REQUEST, ADD_RESPONSE = 0x66, 0x67, 0x68, 0x69
#: ldap3's names of the modify operations -> RFC 4511's ENUMERATED values.
_MODIFY_OPS = {ldap3.MODIFY_ADD: 0, ldap3.MODIFY_DELETE: 1, ldap3.MODIFY_REPLACE: 2}
#: The entry in a Post-Read response: a SearchResultEntry ``[APPLICATION 4]``.
_ENTRY = 0x64


def post_read(attributes: Sequence[str]) -> RequestControl:
    """The Post-Read request control: ``AttributeSelection ::= SEQUENCE OF selector
    LDAPString``. Not critical: a server that cannot honour it still adds the entry (and
    the caller reads it back)."""
    value = tlv(0x30, b"".join(tlv(0x04, a.encode("utf-8")) for a in attributes))
    return (POST_READ, False, value)


#: Encoded attribute names (a sync writes the same few names over and over).
_NAMES: dict[str, bytes] = {}


def _attribute(name: str, values: Sequence[str | bytes]) -> bytes:
    """``SEQUENCE { type, vals SET OF value }``, text values in UTF-8."""
    head = _NAMES.get(name)
    if head is None:
        head = tlv(0x04, name.encode("utf-8"))
        if len(_NAMES) < 4096:
            _NAMES[name] = head
    vals = b"".join([tlv(0x04, v if isinstance(v, bytes) else v.encode("utf-8"))
                     for v in values])
    return tlv(0x30, head + tlv(0x31, vals))


def add_request(dn: str, attributes: Mapping[str, Sequence[str | bytes]]) -> bytes:
    """The AddRequest protocolOp, byte for byte as ldap3 encodes it (a test compares them):
    ``[APPLICATION 8] SEQUENCE { entry LDAPDN, attributes SEQUENCE OF SEQUENCE { type,
    vals SET OF value } }``, attributes in the mapping's order."""
    parts = b"".join([_attribute(name, values) for name, values in attributes.items()])
    return tlv(ADD_REQUEST, tlv(0x04, dn.encode("utf-8")) + tlv(0x30, parts))


def modify_request(
    dn: str, changes: Mapping[str, Sequence[tuple[str, Sequence[str | bytes]]]]
) -> bytes:
    """The ModifyRequest protocolOp, byte for byte as ldap3 encodes it from the same
    ``{attribute: [(ldap3.MODIFY_ADD | MODIFY_DELETE | MODIFY_REPLACE, values), ...]}``:
    ``[APPLICATION 6] SEQUENCE { object LDAPDN, changes SEQUENCE OF SEQUENCE { operation
    ENUMERATED, modification PartialAttribute } }``. A REPLACE without values clears."""
    parts = b"".join(
        tlv(0x30, tlv(0x0A, bytes([_MODIFY_OPS[op]])) + _attribute(name, values))
        for name, ops in changes.items()
        for op, values in ops
    )
    return tlv(MODIFY_REQUEST, tlv(0x04, dn.encode("utf-8")) + tlv(0x30, parts))


def lean_request(
    conn: ldap3.Connection, op: bytes, response: int, controls: Sequence[RequestControl] = ()
) -> OpDone:
    """Send one encoded request (`add_request`, `modify_request`) on ldap3's bound
    connection and wait for its response (protocolOp tag `response`).

    Network trouble (timeout, reset, closed) raises `Interrupted` and an unparsable answer
    `Malformed`: in both cases whether the write happened is unknown, and the connection
    must be dropped (a late reply may still arrive on it)."""
    try:
        message_id = conn.server.next_message_id()
    except LDAPException as exc:
        raise Failed(str(exc)) from None
    send(conn, ldap_message(message_id, op, controls))
    buf, s, e = receive_message(conn)
    return parse_response(buf, s, e, message_id, response)


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
