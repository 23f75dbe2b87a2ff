"""Cursors of the LDAP connector's incremental reads: ``MECH:FINGERPRINT:PAYLOAD``.

Three mechanisms, chosen by ``incremental`` in the config (``auto`` detects): ``syncrepl``
(RFC 4533 content sync: the payload is the server's cookie), ``dirsync`` (Active Directory's
DirSync cookie) and ``watermark`` (a generalizedTime for ``modifyTimestamp>=T``).

Cursors are opaque to the engine but readable to an admin. The fingerprint hashes what the
cursor's meaning depends on (base, filter, scope, requested attributes, anchor): after a
config change a cookie would silently miss entries that newly match, so a mismatch makes the
connector fall back to a full read instead.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence

MECHANISMS = ("syncrepl", "watermark", "dirsync")


class BadCursor(ValueError):
    """The cursor cannot be used (malformed, other mechanism, other search): read fully."""


def fingerprint(*parts: str | Sequence[str]) -> str:
    h = hashlib.blake2b(digest_size=6)
    for part in parts:
        text = part if isinstance(part, str) else ",".join(sorted(a.lower() for a in part))
        h.update(text.encode() + b"\0")
    return h.hexdigest()


def make_cursor(mechanism: str, fp: str, payload: bytes) -> str:
    text = base64.urlsafe_b64encode(payload).decode("ascii")
    return f"{mechanism}:{fp}:{text}"


def parse_cursor(cursor: str, mechanism: str, fp: str) -> bytes:
    """The payload of `cursor`, or BadCursor saying why it cannot be used."""
    mech, sep, rest = cursor.partition(":")
    if not sep or mech not in MECHANISMS:
        raise BadCursor(f"not a cursor of this connector: {cursor[:40]!r}")
    if mech != mechanism:
        raise BadCursor(f"cursor is for {mech} but this connector now uses {mechanism}")
    got_fp, sep, text = rest.partition(":")
    if not sep:
        raise BadCursor("malformed cursor (no fingerprint)")
    if got_fp != fp:
        raise BadCursor("the search (base, filter, scope, attributes) changed since the cursor")
    try:
        payload = base64.b64decode(text.encode("ascii"), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise BadCursor("malformed cursor payload") from None
    if not payload:
        raise BadCursor("empty cursor payload")
    return payload
