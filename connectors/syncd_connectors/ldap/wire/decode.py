"""Search entries -> rows -> `Entry` values: the hot path of every LDAP read.

Why a module of its own: a 100k-user read spends nearly all its Python time here. One pass
over each entry's attributes does everything: name lookup, UTF-8 (or base64) decoding, `raw`
(tuples, for mapping sources) *and* `attrs` (one value -> str, several -> tuple, for the
engine's target side), the anchor, the member DNs and modifyTimestamp -> `Entry.modified`
(two-way ``newest`` rule). Nothing is built twice and no intermediate list of values exists
for the common single-valued attribute.

Two decoders produce the same `Row`:

- `row_from_ber` reads a SearchResultEntry straight from the reply buffer (the lean decoder's
  path, called by `reply.parse_message`), with the strictness of `reply.py`: every length is
  checked against its container before anything is sliced.
- `row_from_event` reads an already decoded `SearchEntry` (ldap3's stock decoder, and lean
  entries that carry controls, i.e. syncrepl). It is the reference: the lean-vs-stock
  equality tests compare the two paths end to end.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from syncd.model import Entry, Kind, Value
from syncd_connectors.ldap.values import anchor_string, is_password_attribute, iso_timestamp
from syncd_connectors.ldap.wire.ber import Malformed, long_length, text
from syncd_connectors.ldap.wire.events import SearchEntry

#: What a read does with an attribute (bit flags; exactly KEPT = plain text, kept).
KEPT, BINARY, ANCHOR, MEMBER, STAMP = 1, 2, 4, 8, 16
STAMP_NAME = "modifytimestamp"
#: Bound of `Plan.headers` (names x value lengths): a hostile server cannot grow it further.
_MAX_HEADERS = 8192

#: ``(dn, anchor or None, raw, attrs, member DNs or None, modified)`` of one entry.
Row = tuple[str, str | None, dict[str, tuple[str, ...]], dict[str, Value], list[bytes] | None,
            str | None]  # fmt: skip


class Plan:
    """What one read does with each attribute name, decided once per name and read.

    `keep` None keeps every attribute (``*``); the anchor, the member attribute (groups)
    and modifyTimestamp are taken whether kept or not. Password attributes are never kept
    or taken: a server that sends them anyway (``*``, a careless ACL) has them dropped here,
    the one place both decoders decide what an entry carries."""

    __slots__ = (
        "_by_name", "_by_raw", "anchor", "binary", "guid", "headers", "keep", "kind", "member",
    )  # fmt: skip

    def __init__(
        self, kind: Kind, keep: set[str] | None, binary: frozenset[str], anchor: str, member: str
    ) -> None:
        self.kind = kind
        self.keep = keep
        self.binary = binary
        self.anchor = anchor
        self.guid = anchor == "objectguid"
        self.member = member if kind == "group" else None
        self._by_name: dict[str, int] = {}
        #: Raw attribute name as sent -> (lower-cased name, action).
        self._by_raw: dict[bytes, tuple[str, int]] = {}
        #: Header bytes of a short single-valued attribute (see `_attribute`) -> (lower-cased
        #: name, action, offset of the value, size of the attribute).
        self.headers: dict[bytes, tuple[str, int, int, int]] = {}

    def action(self, lname: str) -> int:
        act = self._by_name.get(lname)
        if act is None:
            act = 0
            if is_password_attribute(lname):
                pass  # never used, whatever was asked for or sent (values.PASSWORD_ATTRIBUTES)
            else:
                if self.keep is None or lname in self.keep:
                    act |= KEPT
                    if lname in self.binary or lname.endswith(";binary"):
                        act |= BINARY
                if lname == self.anchor:
                    act |= ANCHOR
                if lname == self.member:
                    act |= MEMBER
                if lname == STAMP_NAME:
                    act |= STAMP
            if len(self._by_name) < 4096:  # a hostile server cannot grow it without bound
                self._by_name[lname] = act
        return act

    def raw_name(self, raw: bytes) -> tuple[str, int]:
        got = self._by_raw.get(raw)
        if got is None:
            lname = text(raw).lower()
            got = (lname, self.action(lname))
            if len(self._by_raw) < 4096:
                self._by_raw[raw] = got
        return got

    def anchor_text(self, value: bytes) -> str:
        """The anchor as a string; the common text case (entryUUID) without a call."""
        if self.guid:
            return anchor_string(self.anchor, value)
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return anchor_string(self.anchor, value)


def _b64(values: Sequence[bytes]) -> tuple[str, ...]:
    return tuple([base64.b64encode(v).decode("ascii") for v in values])


def _modified(stamp: bytes | None) -> str | None:
    return None if stamp is None else iso_timestamp(stamp.decode("ascii", "replace"))


def row_from_event(item: SearchEntry, plan: Plan) -> Row:
    """The row of an entry decoded by ldap3 (or by `reply` when it carried controls)."""
    raw: dict[str, tuple[str, ...]] = {}
    attrs: dict[str, Value] = {}
    anchor: str | None = None
    members: list[bytes] | None = None
    stamp: bytes | None = None
    action = plan.action
    for name, values in item.attrs.items():
        lname = name.lower()
        act = action(lname)
        if not values or not act:
            continue
        if act & ANCHOR:
            anchor = plan.anchor_text(values[0])
        if act & MEMBER:
            members = list(values)
        if act & STAMP:
            stamp = values[0]
        if act & KEPT:
            decoded: tuple[str, ...] | None = None
            if not act & BINARY:
                try:
                    decoded = tuple([bytes(v).decode("utf-8") for v in values])
                except UnicodeDecodeError:
                    decoded = None  # not text after all: base64, like binary values
            if decoded is None:
                decoded = _b64(values)
            raw[lname] = decoded
            attrs[lname] = decoded[0] if len(decoded) == 1 else decoded
    return item.dn, anchor, raw, attrs, members, _modified(stamp)


def row_from_ber(buf: bytes, pos: int, end: int, plan: Plan) -> Row:
    """SearchResultEntry content ``buf[pos:end]``: objectName, then SEQUENCE OF (type,
    SET OF value), decoded straight into a row (see the module docstring).

    Inlined on purpose (~10 µs per entry is the whole budget): every element is a tag byte,
    a length and an end offset checked against its container's end before anything is
    sliced, so a bad length can never make us read a neighbour's bytes. Duplicate attributes
    are an error when they would be used (kept, the anchor, the members, the timestamp);
    others are not looked at."""
    raw: dict[str, tuple[str, ...]] = {}
    attrs: dict[str, Value] = {}
    anchor: bytes | None = None
    members: list[bytes] | None = None
    stamp: bytes | None = None
    headers = plan.headers
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
        if n == 0x81:  # the usual lengths of an entry's attribute list, inlined
            n = buf[pos]
            pos += 1
        elif n == 0x82:
            n = buf[pos] << 8 | buf[pos + 1]
            pos += 2
        elif n & 0x80:
            n, pos = long_length(buf, pos, n, end)
        if pos + n != end:
            raise Malformed(f"the attribute list of {dn} does not end with the entry")
        while pos < end:
            # PartialAttribute ::= SEQUENCE { type OCTET STRING, vals SET OF OCTET STRING }.
            # Fastest path: a header (everything before the value, see `Plan.headers`) seen
            # before; its bytes prove the structure, only the end must fit the entry.
            header = buf[pos : pos + 8 + buf[pos + 3]]
            known = headers.get(header)
            if known is not None:
                lname, act, value_at, size = known
                attr_end = pos + size
                if attr_end > end:
                    raise Malformed(f"attribute {lname!r} overruns the entry {dn}")
                if act == 1:  # KEPT, plain text: by far the most common attribute
                    if lname in raw:
                        raise Malformed(f"attribute {lname!r} appears twice in {dn}")
                    try:
                        decoded = buf[pos + value_at : attr_end].decode()
                    except UnicodeDecodeError:
                        decoded = base64.b64encode(buf[pos + value_at : attr_end]).decode("ascii")
                    raw[lname] = (decoded,)
                    attrs[lname] = decoded
                    pos = attr_end
                    continue
                values = [buf[pos + value_at : attr_end]]
                pos = attr_end
            else:
                lname, act, values, pos = _attribute(buf, pos, end, plan, dn)
            if not act or not values:
                continue
            if act & ANCHOR:
                if anchor is not None:
                    raise Malformed(f"attribute {lname!r} appears twice in {dn}")
                anchor = values[0]
            if act & MEMBER:
                if members is not None:
                    raise Malformed(f"attribute {lname!r} appears twice in {dn}")
                members = values
            if act & STAMP:
                if stamp is not None:
                    raise Malformed(f"attribute {lname!r} appears twice in {dn}")
                stamp = values[0]
            if act & KEPT:
                if lname in raw:
                    raise Malformed(f"attribute {lname!r} appears twice in {dn}")
                multi: tuple[str, ...] | None = None
                if not act & BINARY:
                    try:
                        multi = tuple([v.decode() for v in values])
                    except UnicodeDecodeError:
                        multi = None  # not text after all: base64, like binary values
                if multi is None:
                    multi = _b64(values)
                raw[lname] = multi
                attrs[lname] = multi[0] if len(multi) == 1 else multi
    except IndexError:
        raise Malformed("truncated search result entry") from None
    return (
        dn,
        None if anchor is None else plan.anchor_text(anchor),
        raw,
        attrs,
        members,
        None if stamp is None else iso_timestamp(stamp.decode("ascii", "replace")),
    )


def _attribute(
    buf: bytes, pos: int, end: int, plan: Plan, dn: str
) -> tuple[str, int, list[bytes], int]:
    """The general path of `row_from_ber`: one PartialAttribute at `pos` in any valid
    encoding (long-form lengths, several or no values): ``(name, action, values, end)``.

    A short attribute with one value, ``30 a 04 n <name> 31 s 04 v <value>`` (short-form
    lengths, s = v + 2, a = n + s + 4; as a < 0x80, so are n, s and v), has its header (all
    before the value) remembered in `Plan.headers`: the same bytes again prove the same
    structure, so `row_from_ber` then needs a dict lookup instead of eight checks."""
    a = buf[pos + 1]
    attr_end = pos + 2 + a
    q = pos + 4 + buf[pos + 3]  # the SET's tag
    if (
        a < 0x80
        and buf[pos] == 0x30
        and buf[pos + 2] == 0x04
        and q + 4 <= attr_end <= end
        and buf[q] == 0x31
        and buf[q + 1] == attr_end - q - 2
        and buf[q + 2] == 0x04
        and buf[q + 3] == attr_end - q - 4
    ):
        lname, act = plan.raw_name(buf[pos + 4 : q])
        if len(plan.headers) < _MAX_HEADERS:
            plan.headers[buf[pos : q + 4]] = (lname, act, q + 4 - pos, 2 + a)
        return lname, act, [buf[q + 4 : attr_end]], attr_end
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
    lname, act = plan.raw_name(buf[pos:stop])
    pos = stop
    if buf[pos] != 0x31:
        raise Malformed(f"expected the values of {lname!r} in {dn}")
    n = buf[pos + 1]
    pos += 2
    if n & 0x80:
        n, pos = long_length(buf, pos, n, attr_end)
    if pos + n != attr_end:
        raise Malformed(f"the values of {lname!r} do not end with the attribute in {dn}")
    values = []
    while pos < attr_end:
        if buf[pos] != 0x04:
            raise Malformed(f"a value of {lname!r} in {dn} is not an OCTET STRING")
        n = buf[pos + 1]
        pos += 2
        if n & 0x80:
            n, pos = long_length(buf, pos, n, attr_end)
        stop = pos + n
        if stop > attr_end:
            raise Malformed(f"a value of {lname!r} overruns its set in {dn}")
        values.append(buf[pos:stop])
        pos = stop
    return lname, act, values, pos


# ---- Entry values ---------------------------------------------------------------------------

_new = object.__new__
#: Every field of a fresh user Entry with its default (fields added to the model later
#: included): what `make_entry` (and `ldap.base`'s inlined copy of it) starts from.
ENTRY_DEFAULTS = dict(Entry("user", "").__dict__)


def make_entry(
    kind: Kind,
    external_id: str,
    raw: dict[str, tuple[str, ...]],
    attrs: dict[str, Value],
    name: str,
    modified: str | None,
    members: frozenset[str] | None = None,
) -> Entry:
    """``Entry(kind, external_id, raw=raw, attrs=attrs, name=name, modified=modified,
    members=members)``, built without the frozen dataclass's ``__init__``.

    Why: that ``__init__`` sets each of the nine fields through ``object.__setattr__``
    (the price of ``frozen=True``): ~3 µs per entry, a fifth of a lean 100k read. The
    result is the same object (equal, same repr, same fields: `ENTRY_DEFAULTS` comes from a real
    Entry, and a test compares the two constructions)."""
    e: Entry = _new(Entry)
    d = e.__dict__
    d.update(ENTRY_DEFAULTS)
    d["kind"] = kind
    d["external_id"] = external_id
    d["raw"] = raw
    d["attrs"] = attrs
    d["name"] = name
    d["modified"] = modified
    d["members"] = members
    return e
