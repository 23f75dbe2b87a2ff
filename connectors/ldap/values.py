"""Value handling for the LDAP connector: DN comparison and attribute decoding.

Kept apart from the connector because these are pure functions on hot paths (called per
attribute value and per member DN of 100k-entry reads) and are unit-testable without a server.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence

from ldap3.core.exceptions import LDAPInvalidDnError
from ldap3.utils.dn import parse_dn

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

#: A DN needs real parsing only if it has spaces around separators, escapes or quotes.
_NEEDS_PARSE = re.compile(r'\s[,=+]|[,=+]\s|\\|"|^\s|\s$')
_UNESCAPED_COMMA = re.compile(r"(?<!\\),")


def normalize_dn(dn: str) -> str:
    """Case-insensitive comparison form of a DN (``UID=a, OU=x`` -> ``uid=a,ou=x``).

    The fast path (plain lower-casing) covers what servers return; the parser is only used
    for DNs with spacing or escapes, so 100k member values stay cheap. Attribute types given
    as OIDs (``2.5.4.3=x``) are not mapped to names: servers do not return them that way.
    """
    if " " not in dn and "\\" not in dn and '"' not in dn:
        return dn.lower()  # the fast path: no spacing, escapes or quotes to interpret
    if not _NEEDS_PARSE.search(dn):
        return dn.lower()
    try:
        parts = parse_dn(dn, escape=False, strip=True)
    except LDAPInvalidDnError:
        return dn.strip().lower()
    return "".join(f"{a.strip().lower()}={v.strip().lower()}{sep}" for a, v, sep in parts)


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
