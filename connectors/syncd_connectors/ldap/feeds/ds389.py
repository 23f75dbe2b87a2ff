"""389 Directory Server's content synchronisation (RFC 4533), as it really behaves.

Why a module of its own: 389-ds (FreeIPA, Red Hat DS) advertises the sync control, but its
plugin (``Content Synchronization``, fed by the Retro Changelog) differs from OpenLDAP's
syncprov in ways that made every incremental read fall back to a full one (measured against
389-ds-base 2.3, see tests/connectors/test_ldap_ds389.py):

- **Cookies are bound to the search**: ``host:port#binddn:base:filter#N``, where N is the
  retro changelog's change number. A cookie from any other bind DN, base or filter is
  answered ``4096 Invalid session cookie``. So the cookie a full read hands out comes from a
  base-scope sync search with the *same* base and filter (the scope is not part of it).
- **refreshDeletes = FALSE ends every refresh**, also one that sent only changes: 389-ds
  never answers an incremental refresh in present mode (deletes come as syncIdSets, changed
  entries with state ``add``). So FALSE means nothing there; a *present* state or message
  still means "cannot trust this" as everywhere.
- **syncUUIDs are the nsUniqueId's bytes**, not entryUUID's. Deleted entries are mapped to the
  link's anchor: nsUniqueId directly (`controls.nsuniqueid`), entryUUID through the retro
  changelog, which logs it as ``targetEntryUUID`` when configured to
  (``nsslapd-attribute: entryuuid:targetEntryUUID``, as 389-ds documents for its own
  OpenLDAP mode), one search per read that saw deletes, within the read's change numbers.
- **Changed entries come back with every user attribute and no operational one** (no
  entryUUID, nsUniqueId or modifyTimestamp): they are re-read by nsUniqueId from the
  configured base and filter, with the requested attributes (`syncrepl.py`).
- **An entry that stops matching the filter is not reported** (the plugin skips a changed
  entry out of scope instead of sending a delete): the changelog records of the read's range
  name it, and it is reported deleted, as a full read would no longer list it.
- **It never says that the changelog was trimmed past a cookie** (it sends what is left): the
  root DSE's ``firstchangenumber`` is compared with the cookie's number first.

Where this feed cannot serve (the bind DN may not use the control, the anchor is neither
entryUUID nor nsUniqueId, or the changelog does not name entryUUIDs or cannot be read),
``incremental = "auto"`` chooses watermark reads with a note logged once per process; deletes
are then found by the engine's periodic full reconcile, which proves absence with
``confirm_gone``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ldap3.utils.conv import escape_filter_chars

from syncd_connectors.ldap.base import LdapBase, log
from syncd_connectors.ldap.config import SearchSpec
from syncd_connectors.ldap.feeds.controls import sync_request
from syncd_connectors.ldap.values import normalize_dn, one_level_below
from syncd_connectors.ldap.wire.events import SearchDone, SearchEntry

CHANGELOG = "cn=changelog"
#: nsUniqueIds per changelog or re-read search (an OR filter each).
CHUNK = 100
#: Changelog records looked at when checking that it logs entryUUIDs.
_PROBE = 10
_INSUFFICIENT_ACCESS = 50

_NOTED: set[tuple[str, str, str]] = set()


def note_once(name: str, url: str, text: str) -> None:
    """Log `text` once per process and connector: a daemon re-opens its connectors every
    cycle, and a note that the feed cannot serve is news only the first time."""
    key = (name, url, text)
    if key not in _NOTED:
        _NOTED.add(key)
        log.warning("%s", text)


@dataclass
class Changelog:
    """What the retro changelog says about one range of change numbers."""

    #: nsUniqueId -> entryUUID (when logged).
    entry_uuids: dict[str, str] = field(default_factory=dict)
    #: nsUniqueIds modified or renamed within the search's base and scope.
    changed_in_scope: set[str] = field(default_factory=set)
    complete: bool = True


class Ds389Feed(LdapBase):
    """The 389-ds specifics of syncrepl reads (see the module docstring)."""

    def _is_389(self) -> bool:
        vendor = self._root_dse().get("vendorname", [""])
        return bool(vendor) and vendor[0].startswith("389")

    def _fresh_root(self, attrs: Sequence[str]) -> dict[str, str]:
        """Root DSE attributes read now (the cached `_root_dse` is for what never changes)."""
        out: dict[str, str] = {}
        for event in self._search("", "(objectClass=*)", "base", list(attrs)):
            if isinstance(event, SearchEntry):
                for name, values in event.attrs.items():
                    if values:
                        out[name.lower()] = values[0].decode("utf-8", "replace")
        return out

    # ---- can the feed serve? ---------------------------------------------------------------

    def _ds389_feed_problem(self) -> str | None:
        """Why 389-ds's content sync cannot serve this connector (None: it can). Asked once,
        when ``auto`` chooses the mechanism: the answer must not change from one cycle to the
        next, or every cycle's cursor would be of the other mechanism."""
        if self._anchor not in ("entryuuid", "nsuniqueid"):
            return (
                f"389-ds names deleted entries by nsUniqueId, which cannot be mapped to "
                f"anchor {self.config.anchor}"
            )
        problem = self._sync_allowed(self.config.users)
        if problem is None and self._anchor == "entryuuid":
            problem = self._changelog_entryuuid_problem()
        return problem

    def _sync_allowed(self, spec: SearchSpec) -> str | None:
        done: SearchDone | None = None
        for event in self._search(spec.base, spec.filter, "base", [], [sync_request(None)]):
            if isinstance(event, SearchDone):
                done = event
        assert done is not None
        if done.code == _INSUFFICIENT_ACCESS:
            return f"{self.config.bind_dn or 'anonymous'} may not use content sync on 389-ds"
        if done.code in (12, 53):
            return f"{spec.base} does not offer content sync ({done.message})"
        self._check(done, spec.base, 0)
        return None

    def _changelog_entryuuid_problem(self) -> str | None:
        """With anchor entryUUID, deletes are mapped through the changelog's targetEntryUUID:
        the last records must carry it. An empty changelog proves nothing either way; then
        the first read with deletes finds out (and falls back once)."""
        root = self._fresh_root(["changelog", "lastchangenumber"])
        if "changelog" not in root:
            return "389-ds has no retro changelog (cn=changelog)"
        last = int(root.get("lastchangenumber", "0") or 0)
        if last <= 0:
            return None
        seen = logged = 0
        done: SearchDone | None = None
        filter_ = f"(changeNumber>={max(1, last - _PROBE + 1)})"
        for event in self._search(CHANGELOG, filter_, "one", ["targetUniqueId", "targetEntryUUID"]):
            if isinstance(event, SearchEntry):
                seen += 1
                logged += bool(event.attrs.get("targetentryuuid"))
            elif isinstance(event, SearchDone):
                done = event
        if done is None or done.code != 0 or seen == 0:
            return (
                f"{self.config.bind_dn or 'anonymous'} cannot read the retro changelog, which "
                "names the entryUUID of deleted entries"
            )
        if logged == 0:
            return (
                "the retro changelog does not log entryUUID (nsslapd-attribute: "
                "entryuuid:targetEntryUUID), so deleted entries cannot be named by entryUUID"
            )
        return None

    # ---- one incremental read ------------------------------------------------------------------

    def _changelog_trimmed(self, number: int) -> bool:
        """True when the changelog no longer holds the change after `number`: 389-ds would
        silently send only what is left."""
        root = self._fresh_root(["firstchangenumber", "lastchangenumber"])
        first = int(root.get("firstchangenumber", "0") or 0)
        last = int(root.get("lastchangenumber", "0") or 0)
        return last > number and first > number + 1

    def _changelog(self, spec: SearchSpec, first: int, last: int,
                   wanted: Iterable[str]) -> Changelog:  # fmt: skip
        """The records numbered `first`..`last`: entryUUIDs of the `wanted` nsUniqueIds and
        the entries changed (modify, modrdn) within `spec`'s base and scope."""
        out = Changelog()
        if last < first:
            return out
        want = set(wanted)
        nbase = normalize_dn(spec.base)
        attrs = ["targetUniqueId", "targetEntryUUID", "targetDn", "changeType"]
        done: SearchDone | None = None
        count = 0
        filter_ = f"(&(changeNumber>={first})(changeNumber<={last}))"
        for event in self._search(CHANGELOG, filter_, "one", attrs):
            if isinstance(event, SearchEntry):
                count += 1
                a = {k.lower(): v[0].decode("utf-8", "replace") for k, v in event.attrs.items()
                     if v}  # fmt: skip
                nsid = a.get("targetuniqueid", "").lower()
                if not nsid:
                    continue
                if "targetentryuuid" in a and nsid in want:
                    out.entry_uuids[nsid] = a["targetentryuuid"]
                if a.get("changetype", "").lower() in ("modify", "modrdn"):
                    ndn = normalize_dn(a.get("targetdn", ""))
                    inside = (one_level_below(ndn, nbase) if spec.scope == "one"
                              else ndn.endswith("," + nbase))  # fmt: skip
                    if inside:
                        out.changed_in_scope.add(nsid)
                        if "targetentryuuid" in a:
                            out.entry_uuids[nsid] = a["targetentryuuid"]
            elif isinstance(event, SearchDone):
                done = event
        if done is None or done.code != 0 or count == 0:
            out.complete = False
        return out


def nsid_filter(nsids: Sequence[str]) -> str:
    return "(|" + "".join(f"(nsUniqueId={escape_filter_chars(n)})" for n in nsids) + ")"
