"""Incremental reads of the LDAP connector: syncrepl, watermark and DirSync.

Why a module of its own: these decide *what* a read returns after a cursor (and what cursor a
full read hands out), each with its own protocol and failure modes; `connector.py` only
dispatches. Cursor encoding and the controls' BER are `sync.py`'s.

Incremental reads (``incremental``, see `sync.py` for the cursor format):

- **syncrepl** (OpenLDAP syncprov, RFC 4533 refreshOnly): changed entries (states add and
  modify) come back whole and are upserted; deletes arrive as entryUUIDs (delete states and
  syncIdSets) in `Batch.deleted` -- only when the anchor is entryUUID, the only id they carry.
  389 Directory Server speaks its own RFC 4533 (cookies bound to the search, refreshDeletes
  FALSE after a changes-only refresh, nsUniqueId-named deletes): `ds389.py` says how, and
  `_syncrepl` takes that path when the root DSE's vendorName says 389.
  The changes of one read are held until the server ends the refresh (O(changes)), because
  only then is it known that it answered in delete mode; a *present* mode answer (the session
  log does not reach back to the cookie), e-syncRefreshRequired, an unknown cookie or a
  cookie from the future make the read fall back to a full one, with a warning.
- **watermark** (any server): ``(modifyTimestamp>=T)`` with T the start of the previous read
  minus ``watermark_overlap`` (server ``currentTime`` when the root DSE offers it, else our
  clock). Changed entries only; **deletes are invisible**: the periodic full read finds them.
- **dirsync** (Active Directory, anchor objectGUID): the DirSync control over the naming
  context yields changed objectGUIDs and ``isDeleted`` tombstones (-> `Batch.deleted`);
  changed objects are then re-read whole from the configured base and filter, in bulk
  (objects that no longer match are reported deleted: they left the scope). **Tested only at
  the BER level** (control encoding/decoding); no AD or Samba DC ran in the test suite.

A full read (no cursor, or a fallback) takes the new cursor *before* listing (a syncrepl
cookie from a base-scope sync search, the watermark time, a DirSync cookie), so a change made
during the listing is seen again by the next incremental read: at-least-once, never lost.
``auto`` picks syncrepl when the root DSE lists the sync control (falling back to watermark if
the search base turns out not to have syncprov; on 389-ds also where its feed cannot serve,
decided once, with a note: `ds389.Ds389Feed._ds389_feed_problem`), dirsync on AD, else
watermark.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

from syncd.errors import Fatal
from syncd.model import Batch, Entry, Kind
from syncd_connectors.ldap.base import log
from syncd_connectors.ldap.ber import Malformed
from syncd_connectors.ldap.config import LdapConfig, SearchSpec
from syncd_connectors.ldap.csn import CsnGuard
from syncd_connectors.ldap.decode import Plan, row_from_event
from syncd_connectors.ldap.ds389 import CHUNK, note_once, nsid_filter
from syncd_connectors.ldap.sync import (
    AD_CAPABILITY,
    DIRSYNC,
    STATE_DELETE,
    STATE_PRESENT,
    SYNC_DONE,
    SYNC_INFO,
    SYNC_REFRESH_REQUIRED,
    SYNC_REQUEST,
    SYNC_STATE,
    BadCursor,
    dirsync_request,
    dirsync_response,
    ds389_change_number,
    fingerprint,
    make_cursor,
    nsuniqueid,
    sync_done,
    sync_info,
    sync_request,
    sync_state,
)
from syncd_connectors.ldap.values import anchor_string, normalize_dn
from syncd_connectors.ldap.wire import SearchDone, SearchEntry, SearchIntermediate, SearchRef

_UNAVAILABLE_CRITICAL_EXTENSION, _UNWILLING, _INSUFFICIENT_ACCESS = 12, 53, 50
_GENERALIZED = re.compile(r"^\d{14}Z$")
_MATCH_NOTHING = "(&(objectClass=*)(!(objectClass=*)))"


class FullReadNeeded(Exception):
    """The incremental read cannot be trusted; raised before anything was yielded."""


class _NoSyncprov(Exception):
    """The server refused the sync control for this base."""


class IncrementalReads(CsnGuard):
    """Listings and the three incremental mechanisms (see the module docstring)."""

    def __init__(self, name: str, config: LdapConfig) -> None:
        super().__init__(name, config)
        self._auto: str | None = None

    # ---- choosing the mechanism ------------------------------------------------------------

    def mechanism(self) -> str | None:
        """The incremental mechanism in use (None: full reads only); detected once."""
        mode = self.config.incremental
        if mode == "none":
            return None
        if mode != "auto":
            return mode
        if self._auto is None:
            root = self._root_dse()
            controls = set(root.get("supportedcontrol", ()))
            if SYNC_REQUEST in controls:
                self._auto = "syncrepl"
                problem = self._ds389_feed_problem() if self._is_389() else None
                if problem is not None:
                    self._auto = "watermark"
                    note_once(self.name, self.config.url, self._msg(
                        f"{problem}: incremental reads via watermark (modifyTimestamp); "
                        "deletes are found by the periodic full reconcile"))  # fmt: skip
            elif AD_CAPABILITY in root.get("supportedcapabilities", ()) and DIRSYNC in controls:
                self._auto = "dirsync" if self._anchor == "objectguid" else "watermark"
            else:
                self._auto = "watermark"
            log.info("%s", self._msg(f"incremental reads via {self._auto}"))
        return self._auto

    def _fingerprint(self, mech: str, spec: SearchSpec, request: Sequence[str]) -> str:
        return fingerprint(mech, spec.base, spec.filter, spec.scope, request, self._anchor)

    # ---- listing ---------------------------------------------------------------------------

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

    def _start_cursor(self, spec: SearchSpec, request: list[str]) -> str | None:
        """The cursor a full read hands out, taken *before* the listing (at-least-once)."""
        mech = self.mechanism()
        if mech == "syncrepl":
            try:
                cookie = self._sync_cookie(spec)
                behind = self._behind(spec.base, cookie, lambda: self._sync_cookie(spec))
                if behind is not None:  # see csn.py: read in full until it catches up
                    log.warning("%s", self._msg(f"{behind}: no cursor kept this cycle"))
                    return None
                return make_cursor(mech, self._fingerprint(mech, spec, request), cookie)
            except _NoSyncprov as exc:
                if self.config.incremental != "auto":
                    raise Fatal(
                        self._msg(f"incremental = syncrepl but {exc}"), connector=self.name
                    ) from None
                log.warning("%s", self._msg(f"{exc}: incremental reads via watermark"))
                mech = self._auto = "watermark"
        if mech == "watermark":
            now = self._watermark_now()
            return make_cursor(mech, self._fingerprint(mech, spec, request), now)
        if mech == "dirsync":
            _items, cookie = self._dirsync_loop(spec, None, _MATCH_NOTHING, ["objectGUID"])
            return make_cursor(mech, self._fingerprint(mech, spec, request), cookie)
        return None

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

    # ---- syncrepl --------------------------------------------------------------------------

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

    # ---- watermark -------------------------------------------------------------------------

    def _watermark_now(self) -> bytes:
        """Start of this read as generalizedTime, minus the overlap: the server's clock when
        it tells (AD, 389-ds: currentTime in the root DSE), else ours."""
        now = datetime.now(UTC)
        if "currenttime" in self._root_dse():
            for event in self._search("", "(objectClass=*)", "base", ["currentTime"]):
                if isinstance(event, SearchEntry):
                    for value in event.attrs.get("currenttime", []):
                        text = value.decode("ascii", "replace")[:14]
                        if text.isdigit() and len(text) == 14:
                            now = datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        then = now - timedelta(seconds=self.config.watermark_overlap)
        return then.strftime("%Y%m%d%H%M%SZ").encode("ascii")

    def _watermark(
        self,
        kind: Kind,
        spec: SearchSpec,
        request: list[str],
        plan: Plan,
        fp: str,
        since: bytes,
    ) -> Iterator[Batch]:
        text = since.decode("ascii", "replace")
        if not _GENERALIZED.match(text):
            raise BadCursor(f"malformed watermark {text!r}")
        cursor = make_cursor("watermark", fp, self._watermark_now())
        filter_ = f"(&{spec.filter}(modifyTimestamp>={text}))"
        yield from self._listing(kind, spec, filter_, request, plan, False, cursor)

    # ---- DirSync (Active Directory) --------------------------------------------------------

    def _naming_context(self, base: str) -> str:
        nbase = normalize_dn(base)
        for nc in self._root_dse().get("namingcontexts", []):
            nnc = normalize_dn(nc)
            if nbase == nnc or nbase.endswith("," + nnc):
                return nc
        raise Fatal(self._msg(f"no naming context holds {base} (DirSync needs one)"))

    def _dirsync_loop(
        self, spec: SearchSpec, cookie: bytes | None, filter_: str, attrs: list[str]
    ) -> tuple[list[SearchEntry], bytes]:
        nc = self._naming_context(spec.base)
        items: list[SearchEntry] = []
        while True:
            done: SearchDone | None = None
            for event in self._search(nc, filter_, "sub", attrs, [dirsync_request(cookie)]):
                if isinstance(event, SearchEntry):
                    items.append(event)
                elif isinstance(event, SearchDone):
                    done = event
            assert done is not None
            if done.code != 0 and cookie:
                raise FullReadNeeded(f"the server refused the DirSync cookie: {done.message}")
            self._check(done, nc, len(items))
            try:
                more, cookie = dirsync_response(done.controls.get(DIRSYNC))
            except Malformed as exc:
                raise Fatal(self._msg(f"invalid DirSync control: {exc}")) from None
            if not more:
                return items, cookie

    def _dirsync(
        self,
        kind: Kind,
        spec: SearchSpec,
        request: list[str],
        plan: Plan,
        fp: str,
        cookie: bytes,
    ) -> Iterator[Batch]:
        wide = f"(|{spec.filter}(isDeleted=TRUE))"  # tombstones lose objectCategory
        # DirSync returns an object only when one of the *requested* attributes changed, and
        # objectGUID never does: ask for everything (plus isDeleted) so adds, modifies,
        # membership and userAccountControl changes are seen (verified against Samba AD).
        items, new_cookie = self._dirsync_loop(spec, cookie, wide,
                                               ["*", "objectGUID", "isDeleted"])
        deleted: list[str] = []
        changed: dict[str, bytes] = {}
        for item in items:
            attrs = {k.lower(): v for k, v in item.attrs.items()}
            guid = (attrs.get("objectguid") or [b""])[0]
            if len(guid) != 16:
                continue
            anchor = anchor_string("objectguid", guid)
            if (attrs.get("isdeleted") or [b""])[0].upper() == b"TRUE":
                deleted.append(anchor)
            else:
                changed[anchor] = guid
        entries: list[Entry] = []
        complete = True
        guids = list(changed.items())
        for i in range(0, len(guids), 100):
            chunk = "".join(f"(objectGUID={_escape_bytes(g)})" for _a, g in guids[i : i + 100])
            filter_ = f"(&{spec.filter}(|{chunk}))"
            for batch in self._listing(kind, spec, filter_, request, plan, False, None):
                entries.extend(batch.entries)
                complete = complete and batch.complete
        found = {e.external_id for e in entries}
        deleted.extend(a for a in changed if a not in found)  # changed out of scope
        if kind == "user":
            for anchor in deleted:
                self._dn_map.remove(anchor)
        yield from self._pages(
            kind, entries, make_cursor("dirsync", fp, new_cookie), complete, deleted
        )


def _escape_bytes(value: bytes) -> str:
    return "".join(f"\\{b:02x}" for b in value)
