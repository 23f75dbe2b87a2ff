"""Incremental reads of the LDAP connector: which mechanism, and the cursor a full read takes.

Why a package of modules: each mechanism decides *what* a read returns after a cursor, with
its own protocol and failure modes, so each is a module (a mixin of `Listings`) and this one
composes them; `connector.py` only dispatches. Cursor encoding is `cursor.py`'s, the
controls' BER `controls.py`'s.

Incremental reads (``incremental`` in the config):

- **syncrepl** (RFC 4533 refreshOnly: OpenLDAP syncprov, and 389-ds's own dialect):
  `syncrepl.py`; changed entries and deletes. An unusable answer (present mode,
  e-syncRefreshRequired, an unknown cookie or one from the future) makes the read fall back
  to a full one, with a warning.
- **watermark** (any server): `watermark.py`; changed entries only, **deletes are
  invisible**: the periodic full read finds them.
- **dirsync** (Active Directory, anchor objectGUID): `dirsync.py`; changed objects and
  ``isDeleted`` tombstones.

A full read (no cursor, or a fallback) takes the new cursor *before* listing (a syncrepl
cookie from a base-scope sync search, the watermark time, a DirSync cookie), so a change made
during the listing is seen again by the next incremental read: at-least-once, never lost.
``auto`` picks syncrepl when the root DSE lists the sync control (falling back to watermark if
the search base turns out not to have syncprov; on 389-ds also where its feed cannot serve,
decided once, with a note: `ds389.Ds389Feed._ds389_feed_problem`), dirsync on AD, else
watermark.
"""

from __future__ import annotations

from syncd.errors import Fatal
from syncd_connectors.ldap.base import log
from syncd_connectors.ldap.config import LdapConfig, SearchSpec
from syncd_connectors.ldap.feeds.controls import AD_CAPABILITY, SYNC_REQUEST
from syncd_connectors.ldap.feeds.cursor import make_cursor
from syncd_connectors.ldap.feeds.dirsync import DirSyncReads
from syncd_connectors.ldap.feeds.ds389 import note_once
from syncd_connectors.ldap.feeds.listing import FullReadNeeded
from syncd_connectors.ldap.feeds.syncrepl import SyncreplReads, _NoSyncprov
from syncd_connectors.ldap.feeds.watermark import WatermarkReads
from syncd_connectors.ldap.wire.request import DIRSYNC

__all__ = ["FullReadNeeded", "IncrementalReads"]

_MATCH_NOTHING = "(&(objectClass=*)(!(objectClass=*)))"


class IncrementalReads(SyncreplReads, WatermarkReads, DirSyncReads):
    """The three incremental mechanisms, and the one in use (see the module docstring)."""

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
