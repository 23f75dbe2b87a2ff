"""syncrepl reads: RFC 4533 content sync, refreshOnly (OpenLDAP syncprov, 389-ds).

Changed entries (states add and modify) come back whole and are upserted; deletes arrive as
entryUUIDs (delete states and syncIdSets) in `Batch.deleted` -- only when the anchor is
entryUUID, the only id they carry. 389 Directory Server speaks its own RFC 4533 (cookies bound
to the search, refreshDeletes FALSE after a changes-only refresh, nsUniqueId-named deletes):
`ds389.py` says how, and `_syncrepl` takes that path when the root DSE's vendorName says 389.

The changes of one read are held until the server ends the refresh (O(changes)), because only
then is it known that it answered in delete mode; a *present* mode answer (the session log
does not reach back to the cookie), e-syncRefreshRequired, an unknown cookie or a cookie from
the future make the read fall back to a full one (`FullReadNeeded`). A cookie is also checked
against the entries (`csn.py`) before it is trusted.
"""

from __future__ import annotations

from collections.abc import Iterator

from syncd.errors import Fatal
from syncd.model import Batch, Entry, Kind
from syncd_connectors.ldap.config import SearchSpec
from syncd_connectors.ldap.feeds.controls import (
    STATE_DELETE,
    STATE_PRESENT,
    SYNC_DONE,
    SYNC_INFO,
    SYNC_REFRESH_REQUIRED,
    SYNC_STATE,
    ds389_change_number,
    nsuniqueid,
    sync_done,
    sync_info,
    sync_request,
    sync_state,
)
from syncd_connectors.ldap.feeds.cursor import make_cursor
from syncd_connectors.ldap.feeds.ds389 import CHUNK, nsid_filter
from syncd_connectors.ldap.feeds.listing import FullReadNeeded, Listings
from syncd_connectors.ldap.wire.ber import Malformed
from syncd_connectors.ldap.wire.decode import Plan, row_from_event
from syncd_connectors.ldap.wire.events import (
    SearchDone,
    SearchEntry,
    SearchIntermediate,
    SearchRef,
)

_UNAVAILABLE_CRITICAL_EXTENSION, _UNWILLING, _INSUFFICIENT_ACCESS = 12, 53, 50


class _NoSyncprov(Exception):
    """The server refused the sync control for this base."""


