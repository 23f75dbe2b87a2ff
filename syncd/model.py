"""Canonical, immutable data the engine passes around.

Connectors hand the engine `Entry` values; the mapping turns a source entry's raw attributes
into canonical attributes (flattened SCIM paths such as ``name.givenName`` or ``emails.work``).
Everything here is a frozen dataclass so the planner can stay a pure function of its inputs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["user", "group"]
KINDS: tuple[Kind, ...] = ("user", "group")

#: A canonical or raw attribute value. ``None`` means "absent"; tuples are multi-valued.
Value = str | bool | int | tuple[str, ...] | None

#: Raw attributes as a connector reads them: lower-cased names to tuples of strings.
RawAttrs = Mapping[str, tuple[str, ...]]

#: Canonical attributes: SCIM paths to values.
Attrs = Mapping[str, Value]


@dataclass(frozen=True, order=True)
class Ref:
    """Where an entry lives: the external id is the connector's stable anchor."""

    connector: str
    kind: Kind
    external_id: str

    def __str__(self) -> str:
        return f"{self.connector}:{self.kind}:{self.external_id}"


@dataclass(frozen=True)
class Entry:
    """One user or group as a connector sees it.

    Sources fill `raw` (what was read, for mapping and scope); targets fill `attrs` (canonical).
    `members` is only meaningful for groups: the external ids of member users *on the same
    connector*, already resolved from DNs or SCIM member values by the connector.
    `member_groups` (groups only, None: the connector does not tell) are the external ids of
    the groups that are *direct* members of this one (nested groups); the engine flattens or
    ignores them per flow (`syncd.plan.nesting`).
    `name` is a human label (DN, userName) for plans and logs, never used for matching.
    """

    kind: Kind
    external_id: str
    raw: RawAttrs = field(default_factory=dict)
    attrs: Attrs = field(default_factory=dict)
    members: frozenset[str] | None = None
    name: str = ""
    #: Incremental member changes (Graph ``members@delta``) when the full set is unknown:
    #: the engine applies them to the members recorded in the link's base.
    members_added: frozenset[str] | None = None
    members_removed: frozenset[str] | None = None
    #: Change timestamp as ISO-8601 UTC (modifyTimestamp, meta.lastModified), when known;
    #: used by the ``newest`` conflict rule in two-way flows.
    modified: str | None = None
    member_groups: frozenset[str] | None = None
    #: Incremental changes of `member_groups` (Graph ``members@delta`` entries of type
    #: group), alongside `members_added`/`members_removed`.
    member_groups_added: frozenset[str] | None = None
    member_groups_removed: frozenset[str] | None = None


@dataclass(frozen=True)
class Batch:
    """One page of a read. The last page of a read carries the new cursor.

    `complete` is False when the connector knows the listing is partial (size limit hit,
    referral not followed); a read that raises is incomplete too. Incomplete reads never lead
    to deprovisioning.
    """

    kind: Kind
    entries: tuple[Entry, ...]
    cursor: str | None = None
    complete: bool = True
    #: True for pages of a full listing; False for an incremental (cursor-based) read.
    full: bool = True
    #: Anchors deleted at the source (incremental reads only). Unknown anchors (outside the
    #: flow's scope, never linked) are ignored by the engine.
    deleted: tuple[str, ...] = ()


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(attrs: Attrs) -> str:
    """Stable JSON for hashing and storage: sorted keys, tuples as lists."""
    if isinstance(attrs, StoredAttrs):
        return attrs.text  # already canonical: stored by this function
    return _CANONICAL.encode(
        {k: list(v) if isinstance(v, tuple) else v for k, v in attrs.items()})


def attrs_from_json(text: str | None) -> dict[str, Value]:
    if not text:
        return {}
    data = json.loads(text)
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}


class StoredAttrs(Mapping[str, Value]):
    """Attributes as the store keeps them (canonical JSON), decoded on first access.

    A full reconcile loads every link, but only the links whose digest differs from the
    source (or that are not active) ever look at their base: the rest never pay for
    decoding it. Read-only and equal to the dict it decodes to.
    """

    __slots__ = ("_data", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._data: dict[str, Value] | None = None

    @classmethod
    def of(cls, attrs: Attrs) -> StoredAttrs:
        """Encode once: the digest and the store row then reuse the same canonical text."""
        out = cls(canonical_json(attrs))
        out._data = dict(attrs)
        return out

    def _decoded(self) -> dict[str, Value]:
        if self._data is None:
            self._data = attrs_from_json(self.text)
        return self._data

    def __getitem__(self, key: str) -> Value:
        return self._decoded()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._decoded().get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._decoded()

    def __iter__(self) -> Iterator[str]:
        return iter(self._decoded())

    def __len__(self) -> int:
        return len(self._decoded())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, StoredAttrs):
            return self._decoded() == other._decoded()
        if isinstance(other, Mapping):
            return self._decoded() == dict(other.items())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable-looking, like dict

    def __repr__(self) -> str:
        return repr(self._decoded())


def digest(attrs: Attrs, members: frozenset[str] | None = None) -> str:
    """Hash of canonical values: a cheap equality test against the stored base."""
    h = hashlib.blake2b(canonical_json(attrs).encode(), digest_size=16)
    if members is not None:
        for m in sorted(members):
            h.update(b"\0" + m.encode())
    return h.hexdigest()
