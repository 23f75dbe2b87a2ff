"""Canonical, immutable data the engine passes around.

Connectors hand the engine `Entry` values; the mapping turns a source entry's raw attributes
into canonical attributes (flattened SCIM paths such as ``name.givenName`` or ``emails.work``).
Everything here is a frozen dataclass so the planner can stay a pure function of its inputs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

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


def canonical_json(attrs: Attrs) -> str:
    """Stable JSON for hashing and storage: sorted keys, tuples as lists."""
    return json.dumps(
        {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(attrs.items())},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )


def attrs_from_json(text: str | None) -> dict[str, Value]:
    if not text:
        return {}
    data = json.loads(text)
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}


def digest(attrs: Attrs, members: frozenset[str] | None = None) -> str:
    """Hash of canonical values: a cheap equality test against the stored base."""
    h = hashlib.blake2b(canonical_json(attrs).encode(), digest_size=16)
    if members is not None:
        for m in sorted(members):
            h.update(b"\0" + m.encode())
    return h.hexdigest()
