"""The listing every LDAP read ends in, and the batches an incremental read hands out.

Why a module of its own: a full read is one paged listing of the configured search; every
change feed (`syncrepl.py`, `watermark.py`, `dirsync.py`) also ends in listings (changed
entries re-read whole from the configured base and filter) and hands out its changes in
`Batch` pages with the new cursor on the last one. `Listings` is the common base of the three
mechanisms, so each of them stays a module of its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from syncd.model import Batch, Entry, Kind
from syncd_connectors.ldap.config import SearchSpec
from syncd_connectors.ldap.feeds.csn import CsnGuard
from syncd_connectors.ldap.feeds.cursor import fingerprint
from syncd_connectors.ldap.wire.decode import Plan


class FullReadNeeded(Exception):
    """The incremental read cannot be trusted; raised before anything was yielded."""


class Listings(CsnGuard):
    """Listings, and the pages of an incremental read (see the module docstring)."""

    def _fingerprint(self, mech: str, spec: SearchSpec, request: Sequence[str]) -> str:
        return fingerprint(mech, spec.base, spec.filter, spec.scope, request, self._anchor)

    def _listing(
        self,
        kind: Kind,
        spec: SearchSpec,
        filter_: str,
        request: list[str],
        plan: Plan,
        full: bool,
        cursor: str | None,
    ) -> Iterator[Batch]:
        complete = True
        for rows, last, cut_short in self._paged(spec.base, filter_, spec.scope, request, plan):
            entries, whole = self._entries(kind, rows)
            complete = complete and whole and not cut_short
            if last:
                if kind == "user" and complete and full:
                    self._dn_map.complete = True
                yield Batch(kind, tuple(entries), cursor=cursor, complete=complete, full=full)
                return
            yield Batch(kind, tuple(entries), complete=True, full=full)

    def _pages(
        self, kind: Kind, entries: list[Entry], cursor: str, complete: bool, deleted: list[str]
    ) -> Iterator[Batch]:
        size = self.config.page_size
        pages = [entries[i : i + size] for i in range(0, len(entries), size)] or [[]]
        for page in pages[:-1]:
            yield Batch(kind, tuple(page), full=False)
        yield Batch(
            kind, tuple(pages[-1]), cursor=cursor, complete=complete, full=False,
            deleted=tuple(dict.fromkeys(deleted)),
        )  # fmt: skip
