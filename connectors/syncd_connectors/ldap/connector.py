"""The LDAP connector: an LDAP directory as a *source* of users and groups.

Full reads are simple-paged searches (RFC 2696) yielded one `Batch` per page, so a 100k-entry
directory never sits in memory; only the attributes the flow maps are asked for (plus the
anchor, plus the member attribute for groups). Search replies are decoded by our own lean BER
decoder (`wire/`, ~10x ldap3's speed) unless ``decoder = "stock"``.

Identity: `Entry.external_id` is the configured anchor (entryUUID; AD's binary objectGUID is
rendered as its canonical UUID string), never the DN, which changes on rename.

Incremental reads (``incremental``: syncrepl, watermark, DirSync) are `feeds/`'s.

Absence is not proof: before the engine deprovisions a linked entry a full listing did not
return, `confirm_gone` looks its anchor up directly, within the same base, scope and filter.

Passwords (`values.PASSWORD_ATTRIBUTES`: userPassword, unicodePwd, ...) are never requested,
searched by or kept, also not through ``*``: whatever a bind account may read, no syncd
output (``explain``, links, logs) can carry a password hash.

Groups: member DNs are resolved to user anchors by `members.DnMap` (users seen in this
session, then bulk lookups); member DNs naming groups of the groups search are reported as
`Entry.member_groups` (`nesting`), which the engine flattens per flow (``nested``). Other
members are ignored. memberOf is never requested (unless mapped):
membership comes from the groups, and a user whose only change is memberOf is a no-op upsert.

Writes (LDAP as a target or a two-way side) are `write.writer.LdapWriter`'s, on connections of its
own. Every read also asks for modifyTimestamp (-> `Entry.modified`) and fills `Entry.attrs`
(one value -> str, several -> tuple) so the engine can match and diff LDAP as a target; both
in the same single pass that decodes `Entry.raw` (`wire/decode.py`).

Threads: `find` and reads may run on several threads at once; each thread has its own read
connection (`base.py`), as each apply thread has its own write connection (`write/session.py`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property

from ldap3.utils.conv import escape_filter_chars

from syncd.connector import Capabilities
from syncd.errors import ConfigError, ConnectorError, Fatal, Retriable
from syncd.model import Attrs, Batch, Entry, Kind, Value
from syncd_connectors.ldap.base import log
from syncd_connectors.ldap.config import ATTRIBUTE_RE, SearchSpec
from syncd_connectors.ldap.feeds.controls import SYNC_REQUEST
from syncd_connectors.ldap.feeds.cursor import BadCursor, parse_cursor
from syncd_connectors.ldap.feeds.incremental import FullReadNeeded, IncrementalReads
from syncd_connectors.ldap.members import DnMap
from syncd_connectors.ldap.values import anchor_filter, anchor_string, is_password_attribute
from syncd_connectors.ldap.wire.events import SearchDone, SearchEntry, SearchRef
from syncd_connectors.ldap.wire.request import PAGED_RESULTS
from syncd_connectors.ldap.write.session import CHUNK
from syncd_connectors.ldap.write.writer import LdapWriter


class LdapConnector(IncrementalReads):
    """Reads users and groups from an LDAP directory (see the module docstring)."""

    # ---- reading ---------------------------------------------------------------------------

    def read(
        self, kind: Kind, cursor: str | None = None, attributes: Sequence[str] | None = None
    ) -> Iterator[Batch]:
        """Incremental read from `cursor`, else (or when it cannot be used) a full read; the
        last batch carries the next cursor (see the module docstring)."""
        spec = self._spec(kind)
        request = self._request(kind, attributes)
        plan = self._plan(kind, None if attributes is None else {a.lower() for a in attributes})
        mech = self.mechanism()
        if cursor is not None and mech is not None:
            fp = self._fingerprint(mech, spec, request)
            try:
                payload = parse_cursor(cursor, mech, fp)
                if mech == "syncrepl":
                    yield from self._syncrepl(kind, spec, request, plan, fp, payload)
                elif mech == "watermark":
                    yield from self._watermark(kind, spec, request, plan, fp, payload)
                else:
                    yield from self._dirsync(kind, spec, request, plan, fp, payload)
                return
            except (BadCursor, FullReadNeeded) as exc:
                log.warning(
                    "%s",
                    self._msg(f"{kind} cursor not usable ({exc}): falling back to a full read"),
                )
        new_cursor = self._start_cursor(spec, request)
        yield from self._listing(kind, spec, spec.filter, request, plan, True, new_cursor)

    # ---- find ------------------------------------------------------------------------------

    def find(
        self, kind: Kind, attribute: str, value: str, attributes: Sequence[str] | None = None
    ) -> list[Entry]:
        """Entries of `kind` whose LDAP `attribute` equals `value`, within the configured
        base and filter. The value is always escaped (RFC 4515): ``*)(`` matches literally.
        `attributes` limits what is fetched, as for `read` (None: all but passwords).
        Never by a password attribute: a search by hash would be an oracle for it."""
        if not ATTRIBUTE_RE.match(attribute):
            raise ConfigError(f"{attribute!r} is not a valid LDAP attribute name")
        if is_password_attribute(attribute):
            raise ConfigError(f"{attribute!r} is a password attribute: never searched by")
        spec = self._spec(kind)
        filter_ = f"(&{spec.filter}({attribute}={escape_filter_chars(value)}))"
        out: list[Entry] = []
        keep = None if attributes is None else {a.lower() for a in attributes}
        plan = self._plan(kind, keep)
        for rows, _last, cut_short in self._paged(
            spec.base, filter_, spec.scope, self._request(kind, attributes), plan
        ):
            if cut_short:
                raise Fatal(
                    self._msg(f"find {attribute}={value!r} was cut short by the server"),
                    connector=self.name,
                )
            out.extend(self._entries(kind, rows)[0])
        return out

    # ---- users back in scope rejoin their groups -------------------------------------------

    def groups_naming(
        self, user_ids: Sequence[str], attributes: Sequence[str] | None = None
    ) -> list[Entry]:
        """Groups within the configured group base, scope and filter that name any of these
        users, whole (every member resolved), for the engine to plan as if they changed.

        Why: a user back in scope (or recreated after a delete) is named by groups that did
        not change, so no change feed returns them, while a full read would. Per `CHUNK`
        users: one search for their DNs (as the server writes them), one for the groups
        ``(&(filter)(|(member=dn)...))``. A cut-short answer raises `Retriable`: a partial
        answer would silently leave users out of groups."""
        groups = self.config.groups
        if groups is None or not user_ids:
            return []
        keep = None if attributes is None else {a.lower() for a in attributes}
        plan, request = self._plan("group", keep), self._request("group", attributes)
        out: dict[str, Entry] = {}
        anchors = list(dict.fromkeys(user_ids))
        for i in range(0, len(anchors), CHUNK):
            dns = self._user_dns(anchors[i : i + CHUNK])
            if not dns:
                continue
            named = "".join(f"({self.config.member_attribute}={escape_filter_chars(d)})"
                            for d in dns)  # fmt: skip
            filter_ = f"(&{groups.filter}(|{named}))"
            for rows, _last, cut_short in self._paged(
                groups.base, filter_, groups.scope, request, plan
            ):
                if cut_short:
                    raise Retriable(self._msg("lookup of groups naming users was cut short"))
                for e in self._entries("group", rows)[0]:
                    out[e.external_id] = e
        return list(out.values())

    def _user_dns(self, anchors: list[str]) -> list[str]:
        """The DNs of these users, as the server writes them (within the users' scope)."""
        users = self.config.users
        wanted = "".join(f for f in (anchor_filter(self.config.anchor, a) for a in anchors) if f)
        if not wanted:
            return []
        dns: list[str] = []
        filter_ = f"(&{users.filter}(|{wanted}))"
        for event in self._search(users.base, filter_, users.scope, [self.config.anchor]):
            if isinstance(event, SearchEntry):
                dns.append(event.dn)
            elif isinstance(event, SearchDone) and event.code != 0:
                raise Retriable(self._msg(f"user DN lookup failed (result {event.code})"))
        return dns

    # ---- reference attributes ---------------------------------------------------------------

    def resolve_references(self, kind: Kind, names: Sequence[str]) -> dict[str, str | None]:
        """DN-valued references (``manager``) -> the anchors of the entries they name within
        the configured base, scope and filter of `kind`; None for a DN naming nothing there
        (out of scope, deleted, a typo). Users come from the DNs already read in this
        session (a full read answers every manager without a search), the rest from one
        search per `members.CHUNK` DNs, as group members are resolved."""
        if kind == "user":
            return self._dn_map.anchors(names, self._member_search)
        spec = self.config.groups
        if spec is None:
            return dict.fromkeys(names)
        groups = DnMap(spec.base, spec.scope)

        def search(filter_: str) -> Iterator[tuple[str, str]]:
            return self._anchor_search(spec, filter_)

        return groups.anchors(names, search)

    def reference_names(self, kind: Kind, anchors: Sequence[str]) -> dict[str, str | None]:
        """The other way: anchors -> the DNs of those entries, None for an anchor naming no
        entry of `kind` (where the kind's entries live: its search base, create base and
        disable OU). What a DN-valued reference (``manager``) is written as, on this
        directory as a target and when a two-way flow writes a reference back. The DNs the
        writer knows answer, the rest cost one search per `CHUNK` anchors and base."""
        found = self._writer.dns(kind, anchors)
        return {a: found.get(a) for a in anchors}

    # ---- absence is not proof ----------------------------------------------------------------

    def confirm_gone(self, kind: Kind, external_ids: Sequence[str]) -> set[str]:
        """Of these anchors, those a direct lookup proves absent from the configured scope
        (same base, scope and filter as a listing: an entry that left the filter is gone).

        Why: a paged listing is not a snapshot, so an entry it did not return may still be
        there; the engine deprovisions only what this confirms. One search per `CHUNK`
        anchors, ``(&(filter)(|(anchor=a)(anchor=b)...))``. Only a complete answer proves
        anything: a chunk that failed, was cut short (size limit) or referred elsewhere
        confirms nothing, and after an error no further chunk is tried. Never raises: what
        cannot be proven gone is left out, so the engine holds it."""
        gone: set[str] = set()
        anchors = list(dict.fromkeys(external_ids))
        try:
            spec = self._spec(kind)
            for i in range(0, len(anchors), CHUNK):
                gone |= self._absent(spec, anchors[i : i + CHUNK])
        except ConnectorError as exc:
            log.warning("%s", self._msg(f"confirm_gone {kind}s: {exc}; nothing more confirmed"))
        return gone

    def _absent(self, spec: SearchSpec, chunk: list[str]) -> set[str]:
        """The anchors of `chunk` a complete search of the scope did not return."""
        items = {a: anchor_filter(self.config.anchor, a) for a in chunk}
        wanted = "".join(f for f in items.values() if f)
        if not wanted:
            return set()  # none can be an anchor of this directory: nothing to prove
        found: set[str] = set()
        complete = referred = False
        filter_ = f"(&{spec.filter}(|{wanted}))"
        for event in self._search(spec.base, filter_, spec.scope, [self.config.anchor]):
            if isinstance(event, SearchEntry):
                for name, values in event.attrs.items():
                    if name.lower() == self._anchor and values:
                        found.add(anchor_string(self._anchor, values[0]))
            elif isinstance(event, SearchRef):
                referred = True  # part of the scope lives elsewhere: proves nothing
            elif isinstance(event, SearchDone):
                complete = event.code == 0
        if not complete or referred:
            log.warning(
                "%s", self._msg(f"confirm_gone: lookup of {len(chunk)} anchors incomplete")
            )
            return set()
        return {a for a, f in items.items() if f and a not in found}

    # ---- syncd check ----------------------------------------------------------------------------

    def probe(self) -> dict[str, object]:
        """What `syncd check` shows about this directory: the server, the TLS in use, the
        change feed incremental reads will use, and the controls the reads rely on."""
        root = self._root_dse()
        controls = set(root.get("supportedcontrol", ()))
        url = self.config.url.lower()
        tls = ("ldaps" if url.startswith("ldaps://") else
               "StartTLS" if self.config.start_tls else "none (plain LDAP)")
        return {
            "vendor": (root.get("vendorname") or ["(not said)"])[0],
            "naming contexts": ", ".join(root.get("namingcontexts", ())) or "(none listed)",
            "tls": tls + ("" if self.config.tls_verify else ", certificate NOT verified"),
            "incremental reads": self.mechanism() or "none (full reads only)",
            "paged results": PAGED_RESULTS in controls,
            "content sync (RFC 4533)": SYNC_REQUEST in controls,
            "anchor": self.config.anchor,
        }

    # ---- writing (write/) -------------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            read=True, write=True, patch=True, attribute_names_case_insensitive=True,
            group_members=True,  # a member value is any DN: groups too
        )

    @cached_property
    def _writer(self) -> LdapWriter:
        return LdapWriter(self.name, self.config, self.build_tls)

    def close(self) -> None:
        super().close()
        self._writer.close()

    def create(self, kind: Kind, attrs: Attrs) -> Entry:
        return self._writer.create(kind, attrs)

    def refuses(self, kind: Kind, attrs: Attrs) -> str | None:
        """What a create would certainly be refused for, known without a connection."""
        return self._writer.refuses(kind, attrs)

    def update(self, kind: Kind, external_id: str, changes: Mapping[str, Value]) -> None:
        self._writer.update(kind, external_id, changes)

    def set_members(self, external_id: str, add: Sequence[str], remove: Sequence[str]) -> None:
        self._writer.set_members(external_id, add, remove)

    def set_member_groups(self, external_id: str, add: Sequence[str],
                          remove: Sequence[str]) -> None:
        """Groups as members (``nested = "preserve"``): their DNs in the member attribute."""
        self._writer.set_members(external_id, add, remove, member_kind="group")

    def deactivate(self, kind: Kind, external_id: str) -> None:
        self._writer.deactivate(kind, external_id)

    def delete(self, kind: Kind, external_id: str) -> None:
        self._writer.delete(kind, external_id)
