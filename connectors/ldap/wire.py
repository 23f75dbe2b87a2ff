"""Search results off the wire: a lean BER decoder, and the stock ldap3 path behind one API.

Why: ldap3 decodes every response through generic ASN.1 machinery and looks up its config
~86 times per entry; a 100k-user read spends most of its time there (PEERS.md: ldap3 ~5k
entries/s vs ldapsearch ~48k/s). ldap3 stays in charge of the connection (connect, StartTLS,
bind, timeouts); for a search, `lean_search` encodes the request with ldap3's own encoder,
writes it to ldap3's socket (plain or TLS) and parses the replies itself with a hand-written
decoder that only knows the handful of messages a search can produce.

Both paths yield the same events (`SearchEntry`, `SearchRef`, `SearchIntermediate`, and a
final `SearchDone`), so the connector has one code path and tests can compare the two.
Control values are always raw BER bytes (`controls`: OID -> value or None).

Strictness: every length is checked against its enclosing element, every tag against what
RFC 4511 allows; anything else raises `Malformed`, never a best guess, because silently wrong
data in a sync source means wrong deprovisioning. Network trouble raises `Interrupted`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import ldap3
from ldap3.core.exceptions import LDAPCommunicationError, LDAPException, LDAPResponseTimeoutError
from ldap3.operation.search import search_operation
from ldap3.protocol.convert import build_controls_list
from ldap3.protocol.rfc4511 import LDAPMessage, MessageID, ProtocolOp
from ldap3.utils.asn1 import encode

Controls = dict[str, bytes | None]
#: A control to send: (OID, criticality, BER value or None).
RequestControl = tuple[str, bool, bytes | None]

NOTICE_OF_DISCONNECTION = "1.3.6.1.4.1.1466.20036"
PAGED_RESULTS = "1.2.840.113556.1.4.319"
DIRSYNC = "1.2.840.113556.1.4.841"
_RECV = 1 << 18


class Malformed(Exception):
    """The server's reply is not valid BER/LDAP as we understand it: never guess."""


class Interrupted(Exception):
    """The connection timed out, was reset or closed by the server mid-search."""


class Failed(Exception):
    """The library refused the operation (e.g. an invalid filter): not transient."""


@dataclass(slots=True)
class SearchEntry:
    dn: str
    #: Lower-cased attribute names -> raw values.
    attrs: dict[str, list[bytes]]
    controls: Controls | None = None


@dataclass(slots=True)
class SearchRef:
    uris: list[str]


@dataclass(slots=True)
class SearchIntermediate:
    name: str | None
    value: bytes | None


@dataclass(slots=True)
class SearchDone:
    code: int
    matched: str
    message: str
    controls: Controls


Event = SearchEntry | SearchRef | SearchIntermediate | SearchDone

# ---- BER encoding (control values only; requests are encoded by ldap3) ----------------------


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _length(len(content)) + content


