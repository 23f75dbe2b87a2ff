"""The lean decoder: the LDAP messages of a search reply, as events or straight as rows.

Why by hand: see the package docstring (`wire/`): ldap3's generic ASN.1 decoding was most of
a 100k-entry read. This decoder only knows the handful of messages a search can produce and
yields the events of `events.py`, as ldap3's path does (`stock.py`), so the connector has one
code path and tests can compare the two. Given a `decode.Plan`, plain entries (no controls)
are decoded straight into `decode.Row` tuples instead (`decode.row_from_ber`): the hot path
of a full read, one pass per entry.

BER primitives live in `ber.py`, request encoding in `request.py`; this module reads replies.

Strictness: every length is checked against its enclosing element, every tag against what
RFC 4511 allows; anything else raises `Malformed`, never a best guess, because silently wrong
data in a sync source means wrong deprovisioning. Network trouble raises `Interrupted`.
"""

from __future__ import annotations

from collections.abc import Iterator

from syncd_connectors.ldap.wire.ber import (
    Malformed,
    children,
    decode_int,
    header,
    long_length,
    text,
)
from syncd_connectors.ldap.wire.decode import Plan, Row, row_from_ber
from syncd_connectors.ldap.wire.events import (
    Controls,
    Event,
    Interrupted,
    OpDone,
    SearchDone,
    SearchEntry,
    SearchIntermediate,
    SearchRef,
)

NOTICE_OF_DISCONNECTION = "1.3.6.1.4.1.1466.20036"

# ---- message decoding ----------------------------------------------------------------------

#: Attribute names seen so far (raw bytes -> lower-cased str): a 100k read decodes the same
#: few names over and over.
_NAMES: dict[bytes, str] = {}


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
            n, pos = long_length(buf, pos, n, end)
        stop = pos + n
        if stop > end:
            raise Malformed("the entry's DN overruns the entry")
        dn = text(buf[pos:stop])
        pos = stop
        if buf[pos] != 0x30:
            raise Malformed(f"expected the attribute list of {dn}")
        n = buf[pos + 1]
        pos += 2
        if n & 0x80:
            n, pos = long_length(buf, pos, n, end)
        if pos + n != end:
            raise Malformed(f"the attribute list of {dn} does not end with the entry")
        attrs: dict[str, list[bytes]] = {}
        while pos < end:
            if buf[pos] != 0x30:
                raise Malformed(f"expected an attribute in {dn}")
            n = buf[pos + 1]
            pos += 2
            if n & 0x80:
                n, pos = long_length(buf, pos, n, end)
            attr_end = pos + n
            if attr_end > end or buf[pos] != 0x04:
                raise Malformed(f"invalid attribute in {dn}")
            n = buf[pos + 1]
            pos += 2
            if n & 0x80:
                n, pos = long_length(buf, pos, n, attr_end)
            stop = pos + n
            if stop > attr_end:
                raise Malformed(f"an attribute name overruns its attribute in {dn}")
            raw_name = buf[pos:stop]
            name = names.get(raw_name)
            if name is None:
                name = text(raw_name).lower()
                if len(names) < 4096:
                    names[raw_name] = name
            pos = stop
            if buf[pos] != 0x31:
                raise Malformed(f"expected the values of {name!r} in {dn}")
            n = buf[pos + 1]
            pos += 2
            if n & 0x80:
                n, pos = long_length(buf, pos, n, attr_end)
            if pos + n != attr_end:
                raise Malformed(f"the values of {name!r} do not end with the attribute in {dn}")
            values = []
            while pos < attr_end:
                if buf[pos] != 0x04:
                    raise Malformed(f"a value of {name!r} in {dn} is not an OCTET STRING")
                n = buf[pos + 1]
                pos += 2
                if n & 0x80:
                    n, pos = long_length(buf, pos, n, attr_end)
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
        out[text(parts[0][1])] = value
        pos = e
    return out


def _message_controls(buf: bytes, op_end: int, end: int) -> Controls:
    """The controls after a message's protocolOp (``[0] Controls``), if any."""
    if op_end >= end:
        return {}
    _t, cs, ce = header(buf, op_end, end, 0xA0)
    if ce != end:
        raise Malformed("trailing bytes after the controls of a message")
    return _controls(buf, cs, ce)


def _result(parts: list[tuple[int, bytes]]) -> tuple[int, str, str]:
    if len(parts) < 3 or parts[0][0] != 0x0A or parts[1][0] != 0x04 or parts[2][0] != 0x04:
        raise Malformed("invalid LDAPResult")
    return decode_int(parts[0][1]), text(parts[1][1]), text(parts[2][1])


