"""The ``scim_inbox`` connector type: the directory SCIM clients provisioned into ``syncd
serve`` (`syncd.state.inbox`), read as a *source* like any other, so flows from it get the
plan, the safety check, the journal, ``--dry-run`` and ``explain``.

It lives beside its tables rather than in ``syncd_connectors`` because it reads the state
store, which connectors cannot import (``tests/unit/test_layers.py``); it is still found only
through the ``syncd.connectors`` entry point (pyproject.toml). It declares
``uses_state_store``: the config loader then hands it the store's URL (``state_url``, not
written in the config file), the same `StateURL` every command opens.

Incremental reads follow the directory's change sequence: the cursor ``seq:N`` means "every
change up to N is read"; a read returns the changed resources and the tombstones after N as
deletes (RFC 7644 gives a DELETE no undo, so the delete is certain: absence *is* proof here).
A full read lists the live resources and carries the sequence number taken before the
listing began, so a change made during it is read again next time, never missed.

Raw attributes are the SCIM resource flattened the way the ``scim`` connector's are: lower-
cased paths (``username``, ``name.givenname``, ``emails.work``, ``enterprise.department``
and the enterprise URN path, ``active`` as ``true``/``false``), plus ``id``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

from pydantic import Field

from syncd.connector import Capabilities, ConnectorConfig
from syncd.errors import Fatal
from syncd.model import Attrs, Batch, Entry, Kind, Value
from syncd.state.inbox import Inbox, InboxNotFound, Record
from syncd.state.inbox_prune import pruned_upto

log = logging.getLogger("syncd.connectors.scim_inbox")

URN_ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user"
CURSOR_PREFIX = "seq:"
#: Canonical attributes `find` answers from an index; others are matched by a walk.
_INDEXED = {"id": "id", "externalid": "external_id", "username": "name_key",
            "displayname": "name_key"}


class InboxConfig(ConnectorConfig):
    #: Filled by the config loader (`uses_state_store`), never written in the file.
    state_url: str | None = Field(default=None, exclude=True)


def flatten(body: Mapping[str, Any], rid: str) -> dict[str, tuple[str, ...]]:
    """`Entry.raw` of a received resource (see the module docstring)."""
    raw: dict[str, tuple[str, ...]] = {"id": (rid,)}

    def put(key: str, values: list[str]) -> None:
        if values:
            raw[key] = raw.get(key, ()) + tuple(values)

    for name, value in body.items():
        low = name.lower()
        if low in ("schemas", "meta", "members", "password"):
            continue
        if low == URN_ENTERPRISE and isinstance(value, Mapping):
            for sub, v in value.items():
                vals = _texts(v.get("value") if isinstance(v, Mapping) else v)
                put(f"enterprise.{sub.lower()}", vals)
                put(f"{URN_ENTERPRISE}:{sub.lower()}", vals)
        elif isinstance(value, Mapping):
            for sub, v in value.items():
                put(f"{low}.{sub.lower()}", _texts(v))
        elif isinstance(value, list):
            for item in value:
                if not isinstance(item, Mapping):
                    put(low, _texts(item))
                    continue
                kind = str(item.get("type") or "").lower()
                if "value" in item:
                    vals = _texts(item.get("value"))
                    put(low, vals)
                    if kind:
                        put(f"{low}.{kind}", vals)
                    if item.get("primary") is True:
                        put(f"{low}.primary", vals)
                else:  # addresses: one canonical attribute per sub-attribute and type
                    for sub, v in item.items():
                        if sub not in ("type", "primary"):
                            put(f"{low}.{kind}.{sub.lower()}" if kind else
                                f"{low}.{sub.lower()}", _texts(v))
        else:
            put(low, _texts(value))
    return raw


def _texts(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, list):
        return [t for v in value for t in _texts(v)]
    if isinstance(value, Mapping):
        return _texts(value.get("value"))
    return [str(value)]


class InboxConnector:
    """A read-only source over one received directory (named after the connector)."""

    config_model: ClassVar[type[ConnectorConfig]] = InboxConfig
    uses_state_store: ClassVar[bool] = True

    def __init__(self, name: str, config: InboxConfig) -> None:
        self.name = name
        self.config = config
        self._inbox: Inbox | None = None
        self._store: Any = None

    # -- lifecycle ------------------------------------------------------------------------
    def open(self) -> None:
        if self._inbox is not None:
            return
        if not self.config.state_url:
            raise Fatal(f"connector {self.name!r}: no state store URL (a scim_inbox connector "
                        "is built by the config loader, which hands it over)")
        from syncd.state.store import Store

        self._store = Store(self.config.state_url)
        assert self._store.engine is not None
        self._inbox = Inbox(self._store.engine, self.name)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
        self._store = self._inbox = None

    @property
    def inbox(self) -> Inbox:
        self.open()
        assert self._inbox is not None
        return self._inbox

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(read=True, write=False)

    # -- reading --------------------------------------------------------------------------
    def _entry(self, rec: Record) -> Entry:
        members = groups = None
        if rec.kind == "group" and rec.members is not None:
            members = frozenset(m.value for m in rec.members if m.type != "Group")
            groups = frozenset(m.value for m in rec.members if m.type == "Group")
        return Entry(rec.kind, rec.id, raw=flatten(rec.body, rec.id), members=members,
                     member_groups=groups, name=rec.name,
                     modified=rec.modified.isoformat().replace("+00:00", "Z"))

    def read(self, kind: Kind, cursor: str | None = None,
             attributes: Sequence[str] | None = None) -> Iterator[Batch]:
        inbox = self.inbox
        since = parse_cursor(cursor)
        if cursor is not None and since is None:
            log.warning("%s: cursor %r is not one of ours: reading %ss in full",
                        self.name, cursor, kind)
        if since is not None and since < pruned_upto(inbox.engine, self.name, kind):
            log.info("%s: cursor %s is older than the tombstones pruned since: reading %ss "
                     "in full", self.name, cursor, kind)
            since = None
        head = inbox.head()  # before reading: every change up to it is committed
        if since is None:
            pages = (tuple(self._entry(r) for r in page) for page in inbox.all(kind))
            mark = f"{CURSOR_PREFIX}{head}"
            yield from _last_carries(pages, lambda es: Batch(kind, es),
                                     lambda es: Batch(kind, es, cursor=mark))
            return
        last = max(since, head)
        pending: Batch | None = None
        for page in inbox.changes(kind, since):
            if pending is not None:
                yield pending
            last = max(last, page[-1].seq)
            pending = Batch(kind, tuple(self._entry(r) for r in page if not r.deleted),
                            full=False, deleted=tuple(r.id for r in page if r.deleted))
        if pending is None:
            pending = Batch(kind, (), full=False)
        yield Batch(kind, pending.entries, cursor=f"{CURSOR_PREFIX}{last}", full=False,
                    deleted=pending.deleted)

    def find(self, kind: Kind, attribute: str, value: str) -> list[Entry]:
        column = _INDEXED.get(attribute.lower())
        if column == "name_key" and (attribute.lower() == "username") != (kind == "user"):
            column = None
        if column is not None:
            key = value.lower() if column == "name_key" else value
            return [self._entry(r) for r in self.inbox.find(kind, column, key)]
        low = attribute.lower()
        return [self._entry(r) for page in self.inbox.all(kind) for r in page
                if value in flatten(r.body, r.id).get(low, ())]

    def confirm_gone(self, kind: Kind, external_ids: Sequence[str]) -> set[str]:
        gone = set()
        for rid in external_ids:
            try:
                self.inbox.get(kind, rid, members=False)
            except InboxNotFound:
                gone.add(rid)
        return gone

    def groups_naming(self, user_ids: Sequence[str],
                      attributes: Sequence[str] | None = None) -> list[Entry]:
        return [self._entry(r) for r in self.inbox.groups_naming(user_ids)]

    # -- a source only --------------------------------------------------------------------
    def _read_only(self) -> Fatal:
        return Fatal(f"connector {self.name!r} (scim_inbox) is a source only: SCIM clients "
                     "write it through `syncd serve`")

    def create(self, kind: Kind, attrs: Attrs) -> Entry:
        raise self._read_only()

    def update(self, kind: Kind, external_id: str, changes: Mapping[str, Value]) -> None:
        raise self._read_only()

    def set_members(self, external_id: str, add: Sequence[str], remove: Sequence[str]) -> None:
        raise self._read_only()

    def deactivate(self, kind: Kind, external_id: str) -> None:
        raise self._read_only()

    def delete(self, kind: Kind, external_id: str) -> None:
        raise self._read_only()


def parse_cursor(cursor: str | None) -> int | None:
    """The change sequence a cursor of this connector stands at, or None (no cursor, or
    one that is not ours: read in full)."""
    if cursor is None or not cursor.startswith(CURSOR_PREFIX):
        return None
    try:
        return int(cursor[len(CURSOR_PREFIX):])
    except ValueError:
        return None


def _last_carries(pages: Iterator[tuple[Entry, ...]],
                  middle: Callable[[tuple[Entry, ...]], Batch],
                  final: Callable[[tuple[Entry, ...]], Batch]) -> Iterator[Batch]:
    """The pages as batches, the last one (an empty one when there are none) through
    `final`: streamed, one page of look-ahead."""
    previous: tuple[Entry, ...] | None = None
    for page in pages:
        if previous is not None:
            yield middle(previous)
        previous = page
    yield final(previous or ())
