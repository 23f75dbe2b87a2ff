"""Group member DNs -> user anchors, for full and incremental reads.

Why a map: members are DNs, the engine wants user anchors. The map is filled for free while
users are read. In an incremental read a group often changes alone (its users are not
re-read), so unknown member DNs are resolved in bulk: one search of the users base per chunk
of DNs, filtered on their first RDN as written (``(|(uid=a)(uid=b)...)``, indexed on any
sane server, unlike entryDN), then matched by DN key. 50k unknown members cost ~100
searches, not 50k.

Every DN -- a user's, a member value -- is compared by its key (`dn.dn_key`: RFC 4514
parsed, unescaped, case-folded, multi-valued RDNs sorted), so ``cn=J\\c3\\b6rg`` finds
``cn=Jörg``; ``uniqueMember`` values lose their optional ``#'0101'B`` UID first. Values
inside the users' base and scope that name no user are reported per group (`Resolved`).

Once a complete users read has been seen, the map is authoritative: unknown DNs are not users
in scope and are dropped without a lookup. Renames and deletes seen in incremental reads keep
it true (the old DN of a renamed user stops resolving).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from syncd.spill import SpillMap
from syncd_connectors.ldap.dn import is_dn, member_key, rdn_filter, without_uid
from syncd_connectors.ldap.values import normalize_dn, one_level_below

#: DNs per bulk search: keeps filters well under server limits (slapd: 256 kB requests).
CHUNK = 200

#: ``search(filter) -> [(dn, anchor)]`` within the users base, scope and filter.
Searcher = Callable[[str], Iterable[tuple[str, str]]]


@dataclass(frozen=True)
class Resolved:
    """One group's members: the user anchors, and the member values (as the server sent
    them) that name no user although they lie within the users base and scope, or that
    are no DN at all."""

    anchors: frozenset[str]
    unresolved: tuple[str, ...]


class DnMap:
    """DN key (`dn.dn_key`) -> user anchor (None: known not to be a user in scope).

    Shared by the connector's threads (concurrent `find` calls): updates, which touch both
    directions of the map, hold a lock; lookups are single dict reads."""

    def __init__(self, users_base: str, users_scope: str, unique: bool = False) -> None:
        self._base = normalize_dn(users_base)
        self._scope = users_scope
        #: Member values are NameAndOptionalUID (``uniqueMember``): ``dn#'0101'B``.
        self._unique = unique
        # past 100k users on disk (`syncd.spill`): a million DN keys with both directions
        # of the map were ~180 MB
        self._dn_anchor = SpillMap[str]()
        self._anchor_dn = SpillMap[str]()
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
        """Record ``(DN key, anchor)`` pairs: a page of users at once."""
        dn_anchor, anchor_dn = self._dn_anchor, self._anchor_dn
        pairs = list(pairs)
        with self._lock:
            olds = anchor_dn.get_many(anchor for _ndn, anchor in pairs)
            for ndn, anchor in pairs:
                old = olds.get(anchor)
                if old is not None and old != ndn:  # renamed: the old DN names no user now
                    dn_anchor[old] = None
                olds[anchor] = ndn
            dn_anchor.update(pairs)
            anchor_dn.update((anchor, ndn) for ndn, anchor in pairs)

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

    def resolve(self, dns: Iterable[list[str]], search: Searcher) -> list[Resolved]:
        """Anchors for each group's member values (`dns` is an iterable of lists), and the
        values within the users' scope that name no user (see `Resolved`)."""
        unique = self._unique
        groups = [[(member_key(d, unique), d) for d in values] for values in dns]
        known = self._dn_anchor.get_many(ndn for keyed in groups for ndn, _v in keyed)
        unknown: dict[str, str] = {}
        if not self.complete:
            for keyed in groups:
                for ndn, value in keyed:
                    if ndn not in known and ndn not in unknown and self.in_scope(ndn):
                        unknown[ndn] = value
        if unknown:
            self._lookup(sorted(unknown.items()), search)
            known.update(self._dn_anchor.get_many(unknown))
        get = known.get
        out = []
        for keyed in groups:
            anchors = [get(ndn) for ndn, _v in keyed]
            missing = tuple(
                v for (ndn, v), a in zip(keyed, anchors, strict=True)
                if a is None and (self.in_scope(ndn) or not is_dn(v))
            )  # fmt: skip
            out.append(Resolved(frozenset(a for a in anchors if a is not None), missing))
        return out

    def anchors(self, values: Iterable[str], search: Searcher, members: bool = False
                ) -> dict[str, str | None]:
        """Each DN-valued reference (a ``manager``) -> the anchor of the entry it names, or
        None when it names no entry in scope (or is no DN). The same map and bulk lookups
        as members: the DNs read in this session answer, the rest cost one search per
        `CHUNK`. `members`: the values are group member values (a ``uniqueMember``'s
        optional ``#'0101'B`` UID is not part of the name; a reference keeps it as is)."""
        unique = self._unique and members
        keyed = [(member_key(v, unique), v) for v in dict.fromkeys(values)]
        known = self._dn_anchor.get_many(k for k, _v in keyed)
        if not self.complete:
            unknown = {k: without_uid(v) if unique else v for k, v in keyed
                       if k not in known and self.in_scope(k) and is_dn(v)}
            if unknown:
                self._lookup(sorted(unknown.items()), search)
                known.update(self._dn_anchor.get_many(unknown))
        get = known.get
        return {v: get(k) for k, v in keyed}

    def _lookup(self, unknown: list[tuple[str, str]], search: Searcher) -> None:
        """Look up `(key, value as written)` pairs: by the first RDN as written (a value
        folded for comparison might not match on the server), then matched by key."""
        for i in range(0, len(unknown), CHUNK):
            chunk = unknown[i : i + CHUNK]
            items = [f for f in (rdn_filter(v) for _k, v in chunk) if f is not None]
            wanted = {k for k, _v in chunk}
            if items:
                for dn, anchor in search("(|" + "".join(sorted(set(items))) + ")"):
                    ndn = normalize_dn(dn)
                    if ndn in wanted:
                        self.add(ndn, anchor)
            with self._lock:
                found = self._dn_anchor.get_many(ndn for ndn, _v in chunk)
                self._dn_anchor.update((ndn, None) for ndn, _v in chunk if ndn not in found)
