"""Test support shipped with syncd: an in-memory connector and the connector contract.

`MemoryConnector` (type ``memory``) keeps its directory in a process-wide registry so a test
can build a config file, run the real engine through the CLI, and inspect or fault both sides.
It supports cursors (a change log), so incremental behaviour is testable without a server.
Integration against real servers is still required for every real connector; this double
only makes engine tests fast and exact.

`ConnectorContract` is the contract test: subclass it in a connector's test module and
provide the `connector` fixture (an opened, writable connector on an empty directory).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from syncd.connector import Capabilities, ConnectorConfig
from syncd.errors import Conflict, ConnectorError, Rejected
from syncd.model import Attrs, Batch, Entry, Kind, Value


@dataclass
class Directory:
    """The state of one in-memory directory, plus knobs for fault injection."""

    objects: dict[Kind, dict[str, dict[str, Value]]] = field(
        default_factory=lambda: {"user": {}, "group": {}})
    members: dict[str, set[str]] = field(default_factory=dict)
    #: Nested groups: group -> the groups that are direct members of it.
    group_members: dict[str, set[str]] = field(default_factory=dict)
    log: list[tuple[int, Kind, str, bool]] = field(default_factory=list)  # seq, kind, id, del
    calls: list[tuple[str, Kind, str]] = field(default_factory=list)
    #: op name ("create", "update", ...; "read") -> callable raising the fault, or None.
    faults: dict[str, Callable[[str], None]] = field(default_factory=dict)
    unsupported: dict[str, frozenset[str]] = field(default_factory=dict)
    #: per object, a fake change time (ISO-8601) for the ``newest`` conflict rule
    modified: dict[str, str] = field(default_factory=dict)
    #: Objects a full listing skips although they exist (a listing that shifted while paged).
    hidden: set[str] = field(default_factory=set)
    hidden_detected: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _seq: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def put(self, kind: Kind, attrs: Mapping[str, Value], oid: str | None = None) -> str:
        with self.lock:
            oid = oid or f"{kind[0]}{next(self._ids)}"
            self.objects[kind][oid] = dict(attrs)
            seq = next(self._seq)
            self.log.append((seq, kind, oid, False))
            self.modified[oid] = f"2026-01-01T00:00:00.{seq:06d}+00:00"
            return oid

    def remove(self, kind: Kind, oid: str) -> None:
        with self.lock:
            self.objects[kind].pop(oid, None)
            self.members.pop(oid, None)
            self.group_members.pop(oid, None)
            self.log.append((next(self._seq), kind, oid, True))

    def set_group_members(self, gid: str, members: set[str]) -> None:
        with self.lock:
            self.members[gid] = set(members)
            self.log.append((next(self._seq), "group", gid, False))

    def set_group_groups(self, gid: str, groups: set[str]) -> None:
        """The groups that are direct members of `gid` (nested groups)."""
        with self.lock:
            self.group_members[gid] = set(groups)
            self.log.append((next(self._seq), "group", gid, False))

    def seq(self) -> int:
        return self.log[-1][0] if self.log else 0


DIRECTORIES: dict[str, Directory] = {}


def directory(name: str) -> Directory:
    return DIRECTORIES.setdefault(name, Directory())


class MemoryConfig(ConnectorConfig):
    type: Literal["memory"]
    directory: str
    page_size: int = 100
    incremental: bool = True
    #: advertise a bulk endpoint (create_many) with this many operations per request
    bulk: int = 0
    #: Incremental reads also return what changed in this many log entries before the
    #: cursor: a watermark feed that re-reads its overlap window (SCIM meta.lastModified).
    overlap: int = 0
    #: False: incremental reads never report deletes (a watermark feed such as SCIM's).
    report_deletes: bool = True
    #: False: a target whose groups cannot hold groups (``nested = "preserve"`` refused).
    group_members: bool = True


class MemoryConnector:
    """A faithful-enough directory in memory: pages, cursors, 409s, faults."""

    config_model: ClassVar[type[ConnectorConfig]] = MemoryConfig

    def __init__(self, name: str, config: MemoryConfig) -> None:
        self.name = name
        self.config = config
        self.dir = directory(config.directory)
        self.stats: dict[str, int] = {"requests": 0}

    def _call(self, op: str, kind: Kind, oid: str = "") -> None:
        self.stats["requests"] += 1
        self.dir.calls.append((op, kind, oid))
        fault = self.dir.faults.get(op)
        if fault is not None:
            fault(oid)

    def open(self) -> None:
        self._call("open", "user")

    def close(self) -> None:
        pass

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(write=True, unsupported_attributes=dict(self.dir.unsupported),
                            bulk=self.config.bulk > 0, bulk_max_operations=self.config.bulk,
                            group_members=self.config.group_members)

    def create_many(self, kind: Kind, items: Sequence[Attrs]) -> list[Entry | ConnectorError]:
        self._call("create_many", kind, str(len(items)))
        out: list[Entry | ConnectorError] = []
        for attrs in items:
            try:
                out.append(self.create(kind, attrs))
            except ConnectorError as exc:
                out.append(exc)
        return out

    def _entry(self, kind: Kind, oid: str) -> Entry:
        attrs = self.dir.objects[kind][oid]
        raw = {k.lower(): (v if isinstance(v, tuple) else (str(v).lower() if isinstance(v, bool)
                                                            else str(v),))
               for k, v in attrs.items() if v is not None}
        members = frozenset(self.dir.members.get(oid, set())) if kind == "group" else None
        name = str(attrs.get("userName") or attrs.get("displayName") or oid)
        nested = (frozenset(self.dir.group_members.get(oid, set())) if kind == "group"
                  else None)
        return Entry(kind, oid, raw=raw, attrs=dict(attrs), members=members, name=name,
                     modified=self.dir.modified.get(oid), member_groups=nested)

    def read(self, kind: Kind, cursor: str | None = None,
             attributes: Sequence[str] | None = None) -> Iterator[Batch]:
        self._call("read", kind)
        end = self.dir.seq()
        if cursor is not None and self.config.incremental and cursor.startswith("seq:"):
            since = max(0, int(cursor[4:]) - self.config.overlap)
            changed: dict[str, bool] = {}
            for seq, k, oid, deleted in self.dir.log:
                if seq > since and k == kind:
                    changed[oid] = deleted
            live = [o for o, d in changed.items() if not d and o in self.dir.objects[kind]]
            gone = tuple(o for o, d in changed.items() if d and self.config.report_deletes)
            yield Batch(kind, tuple(self._entry(kind, o) for o in live),
                        cursor=f"seq:{end}", full=False, deleted=gone)
            return
        ids = sorted(o for o in self.dir.objects[kind] if o not in self.dir.hidden)
        # A listing that missed objects and knows it (as the SCIM connector does when
        # totalResults moved while paging) says so; `hidden_detected = False` models one
        # that cannot tell.
        complete = not (self.dir.hidden_detected and self.dir.hidden & set(
            self.dir.objects[kind]))
        size = self.config.page_size
        pages = [ids[i:i + size] for i in range(0, len(ids), size)] or [[]]
        for n, page in enumerate(pages):
            if n:
                self._call("read_page", kind)
            last = n == len(pages) - 1
            yield Batch(kind, tuple(self._entry(kind, o) for o in page),
                        cursor=f"seq:{end}" if last and self.config.incremental else None,
                        complete=complete or not last)

    def confirm_gone(self, kind: Kind, external_ids: Sequence[str]) -> set[str]:
        self._call("confirm_gone", kind, str(len(external_ids)))
        with self.dir.lock:
            return {o for o in external_ids if o not in self.dir.objects[kind]}

    def groups_naming(self, user_ids: Sequence[str],
                      attributes: Sequence[str] | None = None) -> list[Entry]:
        self._call("groups_naming", "group", str(len(user_ids)))
        wanted = set(user_ids)
        with self.dir.lock:
            gids = sorted(g for g in self.dir.objects["group"]
                          if self.dir.members.get(g, set()) & wanted)
            return [self._entry("group", g) for g in gids]

    def find(self, kind: Kind, attribute: str, value: str) -> list[Entry]:
        self._call("find", kind, value)
        with self.dir.lock:
            snapshot = list(self.dir.objects[kind].items())
        return [self._entry(kind, o) for o, a in snapshot
                if str(a.get(attribute, "")).casefold() == value.casefold()]

    def create(self, kind: Kind, attrs: Attrs) -> Entry:
        key = "userName" if kind == "user" else "displayName"
        self._call("create", kind, str(attrs.get(key, "")))
        ident = attrs.get(key)
        with self.dir.lock:
            existing = list(self.dir.objects[kind].values())
        if ident is not None and any(str(a.get(key, "")).casefold() == str(ident).casefold()
                                     for a in existing):
            raise Conflict(f"{kind} {attrs.get(key)!r} exists", connector=self.name)
        drop = self.dir.unsupported.get(kind, frozenset())
        oid = self.dir.put(kind, {k: v for k, v in attrs.items() if k not in drop})
        return self._entry(kind, oid)

    def update(self, kind: Kind, external_id: str, changes: Mapping[str, Value]) -> None:
        self._call("update", kind, external_id)
        if external_id not in self.dir.objects[kind]:
            raise Rejected(f"{kind} {external_id} is gone", connector=self.name)
        attrs = dict(self.dir.objects[kind][external_id])
        for k, v in changes.items():
            if v is None:
                attrs.pop(k, None)
            else:
                attrs[k] = v
        self.dir.put(kind, attrs, external_id)

    def set_members(self, external_id: str, add: Sequence[str], remove: Sequence[str]) -> None:
        self._call("set_members", "group", external_id)
        cur = self.dir.members.get(external_id, set())
        self.dir.set_group_members(external_id, (cur | set(add)) - set(remove))

    def set_member_groups(self, external_id: str, add: Sequence[str],
                          remove: Sequence[str]) -> None:
        """Groups as members of a group (``nested = "preserve"`` on this target)."""
        self._call("set_member_groups", "group", external_id)
        for gid in add:
            if gid not in self.dir.objects["group"]:
                raise Rejected(f"group {gid} does not exist", connector=self.name)
        cur = self.dir.group_members.get(external_id, set())
        self.dir.set_group_groups(external_id, (cur | set(add)) - set(remove))

    def deactivate(self, kind: Kind, external_id: str) -> None:
        self.update(kind, external_id, {"active": False})

    def delete(self, kind: Kind, external_id: str) -> None:
        self._call("delete", kind, external_id)
        self.dir.remove(kind, external_id)


def fail_with(exc: Callable[[], ConnectorError], times: int | None = None,
              only: str | None = None) -> Callable[[str], None]:
    """A fault for `Directory.faults`: raise `exc()` (for object `only`), `times` times."""
    left = [times]

    def fault(oid: str) -> None:
        if only is not None and oid != only:
            return
        if left[0] is not None:
            if left[0] <= 0:
                return
            left[0] -= 1
        raise exc()

    return fault


class ConnectorContract:
    """The behaviour every writable connector must show. Subclass and provide `connector`
    (opened, writable, empty directory) and optionally `user_attrs`."""

    user_attrs: ClassVar[dict[str, Any]] = {"userName": "contract.user", "active": True}

    def test_create_then_find_then_read(self, connector: Any) -> None:
        created = connector.create("user", dict(self.user_attrs))
        assert created.external_id
        found = connector.find("user", "userName", self.user_attrs["userName"])
        assert [e.external_id for e in found] == [created.external_id]
        listed = [e.external_id for b in connector.read("user") for e in b.entries]
        assert created.external_id in listed

    def test_duplicate_create_is_a_conflict(self, connector: Any) -> None:
        import pytest

        connector.create("user", dict(self.user_attrs))
        with pytest.raises(Conflict):
            connector.create("user", dict(self.user_attrs))

    def test_find_escapes_values(self, connector: Any) -> None:
        connector.create("user", dict(self.user_attrs))
        assert connector.find("user", "userName", '*") or (userName pr') == []

    def test_confirm_gone_proves_only_absence(self, connector: Any) -> None:
        """Absence is not proof: only an anchor a direct lookup no longer finds is gone."""
        kept = connector.create("user", dict(self.user_attrs))
        other = dict(self.user_attrs, userName=f"{self.user_attrs['userName']}.2")
        dropped = connector.create("user", other)
        connector.delete("user", dropped.external_id)
        gone = connector.confirm_gone("user", [kept.external_id, dropped.external_id])
        assert gone == {dropped.external_id}

    def test_delete_is_idempotent(self, connector: Any) -> None:
        created = connector.create("user", dict(self.user_attrs))
        connector.delete("user", created.external_id)
        connector.delete("user", created.external_id)
