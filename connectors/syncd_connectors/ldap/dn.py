"""Distinguished names (RFC 4514) as comparison keys: one function for every DN comparison.

Why: group members are DNs, the engine wants user anchors, so a member value is matched to a
user's DN. Servers and admins spell the same DN in many ways: ``cn=J\\c3\\b6rg`` and
``cn=Jörg``, ``\\,`` and ``\\2C``, ``CN = Smith`` and ``cn=smith``, ``cn=a+uid=b`` and
``uid=b+cn=a``, and 389-ds adds an optional UID to ``uniqueMember`` (``dn#'0101'B``). A
member that does not match its user is silently dropped from the group downstream, so
every place that compares DNs (member resolution, bases, write-back) uses `dn_key`.

The key: attribute types lower-cased (well-known OIDs mapped to their names), values
unescaped, then compared as the naming attributes' equality rules do (caseIgnoreMatch with
RFC 4518's insignificant-space handling: NFKC, case-folded, inner runs of spaces as one,
no leading or trailing space), the AVAs of a multi-valued RDN sorted, and every special
character re-escaped as ``\\xx`` -- so in a key an unescaped ``,`` always separates RDNs
and ``+`` always separates AVAs, and keys can be compared and suffix-matched as strings.
"""

from __future__ import annotations

import functools
import re
import unicodedata

#: Well-known attribute type OIDs -> the names servers return.
_OID_NAMES = {
    "2.5.4.3": "cn", "2.5.4.4": "sn", "2.5.4.6": "c", "2.5.4.7": "l", "2.5.4.8": "st",
    "2.5.4.9": "street", "2.5.4.10": "o", "2.5.4.11": "ou", "2.5.4.42": "givenname",
    "0.9.2342.19200300.100.1.1": "uid", "0.9.2342.19200300.100.1.25": "dc",
}  # fmt: skip
#: Characters escaped (as ``\\xx``) in a key's values.
_MUST_ESCAPE = re.compile(r'[,+"\\<>;=#\x00-\x1f\x7f]')
_VALUE = r"[^\x00-\x20,+\"\\<>;=#\x7f]+(?: [^\x00-\x20,+\"\\<>;=#\x7f]+)*"
#: An ASCII DN whose key is its lower-cased self: what servers return, on the hot path.
_PLAIN = re.compile(rf"[A-Za-z][A-Za-z0-9-]*={_VALUE}(?:,[A-Za-z][A-Za-z0-9-]*={_VALUE})*\Z")
#: Any DN without escapes, quotes, ``+``, ``#`` or spaces around attribute types: split on
#: ``,`` and ``=`` as is (a value may hold any other character, spaces included).
_SIMPLE = re.compile(
    r"[A-Za-z][A-Za-z0-9-]*=[^\\\"+,;<>=#]*(?:,[A-Za-z][A-Za-z0-9-]*=[^\\\"+,;<>=#]*)*\Z"
)
#: NameAndOptionalUID (RFC 4517, ``uniqueMember``): ``<dn>#'0101'B``.
_UID_SUFFIX = re.compile(r"#'[01]*'B\Z")
_HEXPAIR = re.compile(r"[0-9a-fA-F]{2}")

#: One attribute value assertion: (lower-cased type, value, value is ``#hex``). A value
#: given as ``#hex`` (BER) stays that text, lower-cased.
Ava = tuple[str, str, bool]


def parse_dn(dn: str) -> list[list[Ava]]:
    """The RDNs of `dn` (first = leftmost), each a list of AVAs with values unescaped.

    Lenient where RFC 4514's predecessors were (spaces around separators, ``;`` between
    RDNs, quoted values); raises ValueError for anything that is not a DN."""
    rdns: list[list[Ava]] = []
    avas: list[Ava] = []
    pos, end = 0, len(dn)
    if not dn.strip():
        return []
    while True:
        eq = dn.find("=", pos)
        if eq < 0:
            raise ValueError(f"no '=' in {dn[pos:]!r}")
        kind = dn[pos:eq].strip().lower()
        if kind.startswith("oid."):
            kind = kind[4:]
        if not kind or not re.fullmatch(r"[a-z][a-z0-9-]*|[0-9]+(?:\.[0-9]+)*", kind):
            raise ValueError(f"invalid attribute type {dn[pos:eq]!r}")
        kind = _OID_NAMES.get(kind, kind)
        value, is_hex, pos = _value(dn, eq + 1)
        avas.append((kind, value, is_hex))
        if pos >= end:
            rdns.append(avas)
            return rdns
        sep = dn[pos]
        pos += 1
        if sep in ",;":
            rdns.append(avas)
            avas = []
        elif sep != "+":
            raise ValueError(f"unexpected {sep!r} in {dn!r}")