class SyncreplReads(Listings):
    """syncrepl reads, OpenLDAP's and 389-ds's (see the module docstring)."""

    def _sync_cookie(self, spec: SearchSpec) -> bytes:
        """A cookie for the current state: a sync search of the base entry alone. On 389-ds
        with the listing's own filter: its cookies are bound to bind DN, base and filter (not
        scope), and one from another search is an "Invalid session cookie"."""
        ds389 = self._is_389()
        filter_ = spec.filter if ds389 else "(objectClass=*)"
        done: SearchDone | None = None
        for event in self._search(spec.base, filter_, "base", [], [sync_request(None)]):
            if isinstance(event, SearchDone):
                done = event
        assert done is not None
        refused = (_UNAVAILABLE_CRITICAL_EXTENSION, _UNWILLING)
        if done.code in refused or (ds389 and done.code == _INSUFFICIENT_ACCESS):
            raise _NoSyncprov(f"{spec.base} does not offer content sync ({done.message})")
        self._check(done, spec.base, 0)
        try:
            cookie = sync_done(done.controls.get(SYNC_DONE)).cookie
        except Malformed as exc:
            raise Fatal(self._msg(f"invalid Sync Done control: {exc}")) from None
        if not cookie:
            raise _NoSyncprov(f"{spec.base} returned no sync cookie")
        return cookie

    def _syncrepl(
        self,
        kind: Kind,
        spec: SearchSpec,
        request: list[str],
        plan: Plan,
        fp: str,
        cookie: bytes,
    ) -> Iterator[Batch]:
        items: list[SearchEntry] = []
        changed: list[str] = []  # the items' syncUUIDs
        deleted: list[str] = []
        referrals = False
        done: SearchDone | None = None
        present = "the server answered in present mode (its session log ends after the cursor)"
        control = [sync_request(cookie)]
        ds389 = self._is_389()
        number = ds389_change_number(cookie) if ds389 else None
        if number is not None and self._changelog_trimmed(number):
            raise FullReadNeeded("the 389-ds retro changelog no longer reaches back to the cursor")
        behind = None if ds389 else self._behind(spec.base, cookie,
                                                 lambda: self._sync_cookie(spec))
        if behind is not None:
            raise FullReadNeeded(behind)
        try:
            for event in self._search(spec.base, spec.filter, spec.scope, request, control):
                if isinstance(event, SearchEntry):
                    state, uuid = sync_state((event.controls or {}).get(SYNC_STATE))
                    if state == STATE_PRESENT:
                        raise FullReadNeeded(present)
                    if state == STATE_DELETE:
                        deleted.append(uuid)
                    else:
                        items.append(event)
                        changed.append(uuid)
                elif isinstance(event, SearchIntermediate) and event.name == SYNC_INFO:
                    info = sync_info(event.value)
                    if info.kind == "refreshPresent" or (
                        info.kind == "syncIdSet" and not info.refresh_deletes
                    ):
                        raise FullReadNeeded(present)
                    deleted.extend(info.uuids)
                elif isinstance(event, SearchRef):
                    referrals = True
                elif isinstance(event, SearchDone):
                    done = event
            assert done is not None
            if done.code == SYNC_REFRESH_REQUIRED:
                raise FullReadNeeded("the server requires a full refresh (e-syncRefreshRequired)")
            if done.code == _UNWILLING:
                raise FullReadNeeded(f"the server refused the cookie: {done.message}")
            cut = self._check(done, spec.base, len(items))
            if SYNC_DONE not in done.controls:
                raise FullReadNeeded("the server sent no Sync Done control")
            end = sync_done(done.controls[SYNC_DONE])
        except Malformed as exc:
            raise Fatal(self._msg(f"undecodable sync reply: {exc}"), connector=self.name) from None
        if end.cookie == b"":
            raise FullReadNeeded("the server did not recognise the cookie")
        new_cookie = end.cookie or cookie
        if number is not None:  # 389-ds: FALSE ends every refresh, changes-only ones too
            entries, whole, deleted = self._ds389_changes(
                kind, spec, request, plan, changed, deleted, number, new_cookie)
        else:
            if not end.refresh_deletes:
                raise FullReadNeeded(present)
            if self._anchor != "entryuuid":
                deleted = []  # syncrepl names deleted entries by entryUUID only
            entries, whole = self._entries(kind, [row_from_event(item, plan) for item in items])
        if kind == "user":
            for uuid in deleted:
                self._dn_map.remove(uuid)
        cursor = make_cursor("syncrepl", fp, new_cookie)
        yield from self._pages(kind, entries, cursor, whole and not cut and not referrals, deleted)

    def _ds389_changes(
        self,
        kind: Kind,
        spec: SearchSpec,
        request: list[str],
        plan: Plan,
        changed: list[str],
        deleted: list[str],
        number: int,
        new_cookie: bytes,
    ) -> tuple[list[Entry], bool, list[str]]:
        """389-ds's changed entries re-read with the requested attributes (it sends them
        without operational ones, anchor included), and its deletes -- plus entries changed
        out of the filter, which it does not report -- as the link's anchors."""
        gone = [nsuniqueid(u) for u in dict.fromkeys(deleted)]
        nsids = [nsuniqueid(u) for u in dict.fromkeys(changed)]
        entries: list[Entry] = []
        whole = True
        for i in range(0, len(nsids), CHUNK):
            filter_ = f"(&{spec.filter}{nsid_filter(nsids[i : i + CHUNK])})"
            for batch in self._listing(kind, spec, filter_, request, plan, False, None):
                entries.extend(batch.entries)
                whole = whole and batch.complete
        last = ds389_change_number(new_cookie)
        if last is None or last <= number:
            if gone:
                raise FullReadNeeded("389-ds sent deletes but its cookie did not advance")
            return entries, whole, []
        log_ = self._changelog(spec, number + 1, last, gone)
        if log_.complete:  # changed, but not sent: it no longer matches the filter
            gone += sorted(log_.changed_in_scope - set(nsids) - set(gone))
        if self._anchor == "nsuniqueid":
            return entries, whole, gone
        if self._anchor != "entryuuid":  # (forced syncrepl) the periodic full read finds them
            return entries, whole, []
        anchors = [log_.entry_uuids.get(n) for n in gone]
        if None in anchors:
            missing = sum(a is None for a in anchors)
            raise FullReadNeeded(
                f"the 389-ds retro changelog does not name the entryUUID of {missing} deleted "
                "entries (nsslapd-attribute: entryuuid:targetEntryUUID)"
            )
        return entries, whole, [a for a in anchors if a is not None]
