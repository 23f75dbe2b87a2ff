"""BER primitives: the few encodings and decodings the LDAP connector does by hand.

Why by hand: control values (paged results, content sync, DirSync), add and modify requests
and search replies are small, fixed shapes; ldap3's generic ASN.1 machinery is what made
100k-entry reads and initial syncs into a directory slow (see the `wire` package). Search
requests themselves are encoded by ldap3.

Strictness: every length is checked against its container, every tag against what is
expected; anything else raises `Malformed`, never a best guess.
"""

from __future__ import annotations


class Malformed(Exception):
    """The server's reply is not valid BER/LDAP as we understand it: never guess."""


# ---- encoding (control values, the lean add and modify) -------------------------------------


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:  # short form, most elements: no call (the lean add encodes ~30 per entry)
        return bytes((tag, n)) + content
    return bytes((tag,)) + _length(n) + content


def ber_int(value: int, tag: int = 0x02) -> bytes:
    size = max(1, (value.bit_length() + 8) // 8)
    return tlv(tag, value.to_bytes(size, "big", signed=True))


def ber_seq(*parts: bytes) -> bytes:
    return tlv(0x30, b"".join(parts))


# ---- decoding -------------------------------------------------------------------------------


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
        n, pos = long_length(buf, pos, n, end)
    stop = pos + n
    if stop > end:
        raise Malformed(f"element at offset {pos} overruns its container ({stop} > {end})")
    return got, pos, stop


def long_length(buf: bytes, pos: int, first: int, end: int) -> tuple[int, int]:
    """A long-form BER length whose first octet `first` was at ``pos - 1``: ``(length,
    position after it)``. Four length octets at most: no LDAP message is 4 GiB."""
    k = first & 0x7F
    if k == 0 or k > 4 or pos + k > end:
        raise Malformed(f"invalid length encoding at offset {pos - 1}")
    return int.from_bytes(buf[pos : pos + k], "big"), pos + k


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


def text(raw: bytes) -> str:
    """A DN, OID or message: UTF-8 by the RFC, so anything else is malformed."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed("a DN, OID or message is not valid UTF-8") from None