def _value(dn: str, pos: int) -> tuple[str, bool, int]:
    """The value starting at `pos` (unescaped), whether it is ``#hex``, and the position
    of its separator."""
    end = len(dn)
    while pos < end and dn[pos] == " ":
        pos += 1
    if pos < end and dn[pos] == "#":  # BER as hex: kept as its text
        stop = pos + 1
        while stop < end and dn[stop] not in ",;+ ":
            stop += 1
        text = dn[pos:stop].lower()
        if len(text) < 3 or len(text) % 2 == 0 or not _HEXPAIR.fullmatch(text[1:3]):
            raise ValueError(f"invalid hex value {text!r}")
        return text, True, _skip_spaces(dn, stop)
    out = bytearray()
    if pos < end and dn[pos] == '"':  # RFC 2253 quoted value
        stop = dn.find('"', pos + 1)
        while stop > 0 and dn[stop - 1] == "\\":
            stop = dn.find('"', stop + 1)
        if stop < 0:
            raise ValueError(f"unterminated quote in {dn!r}")
        return _unescape(dn[pos + 1 : stop]), False, _skip_spaces(dn, stop + 1)
    while pos < end:
        c = dn[pos]
        if c in ",;+":
            break
        if c == "\\":
            pair = dn[pos + 1 : pos + 3]
            if _HEXPAIR.fullmatch(pair):
                out.append(int(pair, 16))
                pos += 3
                continue
            if pos + 1 >= end:
                raise ValueError(f"dangling escape at the end of {dn!r}")
            out += dn[pos + 1].encode()
            pos += 2
            continue
        out += c.encode()
        pos += 1
    try:
        return out.decode("utf-8"), False, pos
    except UnicodeDecodeError:
        raise ValueError(f"escapes in {dn!r} are not UTF-8") from None


def _unescape(text: str) -> str:
    out = bytearray()
    i = 0
    while i < len(text):
        if text[i] == "\\" and _HEXPAIR.fullmatch(text[i + 1 : i + 3]):
            out.append(int(text[i + 1 : i + 3], 16))
            i += 3
        elif text[i] == "\\" and i + 1 < len(text):
            out += text[i + 1].encode()
            i += 2
        else:
            out += text[i].encode()
            i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("escapes in a quoted value are not UTF-8") from None


def _skip_spaces(dn: str, pos: int) -> int:
    while pos < len(dn) and dn[pos] == " ":
        pos += 1
    if pos < len(dn) and dn[pos] not in ",;+":
        raise ValueError(f"unexpected text after a value in {dn!r}")
    return pos


def fold(value: str) -> str:
    """A value as caseIgnoreMatch compares it (RFC 4518): NFKC, case-folded, spaces
    insignificant at the ends and collapsed inside."""
    if value.isascii():
        text = value.lower()  # what NFKC and case folding make of ASCII
    else:
        text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value).casefold())
    return " ".join(text.split())


def _escape(value: str) -> str:
    """Every special character of a value as ``\\xx`` (its UTF-8 bytes)."""
    if not _MUST_ESCAPE.search(value):
        return value
    return _MUST_ESCAPE.sub(lambda m: "".join(f"\\{b:02x}" for b in m.group().encode()), value)


def dn_key(dn: str) -> str:
    """The comparison key of `dn` (see the module docstring). A DN that does not parse is
    its own stripped, lower-cased text: it matches nothing but itself."""
    if dn.isascii() and _PLAIN.match(dn):
        return dn.lower()  # the same as `parsed_key` (a property test holds them equal)
    if _SIMPLE.match(dn):  # no escapes, quotes or multi-valued RDNs: non-ASCII names
        return ",".join(
            f"{kind.lower()}={_escape(fold(value))}"
            for kind, _eq, value in (rdn.partition("=") for rdn in dn.split(","))
        )
    return parsed_key(dn)


@functools.lru_cache(maxsize=16384)  # escaped member values repeat across groups
def parsed_key(dn: str) -> str:
    """`dn_key` the long way, through the parser (used for anything not plain ASCII)."""
    try:
        rdns = parse_dn(dn)
    except ValueError:
        return dn.strip().lower()
    return ",".join(
        "+".join(
            sorted(f"{kind}={value if hexed else _escape(fold(value))}"
                   for kind, value, hexed in avas)
        )
        for avas in rdns
    )


def is_dn(value: str) -> bool:
    """Does `value` parse as a DN (a uniqueMember's ``#'...'B`` UID allowed)?"""
    try:
        return bool(parse_dn(_UID_SUFFIX.sub("", value)))
    except ValueError:
        return False


def without_uid(value: str) -> str:
    """A ``uniqueMember`` value (RFC 4517 NameAndOptionalUID) without its ``#'0101'B`` UID."""
    return _UID_SUFFIX.sub("", value)


def member_key(value: str, unique: bool) -> str:
    """The key of a group member value; with `unique` (``uniqueMember``, RFC 4517
    NameAndOptionalUID) without its optional ``#'0101'B`` UID."""
    if unique:
        value = _UID_SUFFIX.sub("", value)
    return dn_key(value)


def rdn_filter(dn: str) -> str | None:
    """``(attr=value)`` (``(&(a=x)(b=y))`` for a multi-valued RDN) matching the first RDN
    of `dn` as written, for bulk lookups of member DNs; None when it cannot be built."""
    from ldap3.utils.conv import escape_filter_chars

    try:
        rdns = parse_dn(dn)
    except ValueError:
        return None
    if not rdns:
        return None
    items = []
    for kind, value, hexed in rdns[0]:
        if hexed or not re.fullmatch(r"[a-z][a-z0-9-]*", kind):
            return None
        items.append(f"({kind}={escape_filter_chars(value.strip())})")
    return items[0] if len(items) == 1 else "(&" + "".join(items) + ")"
