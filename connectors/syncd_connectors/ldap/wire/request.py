"""What the lean paths send: search requests, request control values, the message envelope.

Why apart from `reply.py` (which reads replies): the request is encoded once per search by
ldap3 (filter parsing and escaping stay ldap3's) and only its envelope -- message id and
controls, which change every page -- is assembled here by hand, byte for byte as ldap3 would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ldap3
from ldap3.operation.search import search_operation
from ldap3.protocol.rfc4511 import ProtocolOp
from ldap3.utils.asn1 import encode

from syncd_connectors.ldap.wire.ber import ber_int, ber_seq, tlv

#: A control to send: (OID, criticality, BER value or None).
RequestControl = tuple[str, bool, bytes | None]

#: Controls ldap3's stock decoder pre-decodes in replies (`stock.py` re-encodes them).
PAGED_RESULTS = "1.2.840.113556.1.4.319"
DIRSYNC = "1.2.840.113556.1.4.841"


def paged_control(size: int, cookie: bytes | None) -> RequestControl:
    """RFC 2696: SEQUENCE { size INTEGER, cookie OCTET STRING }."""
    return (PAGED_RESULTS, False, ber_seq(ber_int(size), tlv(0x04, cookie or b"")))


def scope_of(scope: str) -> Any:
    return {"base": ldap3.BASE, "one": ldap3.LEVEL, "sub": ldap3.SUBTREE}[scope]


#: Encoded search requests (protocolOp) of recent searches: a paged read sends the same one
#: with a new cookie for every page, and ldap3's ASN.1 encoder costs ~0.6 ms per message.
_REQUESTS: dict[tuple[str, str, str, tuple[str, ...], bool, bool], bytes] = {}


def search_request(
    base: str,
    filter_: str,
    scope: str,
    attributes: tuple[str, ...],
    auto_escape: bool,
    auto_encode: bool,
) -> bytes:
    """The SearchRequest protocolOp (``[APPLICATION 3]``), encoded by ldap3 once per set of
    arguments (filter parsing and escaping stay ldap3's)."""
    key = (base, filter_, scope, attributes, auto_escape, auto_encode)
    op = _REQUESTS.get(key)
    if op is None:
        request = search_operation(
            base, filter_, scope_of(scope), ldap3.DEREF_NEVER, list(attributes) or ["1.1"],
            0, 0, False, auto_escape, auto_encode, None, None, False,
        )  # fmt: skip
        op = encode(ProtocolOp().setComponentByName("searchRequest", request))
        if len(_REQUESTS) >= 256:
            _REQUESTS.clear()
        _REQUESTS[key] = op
    return op


def ldap_message(message_id: int, op: bytes, controls: Sequence[RequestControl]) -> bytes:
    """LDAPMessage ::= SEQUENCE { messageID, protocolOp, controls [0] OPTIONAL }, byte for
    byte as ldap3 encodes it (criticality only when TRUE, as DER wants its default left out;
    a test compares the two). Any encoded protocolOp: a search (`search_request`) or an add
    (`add.add_request`)."""
    parts = []
    for oid, critical, value in controls:
        control = [tlv(0x04, oid.encode("ascii"))]
        if critical:
            control.append(tlv(0x01, b"\xff"))
        if value is not None:
            control.append(tlv(0x04, value))
        parts.append(ber_seq(*control))
    extra = [tlv(0xA0, b"".join(parts))] if parts else []
    return ber_seq(ber_int(message_id), op, *extra)
