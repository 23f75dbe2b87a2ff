"""Group member DNs -> user anchors, for full and incremental reads.

Why a map: members are DNs, the engine wants user anchors. The map is filled for free while
users are read. In an incremental read a group often changes alone (its users are not
re-read), so unknown member DNs are resolved in bulk: one search of the users base per chunk
of DNs, filtered on their RDN values (``(|(uid=a)(uid=b)...)``, indexed on any sane server,
unlike entryDN), then matched by full DN. 50k unknown members cost ~100 searches, not 50k.

Once a complete users read has been seen, the map is authoritative: unknown DNs are not users
in scope and are dropped without a lookup. Renames and deletes seen in incremental reads keep
it true (the old DN of a renamed user stops resolving).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from ldap3.core.exceptions import LDAPInvalidDnError
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn

from connectors.ldap.values import normalize_dn, one_level_below

#: DNs per bulk search: keeps filters well under server limits (slapd: 256 kB requests).
CHUNK = 200

#: ``search(filter) -> [(dn, anchor)]`` within the users base, scope and filter.
Searcher = Callable[[str], Iterable[tuple[str, str]]]


def rdn_filter(ndn: str) -> str | None:
    """``(attr=value)`` for the first RDN of a normalised DN, None for multi-valued RDNs."""
    first = ndn.split(",", 1)[0]
    if "\\" not in first and "+" not in first and first.count("=") == 1:
        attr, _, value = first.partition("=")
        return f"({attr}={escape_filter_chars(value)})"
    try:
        parts = parse_dn(ndn, escape=False, strip=True)
    except LDAPInvalidDnError:
        return None
    if not parts or parts[0][2] == "+":
        return None
    attr, value, _sep = parts[0]
    return f"({attr}={escape_filter_chars(value)})"


class DnMap:
    """Normalised DN -> user anchor (None: known not to be a user in scope).

    Shared by the connector's threads (concurrent `find` calls): updates, which touch both
    directions of the map, hold a lock; lookups are single dict reads."""

    def __init__(self, users_base: str, users_scope: str) -> None:
        self._base = normalize_dn(users_base)
        self._scope = users_scope
        self._dn_anchor: dict[str, str | None] = {}
        self._anchor_dn: dict[str, str] = {}
        self._lock = threading.Lock()
        #: True after a complete users read: unknown DNs are then not users in scope.
        self.complete = False

    def clear(self) -> None:
        with self._lock:
            self._dn_anchor.clear()
            self._anchor_dn.clear()
            self.complete = False

    def add(self, ndn: str, anchor: str) -> None:
        self.add_many([(ndn, anchor)])

    def add_many(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Record ``(normalised DN, anchor)`` pairs: a page of users at once."""
        dn_anchor, anchor_dn = self._dn_anchor, self._anchor_dn
        with self._lock:
            for ndn, anchor in pairs:
                old = anchor_dn.get(anchor)
                if old is not None and old != ndn:  # renamed: the old DN names no user now
                    dn_anchor[old] = None
                dn_anchor[ndn] = anchor
                anchor_dn[anchor] = ndn

    def remove(self, anchor: str) -> None:
        with self._lock:
            old = self._anchor_dn.pop(anchor, None)
            if old is not None:
                self._dn_anchor[old] = None

    def in_scope(self, ndn: str) -> bool:
        suffix = "," + self._base
        if not ndn.endswith(suffix):
            return False
        return self._scope == "sub" or one_level_below(ndn, self._base)

    def resolve(self, dns: Iterable[list[str]], search: Searcher) -> list[frozenset[str]]:
        """Anchors for each group's member DN list (`dns` is an iterable of lists)."""
        groups = [[normalize_dn(d) for d in member_dns] for member_dns in dns]
        unknown = {
            ndn
            for ndns in groups
            for ndn in ndns
            if ndn not in self._dn_anchor and not self.complete and self.in_scope(ndn)
        }
        if unknown:
            self._lookup(sorted(unknown), search)
        get = self._dn_anchor.get
        return [frozenset(a for a in (get(n) for n in ndns) if a is not None) for ndns in groups]

    def _lookup(self, ndns: list[str], search: Searcher) -> None:
        for i in range(0, len(ndns), CHUNK):
            chunk = ndns[i : i + CHUNK]
            items = [f for f in (rdn_filter(n) for n in chunk) if f is not None]
            wanted = set(chunk)
            if items:
                for dn, anchor in search("(|" + "".join(sorted(set(items))) + ")"):
                    ndn = normalize_dn(dn)
                    if ndn in wanted:
                        self.add(ndn, anchor)
            with self._lock:
                for ndn in chunk:
                    self._dn_anchor.setdefault(ndn, None)