def ber_int(value: int, tag: int = 0x02) -> bytes:
    size = max(1, (value.bit_length() + 8) // 8)
    return tlv(tag, value.to_bytes(size, "big", signed=True))


def ber_seq(*parts: bytes) -> bytes:
    return tlv(0x30, b"".join(parts))


def paged_control(size: int, cookie: bytes | None) -> RequestControl:
    """RFC 2696: SEQUENCE { size INTEGER, cookie OCTET STRING }."""
    return (PAGED_RESULTS, False, ber_seq(ber_int(size), tlv(0x04, cookie or b"")))


# ---- BER decoding ---------------------------------------------------------------------------


def header(buf: bytes, pos: int, end: int, tag: int | None = None) -> tuple[int, int, int]:
    """Parse a tag and length at `pos`; return ``(tag, content_start, content_end)``.

    The content must lie within `end`; `tag`, when given, must match."""
    if pos + 2 > end:
        raise Malformed(f"truncated element at offset {pos}")
    got = buf[pos]
    if tag is not None and got != tag:
        raise Malformed(f"expected tag 0x{tag:02x} at offset {pos}, found 0x{got:02x}")
    n = buf[pos + 1]
    pos += 2
    if n >= 0x80:
        k = n & 0x7F
        if k == 0 or k > 4 or pos + k > end:
            raise Malformed(f"invalid length encoding at offset {pos - 1}")
        n = int.from_bytes(buf[pos : pos + k], "big")
        pos += k
    stop = pos + n
    if stop > end:
        raise Malformed(f"element at offset {pos} overruns its container ({stop} > {end})")
    return got, pos, stop


def children(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[int, bytes]]:
    """The ``(tag, content)`` elements between `start` and `end` (default: all of `data`)."""
    end = len(data) if end is None else end
    out = []
    pos = start
    while pos < end:
        tag, s, e = header(data, pos, end)
        out.append((tag, data[s:e]))
        pos = e
    return out


def sequence(data: bytes | None) -> list[tuple[int, bytes]]:
    """The children of a control value that must be one SEQUENCE and nothing else."""
    if not data:
        raise Malformed("empty control value where a SEQUENCE was expected")
    _tag, s, e = header(data, 0, len(data), 0x30)
    if e != len(data):
        raise Malformed("trailing bytes after a control value")
    return children(data, s, e)


def decode_int(content: bytes) -> int:
    if not content or len(content) > 8:
        raise Malformed("invalid INTEGER")
    return int.from_bytes(content, "big", signed=True)


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed("a DN, OID or message is not valid UTF-8") from None


#: Attribute names seen so far (raw bytes -> lower-cased str): a 100k read decodes the same
#: few names over and over.
_NAMES: dict[bytes, str] = {}


def _long(buf: bytes, pos: int, first: int, end: int) -> tuple[int, int]:
    """A long-form BER length whose first octet `first` was at ``pos - 1``."""
    k = first & 0x7F
    if k == 0 or k > 4 or pos + k > end:
        raise Malformed(f"invalid length encoding at offset {pos - 1}")
    return int.from_bytes(buf[pos : pos + k], "big"), pos + k


def _entry(buf: bytes, pos: int, end: int) -> tuple[str, dict[str, list[bytes]]]:
    """SearchResultEntry content: objectName, then SEQUENCE OF (type, SET OF value).

    The hot loop of a 100k read, hence inlined: every element is a tag byte, a short-form
    length (long form via `_long`) and an end offset checked against its container's end
    before anything is sliced, so a bad length can never make us read a neighbour's bytes."""
    names = _NAMES
    try:
        if buf[pos] != 0x04:
            raise Malformed(f"expected the entry's DN at offset {pos}")
        n = buf[pos + 1]
        pos += 2
        if n & 0x80:
            n, pos = _long(buf, pos, n, end)
        stop = pos + n
        if stop > end:
            raise Malformed("the entry's DN overruns the entry")
        dn = _text(buf[pos:stop])
        pos = stop
        if buf[pos] != 0x30:
            raise Malformed(f"expected the attribute list of {dn}")
        n = buf[pos + 1]
        pos += 2
        if n & 0x80:
            n, pos = _long(buf, pos, n, end)
        if pos + n != end:
            raise Malformed(f"the attribute list of {dn} does not end with the entry")
        attrs: dict[str, list[bytes]] = {}
        while pos < end:
            if buf[pos] != 0x30:
                raise Malformed(f"expected an attribute in {dn}")
            n = buf[pos + 1]
            pos += 2
            if n & 0x80:
                n, pos = _long(buf, pos, n, end)
            attr_end = pos + n
            if attr_end > end or buf[pos] != 0x04:
                raise Malformed(f"invalid attribute in {dn}")
            n = buf[pos + 1]
            pos += 2
            if n & 0x80:
                n, pos = _long(buf, pos, n, attr_end)
            stop = pos + n
            if stop > attr_end:
                raise Malformed(f"an attribute name overruns its attribute in {dn}")
            raw_name = buf[pos:stop]
            name = names.get(raw_name)
            if name is None:
                name = _text(raw_name).lower()
                if len(names) < 4096:
                    names[raw_name] = name
            pos = stop
            if buf[pos] != 0x31:
                raise Malformed(f"expected the values of {name!r} in {dn}")
            n = buf[pos + 1]
            pos += 2
            if n & 0x80:
                n, pos = _long(buf, pos, n, attr_end)
            if pos + n != attr_end:
                raise Malformed(f"the values of {name!r} do not end with the attribute in {dn}")
            values = []
            while pos < attr_end:
                if buf[pos] != 0x04:
                    raise Malformed(f"a value of {name!r} in {dn} is not an OCTET STRING")
                n = buf[pos + 1]
                pos += 2
                if n & 0x80:
                    n, pos = _long(buf, pos, n, attr_end)
                stop = pos + n
                if stop > attr_end:
                    raise Malformed(f"a value of {name!r} overruns its set in {dn}")
                values.append(buf[pos:stop])
                pos = stop
            if name in attrs:
                raise Malformed(f"attribute {name!r} appears twice in {dn}")
            attrs[name] = values
    except IndexError:
        raise Malformed("truncated search result entry") from None
    return dn, attrs


def _controls(buf: bytes, pos: int, end: int) -> Controls:
    out: Controls = {}
    while pos < end:
        _t, s, e = header(buf, pos, end, 0x30)
        parts = children(buf, s, e)
        if not parts or parts[0][0] != 0x04:
            raise Malformed("a control without controlType")
        value = None
        for tag, content in parts[1:]:
            if tag == 0x04:
                value = content
            elif tag != 0x01:
                raise Malformed(f"unexpected tag 0x{tag:02x} in a control")
        out[_text(parts[0][1])] = value
        pos = e
    return out


def _result(parts: list[tuple[int, bytes]]) -> tuple[int, str, str]:
    if len(parts) < 3 or parts[0][0] != 0x0A or parts[1][0] != 0x04 or parts[2][0] != 0x04:
        raise Malformed("invalid LDAPResult")
    return decode_int(parts[0][1]), _text(parts[1][1]), _text(parts[2][1])


def parse_message(buf: bytes, start: int, end: int, message_id: int) -> Event:
    """One complete LDAPMessage occupying ``buf[start:end]`` (the outer SEQUENCE's content)."""
    _t, s, e = header(buf, start, end, 0x02)
    got_id = decode_int(buf[s:e])
    if e >= end:
        raise Malformed("a message without protocolOp")
    op = buf[e]
    if op == 0x64 and got_id == message_id and e + 2 <= end:  # the common case, fast
        n = buf[e + 1]
        s = e + 2
        if n & 0x80:
            n, s = _long(buf, s, n, end)
        op_end = s + n
        if op_end == end:
            dn, attrs = _entry(buf, s, op_end)
            return SearchEntry(dn, attrs, None)
    op, s, op_end = header(buf, e, end)
    controls: Controls = {}
    if op_end < end:
        _t, cs, ce = header(buf, op_end, end, 0xA0)
        if ce != end:
            raise Malformed("trailing bytes after the controls of a message")
        controls = _controls(buf, cs, ce)
    if got_id == 0 and op == 0x78:
        parts = children(buf, s, op_end)
        names = [_text(c) for tag, c in parts if tag == 0x8A]
        code, _m, text = _result(parts)
        if NOTICE_OF_DISCONNECTION in names:
            raise Interrupted(f"the server closed the session (code {code}: {text})")
        raise Malformed(f"unexpected unsolicited notification {names}")
    if got_id != message_id:
        raise Malformed(f"reply to message {got_id} while waiting for {message_id}")
    if op == 0x64:
        dn, attrs = _entry(buf, s, op_end)
        return SearchEntry(dn, attrs, controls or None)
    if op == 0x65:
        code, matched, text = _result(children(buf, s, op_end))
        return SearchDone(code, matched, text, controls)
    if op == 0x73:
        return SearchRef([_text(c) for tag, c in children(buf, s, op_end) if tag == 0x04])
    if op == 0x79:
        name = value = None
        for tag, content in children(buf, s, op_end):
            if tag == 0x80:
                name = _text(content)
            elif tag == 0x81:
                value = content
        return SearchIntermediate(name, value)
    raise Malformed(f"unexpected protocolOp 0x{op:02x} in a search reply")


def split_messages(buf: bytes, pos: int) -> Iterator[tuple[int, int, int]]:
    """Yield ``(content_start, content_end, next_pos)`` of each complete message in `buf`
    from `pos`; stops (without error) at an incomplete one."""
    size = len(buf)
    while pos + 2 <= size:
        if buf[pos] != 0x30:
            raise Malformed(f"expected an LDAPMessage SEQUENCE, found 0x{buf[pos]:02x}")
        n = buf[pos + 1]
        s = pos + 2
        if n >= 0x80:
            k = n & 0x7F
            if k == 0 or k > 4:
                raise Malformed("invalid LDAPMessage length")
            if s + k > size:
                return
            n = int.from_bytes(buf[s : s + k], "big")
            s += k
        if s + n > size:
            return
        yield s, s + n, s + n
        pos = s + n


# ---- the two search paths ------------------------------------------------------------------


def _scope(scope: str) -> Any:
    return {"base": ldap3.BASE, "one": ldap3.LEVEL, "sub": ldap3.SUBTREE}[scope]


def lean_search(
    conn: ldap3.Connection,
    base: str,
    filter_: str,
    scope: str,
    attributes: Sequence[str],
    controls: Sequence[RequestControl] = (),
) -> Iterator[Event]:
    """Send a search on ldap3's socket and parse the replies ourselves (see module doc).

    The caller must read to the `SearchDone`; abandoning the iterator midway leaves replies
    on the socket, so the caller must then drop the connection."""
    try:
        request = search_operation(
            base, filter_, _scope(scope), ldap3.DEREF_NEVER, list(attributes) or ["1.1"],
            0, 0, False, conn.auto_escape, conn.auto_encode, None, None, False,
        )  # fmt: skip
        message_id = conn.server.next_message_id()
        message = LDAPMessage()
        message["messageID"] = MessageID(message_id)
        message["protocolOp"] = ProtocolOp().setComponentByName("searchRequest", request)
        built = build_controls_list(list(controls))
        if built is not None:
            message["controls"] = built
        payload = encode(message)
    except LDAPException as exc:
        raise Failed(str(exc)) from None
    sock = conn.socket
    if sock is None or conn.closed:
        raise Interrupted("the connection is closed")
    try:
        sock.sendall(payload)
        buf = b""
        while True:
            chunk = sock.recv(_RECV)
            if not chunk:
                raise Interrupted("the server closed the connection")
            buf = buf + chunk if buf else chunk
            pos = 0
            for s, e, pos in split_messages(buf, 0):
                event = parse_message(buf, s, e, message_id)
                yield event
                if isinstance(event, SearchDone):
                    if pos != len(buf):
                        raise Malformed("unexpected data after the end of the search")
                    return
            buf = buf[pos:]
    except TimeoutError as exc:
        raise Interrupted(f"timed out waiting for the server: {exc}") from None
    except OSError as exc:
        raise Interrupted(f"connection error: {exc}") from None


def _stock_controls(raw: dict[str, Any] | None) -> Controls:
    """ldap3 pre-decodes a few controls; re-encode them so callers see raw BER only."""
    out: Controls = {}
    for oid, info in (raw or {}).items():
        value = info.get("value")
        if isinstance(value, dict) and oid == PAGED_RESULTS:
            value = ber_seq(ber_int(value["size"]), tlv(0x04, value["cookie"]))
        elif isinstance(value, dict) and oid == DIRSYNC:
            more = 1 if value["more_results"] else 0
            value = ber_seq(ber_int(more), ber_int(0), tlv(0x04, value["cookie"]))
        out[oid] = value
    return out


def stock_search(
    conn: ldap3.Connection,
    base: str,
    filter_: str,
    scope: str,
    attributes: Sequence[str],
    controls: Sequence[RequestControl] = (),
) -> Iterator[Event]:
    """The same search through ldap3's own decoder (the reference and the fallback)."""
    try:
        conn.search(
            base,
            filter_,
            search_scope=_scope(scope),
            dereference_aliases=ldap3.DEREF_NEVER,
            attributes=list(attributes) or ["1.1"],
            controls=list(controls) or None,
        )
    except (LDAPCommunicationError, LDAPResponseTimeoutError) as exc:
        raise Interrupted(str(exc)) from None
    except LDAPException as exc:
        raise Failed(str(exc)) from None
    for item in conn.response or []:
        kind = item.get("type")
        if kind == "searchResEntry":
            yield SearchEntry(
                item["dn"],
                {k.lower(): list(v) for k, v in item["raw_attributes"].items()},
                _stock_controls(item.get("controls")) or None,
            )
        elif kind == "searchResRef":
            yield SearchRef(list(item.get("uri") or []))
        elif kind == "intermediateResponse":
            yield SearchIntermediate(item.get("responseName"), item.get("responseValue"))
    result = conn.result or {}
    if result.get("type") != "searchResDone":
        raise Interrupted(f"search ended without a result: {result.get('description')}")
    yield SearchDone(
        int(result.get("result", -1)),
        result.get("dn") or "",
        result.get("message") or "",
        _stock_controls(result.get("controls")),
    )
