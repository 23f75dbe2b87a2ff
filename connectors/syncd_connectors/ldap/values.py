"""Value handling for the LDAP connector: DN comparison and attribute decoding.

Kept apart from the connector because these are pure functions on hot paths (called per
attribute value and per member DN of 100k-entry reads) and are unit-testable without a server.
"""

from __future__ import annotations

import base64
import functools
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta

from ldap3.core.exceptions import LDAPInvalidDnError
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn

from syncd.errors import Rejected
from syncd_connectors.ldap.dn import dn_key

#: Attributes whose values are octets, not UTF-8 text: returned base64-encoded.
BINARY_ATTRIBUTES = frozenset(
    [
        "jpegphoto",
        "photo",
        "audio",
        "thumbnailphoto",
        "thumbnaillogo",
        "objectguid",
        "objectsid",
        "sidhistory",
        "tokengroups",
        "ms-ds-consistencyguid",
        "msexchmailboxguid",
        "msds-generationid",
        "logonhours",
        "usercertificate",
        "cacertificate",
        "certificaterevocationlist",
        "authorityrevocationlist",
        "crosscertificatepair",
        "userpkcs12",
        "usersmimecertificate",
        "msexchblockedsenderhash",
    ]
)

#: Password and password-hash attributes (lower-case): never requested, kept, shown or
#: searched by, whatever the bind account may read (OpenLDAP, AD, Samba schema, 389-ds).
PASSWORD_ATTRIBUTES = frozenset(
    [
        "userpassword",
        "unicodepwd",
        "dbcspwd",
        "ntpwdhistory",
        "lmpwdhistory",
        "supplementalcredentials",
        "sambantpassword",
        "sambalmpassword",
        "userpkcs12",
        "msds-managedpassword",
        "cleartextpassword",
        "authpassword",
    ]
)
_UNESCAPED_COMMA = re.compile(r"(?<!\\),")
_HEX = re.compile(r"\\([0-9a-fA-F]{2})|\\(.)", re.S)
_GENERALIZED = re.compile(r"^(\d{14})(?:[.,](\d+))?(Z|[+-]\d{4})$")


def normalize_dn(dn: str) -> str:
    """The comparison key of a DN: `dn.dn_key` (RFC 4514 parsed, see there), the one
    function every DN comparison of the connector goes through."""
    return dn_key(dn)


def is_password_attribute(name: str) -> bool:
    """Is `name` (any case, options such as ``;binary`` ignored) a password or password
    hash attribute, which the connector never requests, keeps or searches by?"""
    return name.split(";", 1)[0].lower() in PASSWORD_ATTRIBUTES


def anchor_filter(anchor: str, value: str) -> str | None:
    """``(anchor=value)`` for one anchor value, escaped: AD's objectGUID is matched on its
    16 little-endian bytes, each escaped; None for a value that cannot be an objectGUID."""
    if anchor.lower() == "objectguid":
        try:
            raw = uuid.UUID(value).bytes_le
        except ValueError:
            return None
        return "(objectGUID=" + "".join(f"\\{b:02x}" for b in raw) + ")"
    return f"({anchor}={escape_filter_chars(value)})"


def unescape_rdn(value: str) -> str:
    """An RDN value as text: RFC 4514 escapes (``\\,`` and ``\\2C``) resolved."""
    out = bytearray()
    pos = 0
    for m in _HEX.finditer(value):
        out += value[pos : m.start()].encode()
        out += bytes([int(m.group(1), 16)]) if m.group(1) else m.group(2).encode()
        pos = m.end()
    out += value[pos:].encode()
    return out.decode("utf-8", "replace")


def split_dn(dn: str) -> tuple[str, str, str, bool]:
    """(first RDN attribute, its unescaped value, parent DN, RDN is multi-valued)."""
    try:
        parts = parse_dn(dn)
    except LDAPInvalidDnError:
        raise Rejected(f"cannot parse DN {dn!r}") from None
    attr, value, sep = parts[0]
    parent = "".join(f"{a}={v}{s}" for a, v, s in parts[1:])
    return attr, unescape_rdn(value), parent, sep == "+"


def one_level_below(ndn: str, nbase: str) -> bool:
    """True when normalised `ndn` is an immediate child of normalised `nbase`."""
    suffix = "," + nbase
    return ndn.endswith(suffix) and not _UNESCAPED_COMMA.search(ndn[: -len(suffix)])


def anchor_string(anchor: str, value: bytes) -> str:
    """The anchor as a string: AD's objectGUID is 16 little-endian bytes -> canonical UUID;
    text anchors (entryUUID, nsUniqueId) as they are."""
    if anchor.lower() == "objectguid":
        return str(uuid.UUID(bytes_le=bytes(value)))
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(value).decode("ascii")


def decode_values(values: Sequence[bytes], *, binary: bool) -> tuple[str, ...]:
    """UTF-8 text as str; binary attributes, and anything that is not valid UTF-8, as
    base64, so raw values are always JSON-safe strings."""
    if not binary:
        try:
            return tuple(bytes(v).decode("utf-8") for v in values)
        except UnicodeDecodeError:
            pass
    return tuple(base64.b64encode(v).decode("ascii") for v in values)


def texts(values: Iterable[bytes]) -> Iterator[str]:
    """UTF-8 strings of `values`, skipping any that are not valid UTF-8 (not DNs)."""
    for v in values:
        try:
            yield bytes(v).decode("utf-8")
        except UnicodeDecodeError:
            continue


@functools.lru_cache(maxsize=4096)  # bulk loads and busy seconds repeat a stamp
def iso_timestamp(text: str) -> str | None:
    """GeneralizedTime (``20261127093000Z``, AD's ``...00.0Z``, ``...+0100``) as ISO-8601
    UTC in the format the SCIM connector uses, so the two-way ``newest`` rule compares like
    with like. None when the value is not a timestamp. On every entry of every read: the
    usual UTC form is sliced, not parsed (strptime costs ~40 us, 2 s per 50k entries)."""
    m = _GENERALIZED.match(text)
    if m is None:
        return None
    t, frac, zone = m.group(1), (m.group(2) or "")[:6].ljust(6, "0"), m.group(3)
    if zone == "Z" and "01" <= t[4:6] <= "12" and "01" <= t[6:8] <= "31" and t[8:] < "246060":
        return f"{t[0:4]}-{t[4:6]}-{t[6:8]}T{t[8:10]}:{t[10:12]}:{t[12:14]}.{frac}Z"
    try:
        dt = datetime.strptime(t, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        dt -= sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5]))
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + frac + "Z"
