"""DirSync reads (Active Directory, anchor objectGUID).

The DirSync control over the naming context yields changed objectGUIDs and ``isDeleted``
tombstones (-> `Batch.deleted`); changed objects are then re-read whole from the configured
base and filter, in bulk (objects that no longer match are reported deleted: they left the
scope). Tested against a Samba AD DC (tests/connectors/test_ldap_ad.py, which needs root)
and at the BER level (control encoding and decoding).
"""

from __future__ import annotations

from collections.abc import Iterator

from syncd.errors import Fatal
from syncd.model import Batch, Entry, Kind
from syncd_connectors.ldap.config import SearchSpec
from syncd_connectors.ldap.feeds.controls import dirsync_request, dirsync_response
from syncd_connectors.ldap.feeds.cursor import make_cursor
from syncd_connectors.ldap.feeds.listing import FullReadNeeded, Listings
from syncd_connectors.ldap.values import anchor_string, normalize_dn
from syncd_connectors.ldap.wire.ber import Malformed
from syncd_connectors.ldap.wire.decode import Plan
from syncd_connectors.ldap.wire.events import SearchDone, SearchEntry
from syncd_connectors.ldap.wire.request import DIRSYNC


class DirSyncReads(Listings):
    """DirSync reads (see the module docstring)."""

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