def parse_message(
    buf: bytes, start: int, end: int, message_id: int, plan: Plan | None = None
) -> Event | Row:
    """One complete LDAPMessage occupying ``buf[start:end]`` (the outer SEQUENCE's content).

    With a `plan`, a search entry without controls comes back as a `decode.Row`."""
    if start + 3 <= end and buf[start] == 0x02 and 0 < buf[start + 1] <= 4:  # the usual id
        e = start + 2 + buf[start + 1]
        if e > end:
            raise Malformed("a message id overruns its message")
        got_id = int.from_bytes(buf[start + 2 : e], "big", signed=True)
    else:
        _t, s, e = header(buf, start, end, 0x02)
        got_id = decode_int(buf[s:e])
    if e >= end:
        raise Malformed("a message without protocolOp")
    op = buf[e]
    if op == 0x64 and got_id == message_id and e + 2 <= end:  # the common case, fast
        n = buf[e + 1]
        s = e + 2
        if n == 0x82 and s + 2 <= end:  # the usual length of an entry: inlined
            n = buf[s] << 8 | buf[s + 1]
            s += 2
        elif n & 0x80:
            n, s = long_length(buf, s, n, end)
        op_end = s + n
        if op_end == end:
            if plan is not None:
                return row_from_ber(buf, s, op_end, plan)
            dn, attrs = _entry(buf, s, op_end)
            return SearchEntry(dn, attrs, None)
    op, s, op_end = header(buf, e, end)
    controls = _message_controls(buf, op_end, end)
    if got_id == 0 and op == 0x78:
        parts = children(buf, s, op_end)
        names = [text(c) for tag, c in parts if tag == 0x8A]
        code, _m, message = _result(parts)
        if NOTICE_OF_DISCONNECTION in names:
            raise Interrupted(f"the server closed the session (code {code}: {message})")
        raise Malformed(f"unexpected unsolicited notification {names}")
    if got_id != message_id:
        raise Malformed(f"reply to message {got_id} while waiting for {message_id}")
    if op == 0x64:
        dn, attrs = _entry(buf, s, op_end)
        return SearchEntry(dn, attrs, controls or None)
    if op == 0x65:
        code, matched, message = _result(children(buf, s, op_end))
        return SearchDone(code, matched, message, controls)
    if op == 0x73:
        return SearchRef([text(c) for tag, c in children(buf, s, op_end) if tag == 0x04])
    if op == 0x79:
        name = value = None
        for tag, content in children(buf, s, op_end):
            if tag == 0x80:
                name = text(content)
            elif tag == 0x81:
                value = content
        return SearchIntermediate(name, value)
    raise Malformed(f"unexpected protocolOp 0x{op:02x} in a search reply")


def parse_response(buf: bytes, start: int, end: int, message_id: int, op_tag: int) -> OpDone:
    """The one LDAPMessage answering a non-search operation (``buf[start:end]``, the outer
    SEQUENCE's content): an LDAPResult under `op_tag` (e.g. AddResponse), with its
    controls. A notice of disconnection raises `Interrupted`; anything else `Malformed`."""
    _t, s, e = header(buf, start, end, 0x02)
    got_id = decode_int(buf[s:e])
    if e >= end:
        raise Malformed("a message without protocolOp")
    op, s, op_end = header(buf, e, end)
    controls = _message_controls(buf, op_end, end)
    if got_id == 0 and op == 0x78:
        parts = children(buf, s, op_end)
        code, _m, message = _result(parts)
        if NOTICE_OF_DISCONNECTION in [text(c) for tag, c in parts if tag == 0x8A]:
            raise Interrupted(f"the server closed the session (code {code}: {message})")
        raise Malformed("unexpected unsolicited notification")
    if got_id != message_id:
        raise Malformed(f"reply to message {got_id} while waiting for {message_id}")
    if op != op_tag:
        raise Malformed(f"unexpected protocolOp 0x{op:02x} (expected 0x{op_tag:02x})")
    code, matched, message = _result(children(buf, s, op_end))
    return OpDone(code, matched, message, controls)


def scan_rows(buf: bytes, pos: int, message_id: int, plan: Plan, out: list[Row]) -> int:
    """Append the rows of the consecutive complete SearchResultEntry messages (for
    `message_id`, without controls) from `pos` to `out`; return where they stop: at the end
    of `buf`, an incomplete message or any other message, which the caller then takes
    through `split_messages` and `parse_message` (that also raise for anything malformed).

    Why: this is `parse_message`'s fast path without a generator step and a call per entry,
    ~10% of a 100k read. Checks here only decide "plain entry or not"; the entry itself
    is checked by `decode.row_from_ber`."""
    size = len(buf)
    append = out.append
    try:
        while pos + 2 <= size and buf[pos] == 0x30:
            n = buf[pos + 1]
            s = pos + 2
            if n == 0x81:
                n = buf[s]
                s += 1
            elif n == 0x82:
                n = buf[s] << 8 | buf[s + 1]
                s += 2
            elif n & 0x80:
                break
            e = s + n
            if e > size or buf[s] != 0x02 or not 0 < buf[s + 1] <= 4:
                break
            t = s + 2 + buf[s + 1]  # after the message id
            if t + 2 > e or int.from_bytes(buf[s + 2 : t], "big", signed=True) != message_id:
                break
            if buf[t] != 0x64:
                break
            n = buf[t + 1]
            c = t + 2
            if n == 0x81:
                n = buf[c]
                c += 1
            elif n == 0x82:
                n = buf[c] << 8 | buf[c + 1]
                c += 2
            elif n & 0x80:
                break
            if c + n != e:  # controls follow (or worse): the general path
                break
            append(row_from_ber(buf, c, e, plan))
            pos = e
    except IndexError:
        pass  # a header cut by the end of buf: the general path waits for the rest
    return pos


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
