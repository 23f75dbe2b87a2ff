"""The BER of the change feeds' controls: RFC 4533 content sync and AD's DirSync.

- ``syncrepl``: RFC 4533 content synchronisation, refreshOnly (OpenLDAP syncprov, 389-ds).
  ldap3 has no support, so the controls are encoded/decoded here by hand.
- ``dirsync``: Active Directory's DirSync control (MS-ADTS 3.1.1.3.4.1.3).

Values come and go as raw BER (`wire.events.Controls`); anything unexpected is `Malformed`.
The cursors that carry the cookies are `cursor.py`'s.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from syncd_connectors.ldap.wire.ber import (
    Malformed,
    ber_int,
    ber_seq,
    children,
    decode_int,
    sequence,
    tlv,
)
from syncd_connectors.ldap.wire.request import DIRSYNC, RequestControl

SYNC_REQUEST = "1.3.6.1.4.1.4203.1.9.1.1"
SYNC_STATE = "1.3.6.1.4.1.4203.1.9.1.2"
SYNC_DONE = "1.3.6.1.4.1.4203.1.9.1.3"
SYNC_INFO = "1.3.6.1.4.1.4203.1.9.1.4"
#: RFC 4533 e-syncRefreshRequired: the cookie is too old or unknown, start over.
SYNC_REFRESH_REQUIRED = 4096
AD_CAPABILITY = "1.2.840.113556.1.4.800"
SHOW_DELETED = "1.2.840.113556.1.4.417"

STATE_PRESENT, STATE_ADD, STATE_MODIFY, STATE_DELETE = 0, 1, 2, 3

# DirSync flags: object security (no replication right needed), ancestors first.
DIRSYNC_OBJECT_SECURITY = 0x1
DIRSYNC_ANCESTORS_FIRST = 0x800


# ---- RFC 4533 ------------------------------------------------------------------------------


def sync_request(cookie: bytes | None) -> RequestControl:
    """Sync Request Control, refreshOnly (mode 1), critical: a server without syncprov must
    refuse rather than silently return a plain search."""
    parts = [ber_int(1, tag=0x0A)]
    if cookie:
        parts.append(tlv(0x04, cookie))
    return (SYNC_REQUEST, True, ber_seq(*parts))


def entry_uuid(raw: bytes) -> str:
    if len(raw) != 16:
        raise Malformed(f"syncUUID of {len(raw)} bytes (expected 16)")
    return str(uuid.UUID(bytes=raw))


def sync_state(value: bytes | None) -> tuple[int, str]:
    """Sync State Control: SEQUENCE { state ENUMERATED, entryUUID, cookie OPTIONAL }."""
    parts = sequence(value)
    if len(parts) < 2 or parts[0][0] != 0x0A or parts[1][0] != 0x04:
        raise Malformed("invalid Sync State control")
    return decode_int(parts[0][1]), entry_uuid(parts[1][1])


def ds389_change_number(cookie: bytes) -> int | None:
    """The retro changelog number a 389-ds cookie stands for (``server#client#N``), None
    for any other cookie (OpenLDAP's ``rid=...,csn=...``, or a 389-ds one in OpenLDAP mode)."""
    if cookie.startswith(b"rid="):  # OpenLDAP's form: its CSN has '#'s too
        return None
    head, sep, tail = cookie.rpartition(b"#")
    if not sep or b"#" not in head or not tail.isdigit():
        return None
    return int(tail)


def nsuniqueid(sync_uuid: str) -> str:
    """389-ds's nsUniqueId (``xxxxxxxx-xxxxxxxx-xxxxxxxx-xxxxxxxx``) of a syncUUID it sent:
    the server's syncUUID is the nsUniqueId's 16 bytes, which `entry_uuid` renders 8-4-4-4-12."""
    h = sync_uuid.replace("-", "").lower()
    if len(h) != 32:
        raise Malformed(f"syncUUID {sync_uuid!r} is not 16 bytes")
    return "-".join(h[i : i + 8] for i in range(0, 32, 8))


@dataclass
class SyncDone:
    cookie: bytes | None
    refresh_deletes: bool


def sync_done(value: bytes | None) -> SyncDone:
    """Sync Done Control: SEQUENCE { cookie OPTIONAL, refreshDeletes BOOLEAN DEFAULT FALSE }."""
    cookie, deletes = None, False
    for tag, content in sequence(value):
        if tag == 0x04:
            cookie = content
        elif tag == 0x01:
            deletes = content != b"\x00"
        else:
            raise Malformed(f"unexpected tag 0x{tag:02x} in Sync Done control")
    return SyncDone(cookie, deletes)


@dataclass
class SyncInfo:
    """A Sync Info Message, flattened: which choice, its cookie, flags and UUIDs."""

    kind: str  # newcookie | refreshDelete | refreshPresent | syncIdSet
    cookie: bytes | None = None
    refresh_deletes: bool = False
    uuids: list[str] = field(default_factory=list)


def sync_info(value: bytes | None) -> SyncInfo:
    if not value:
        raise Malformed("empty Sync Info message")
    parts = children(value)
    if len(parts) != 1:
        raise Malformed("Sync Info message must be exactly one element")
    tag, content = parts[0]
    if tag == 0x80:
        return SyncInfo("newcookie", cookie=content)
    kinds = {0xA1: "refreshDelete", 0xA2: "refreshPresent", 0xA3: "syncIdSet"}
    if tag not in kinds:
        raise Malformed(f"unknown Sync Info choice 0x{tag:02x}")
    info = SyncInfo(kinds[tag], refresh_deletes=tag == 0xA1)
    for ctag, c in children(content):
        if ctag == 0x04:
            info.cookie = c
        elif ctag == 0x01 and tag == 0xA3:
            info.refresh_deletes = c != b"\x00"
        elif ctag == 0x31 and tag == 0xA3:
            info.uuids = [entry_uuid(u) for t, u in children(c) if t == 0x04]
        elif ctag != 0x01:
            raise Malformed(f"unexpected tag 0x{ctag:02x} in Sync Info message")
    return info


# ---- DirSync (Active Directory) ------------------------------------------------------------


def dirsync_request(cookie: bytes | None, max_bytes: int = 1 << 20) -> RequestControl:
    """DirSync request: SEQUENCE { flags, maxBytes, cookie }. Critical, as AD requires."""
    flags = DIRSYNC_OBJECT_SECURITY | DIRSYNC_ANCESTORS_FIRST
    value = ber_seq(ber_int(flags), ber_int(max_bytes), tlv(0x04, cookie or b""))
    return (DIRSYNC, True, value)


def dirsync_response(value: bytes | None) -> tuple[bool, bytes]:
    """DirSync response: SEQUENCE { moreResults, unused, cookie } -> (more, cookie)."""
    parts = sequence(value)
    if len(parts) != 3 or parts[0][0] != 0x02 or parts[2][0] != 0x04:
        raise Malformed("invalid DirSync response control")
    return decode_int(parts[0][1]) != 0, parts[2][1]
