"""Adding an entry and learning its anchor: the lean add with the Post-Read control, or
ldap3's add and a read-back.

Why apart from `writer.py`: how an add is sent and how the created entry comes back depends
on the server and the config, and it is the hot path of an initial sync into a directory
(one add per entry). Three ways, the first that applies:

- ``decoder = "lean"`` (default) and the server lists the Post-Read control (RFC 4527,
  1.3.6.1.1.13.2) in its root DSE ``supportedControl``: one hand-encoded AddRequest that
  asks for the entry as it is after the add; the AddResponse carries it (`wire.writes`). One
  round trip, no ASN.1 library on the way;
- ``lean`` without the control (not offered, or the server sent none back): the lean add,
  then a base search for the entry (the read-back);
- ``decoder = "stock"``: ldap3's add, then the read-back — the escape hatch should a server
  trip the lean path, as for reads.

Either way the created entry is decoded by `wire.decode` exactly as a read decodes it, and
an entry whose anchor cannot be read is a `Rejected` change: its link cannot be written.
The root DSE is read once per session (per target per run), on the first create.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import ldap3

from syncd.errors import Rejected
from syncd.model import Entry, Kind
from syncd_connectors.ldap.wire.ber import Malformed
from syncd_connectors.ldap.wire.decode import Plan, Row, make_entry, row_from_event
from syncd_connectors.ldap.wire.events import SearchEntry
from syncd_connectors.ldap.wire.writes import (
    ADD_RESPONSE,
    POST_READ,
    add_request,
    post_read,
    post_read_row,
)
from syncd_connectors.ldap.write.session import WriteSession, log

#: What a create reads of the new entry: all user attributes, the anchor, the timestamp.
_READ = ("*", "modifyTimestamp")


class Creating(WriteSession):
    """`_add`: one entry added, the created entry returned (see the module docstring)."""

    #: Whether the server offers Post-Read: None until the first create asks.
    _post_read: bool | None = None
    _post_read_lock = threading.Lock()  # one root DSE read, even with 8 apply threads
    #: One decoding plan per kind, reused (its name caches fill once).
    _plans: dict[Kind, Plan] | None = None

    def offers_post_read(self) -> bool:
        """Does the server list the Post-Read control in its root DSE? Asked once; a root
        DSE this identity may not read counts as "no" (the add then reads the entry back);
        a server that cannot be reached fails the create as any operation would."""
        if self._post_read is None:
            with self._post_read_lock:
                if self._post_read is None:
                    try:
                        found = self._search("", "(objectClass=*)", ldap3.BASE,
                                             ["supportedControl"])
                    except Rejected as exc:  # a root DSE this identity may not read
                        log.info("%s", self._msg(f"root DSE unreadable ({exc}): adds are "
                                                 "read back"))
                        found = []
                    controls = {v.decode("utf-8", "replace")
                                for _dn, attrs in found for name, vs in attrs.items()
                                if name.lower() == "supportedcontrol" for v in vs}
                    self._post_read = POST_READ in controls
        return self._post_read

    def _add(self, kind: Kind, dn: str, classes: Sequence[str],
             values: dict[str, list[str | bytes]]) -> Entry:
        """Add the entry at `dn`; the created entry as a read would return it."""
        plan = self._plan(kind)
        if self.config.decoder == "stock":
            code = self._run("create", dn, lambda c: c.add(dn, list(classes), values))
            self._expect("create", dn, code, stale=False)
            return self._created(kind, dn, self._read_back(dn, plan))
        wanted = self.offers_post_read()
        # objectClass last, as ldap3 sends it (the request is then the bytes it would send)
        attributes: dict[str, Sequence[str | bytes]] = {
            **values, "objectClass": list(dict.fromkeys(classes))}
        controls = [post_read([*_READ, self.config.anchor])] if wanted else []
        done = self._lean("create", dn, add_request(dn, attributes), ADD_RESPONSE, controls)
        self._expect("create", dn, done.code, stale=False)
        try:
            row = post_read_row(done, plan) if wanted else None
        except Malformed as exc:
            log.warning("%s", self._msg(f"create {dn}: undecodable Post-Read entry ({exc}); "
                                        "reading it back"))
            row = None
        return self._created(kind, dn, row if row is not None else self._read_back(dn, plan))

    def _plan(self, kind: Kind) -> Plan:
        if self._plans is None:
            self._plans = {}
        plan = self._plans.get(kind)
        if plan is None:
            plan = self._plans[kind] = Plan(kind, None, frozenset(self._binary), self._anchor,
                                            self._member)
        return plan

    def close(self) -> None:
        super().close()
        self._post_read = None  # the next session may meet another server

    def _read_back(self, dn: str, plan: Plan) -> Row | None:
        """The created entry by a base search (decoded like a read: `wire/decode.py`)."""
        found = self._search(dn, "(objectClass=*)", ldap3.BASE,
                             [*_READ, self.config.anchor])
        return row_from_event(SearchEntry(found[0][0], found[0][1]), plan) if found else None

    def _created(self, kind: Kind, dn: str, row: Row | None) -> Entry:
        name, anchor, raw, attrs, _members, modified = row or (dn, None, {}, {}, None, None)
        if anchor is None:
            raise self._reject(f"created {dn} but cannot read its {self.config.anchor}")
        self._dns[(kind, anchor)] = name
        members = frozenset[str]() if kind == "group" else None
        return make_entry(kind, anchor, raw, attrs, name, modified, members)
