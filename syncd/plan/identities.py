"""The identifiers of an entry that must be unique among the entries of one plan, and how a
collision names an entry. Apart from the planner (`syncd.plan.push`) because a streamed read
also records what each page planned (`syncd.cycle.stream`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from syncd.model import Attrs, Kind
from syncd.plan.compare import match_value


def label(source_id: str, attrs: Attrs, name: str = "") -> str:
    """How a collision names an entry: its name and its anchor."""
    shown = name or str(attrs.get("userName") or attrs.get("displayName") or "")
    return f"{shown} ({source_id})" if shown and shown != source_id else source_id


class Planned(Protocol):
    """The identifiers earlier pages of a streamed read planned: hash((key, casefolded
    value)) -> source id. A dict, or past 100k entries a `syncd.spill.SpillMap` (a million
    users' identifiers as a dict were ~176 MB)."""

    def get(self, key: int, default: None = None, /) -> str | None: ...


#: Identifiers SCIM targets compare case-insensitively and keep unique: two source entries
#: that differ only in their case are one account there (caseExact=false, RFC 7643).
CASE_INSENSITIVE_IDS = ("userName", "emails")


def identities(kind: Kind, match: Sequence[str], attrs: Attrs) -> list[tuple[str, str]]:
    """The identifiers of an entry that must be unique among the entries of one plan: its
    match keys, and for users userName and every email, compared case-insensitively."""
    out = []
    for key, name in _identity_keys(kind, match, attrs):
        v = attrs.get(key)
        for one in (v if isinstance(v, tuple) else (v,)):
            mv = match_value(one)
            if mv is not None:
                out.append((name, mv))
    return out


#: Which attributes are identifiers, and under which name, per shape of the mapped entry
#: (kind, match keys, attribute paths): the entries of one flow share a few shapes, and
#: working it out per entry (a set, a split per path, a sort) was half of `identities`, called
#: for every create of an initial sync (issue 17: dry run of 20,000 creates).
_IDENTITY_KEYS: dict[tuple[str, tuple[str, ...], tuple[str, ...]], tuple[tuple[str, str], ...]]
_IDENTITY_KEYS = {}


def _identity_keys(kind: Kind, match: Sequence[str],
                   attrs: Attrs) -> tuple[tuple[str, str], ...]:
    shape = (kind, tuple(match), tuple(attrs))
    found = _IDENTITY_KEYS.get(shape)
    if found is not None:
        return found
    keys = set(match)
    if kind == "user":
        keys |= {p for p in attrs if p.split(".")[0] in CASE_INSENSITIVE_IDS}
    found = tuple((k, k.split(".")[0] if k.startswith("emails") else k) for k in sorted(keys))
    if len(_IDENTITY_KEYS) < 4096:  # bounded: a source of ever-new shapes stops caching
        _IDENTITY_KEYS[shape] = found
    return found
