"""Reference attributes, pure: an entry's manager (or any attribute mapped with
``reference = "user" | "group"``) names another object the way the source spells it (an LDAP
DN, a Graph or SCIM id); the target wants *its* id of that object. Here the names become
target ids through the links, and the rows the store keeps (`RefRow`) become the updates that
fill or clear a reference when the referenced object is linked or unlinked later.

The rules, so that an incremental cycle equals a full one:

- the planner compares resolved values (target ids) with the base, which holds target ids: a
  cycle after a quiet one plans nothing;
- a name that resolves to no linked object gives an empty value, never a guess: the object may
  be out of scope, not created yet, or named ambiguously. Its row stays *pending* (no target
  id); once the object is linked, `refill` plans the update, whether or not the entry that
  names it is read again;
- once the referenced object is deprovisioned or deleted, `refill` clears the reference (and
  the row is pending again: it is filled if the object comes back).

No I/O: the caller looks up the names (the source connector) and the links (the store).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from syncd.mapping.attributes import Mapping as AttrMapping
from syncd.model import Kind, Value
from syncd.plan.push import Item, same
from syncd.plan.value import Change, base_name
from syncd.state.records import Link, RefRow

#: Notes about references listed one by one in a plan; past this they are counted.
NOTES_MAX = 20


def reference_paths(mapping: AttrMapping) -> dict[str, Kind]:
    """Canonical path -> the kind of object it references, for the rules that say so."""
    return {r.path: r.reference for r in mapping.rules if r.reference is not None}


def spellings(value: Value) -> tuple[str, ...]:
    """The names a mapped reference value holds (one, or several for a multi-valued one)."""
    if value is None or isinstance(value, bool):
        return ()
    if isinstance(value, tuple):
        return tuple(v for v in value if v)
    return (str(value),) if str(value) else ()


@dataclass(frozen=True)
class Lookup:
    """What the caller found out about the names: the source anchors they stand for and the
    target ids of the linked objects."""

    #: (kind, name as the source spells it) -> source anchor; None: it names no object in
    #: scope (or several: never a guess). Names missing here were not looked up: pending.
    anchors: Mapping[tuple[Kind, str], str | None] = field(default_factory=dict)
    #: (kind, source anchor) -> target id of its *active* link.
    targets: Mapping[tuple[Kind, str], str] = field(default_factory=dict)
    #: (kind, source anchor) -> a human name, for notes.
    names: Mapping[tuple[Kind, str], str] = field(default_factory=dict)


@dataclass
class Resolved:
    items: dict[str, Item]
    rows: list[RefRow]
    #: (entry name, path, what it waits for) of each value left empty.
    waiting: list[tuple[str, str, str]]


def resolve(kind: Kind, items: Mapping[str, Item], paths: Mapping[str, Kind],
            lookup: Lookup) -> Resolved:
    """Items whose reference paths hold target ids (or nothing), the rows to remember, and
    what is waiting. Items without a reference value are returned unchanged."""
    out: dict[str, Item] = {}
    rows: list[RefRow] = []
    waiting: list[tuple[str, str, str]] = []
    for sid, item in items.items():
        changed: dict[str, Value] = {}
        for path, ref_kind in paths.items():
            if path not in item.attrs:
                continue
            value = item.attrs[path]
            names = spellings(value)
            got: list[str] = []
            for name in names:
                anchor = lookup.anchors.get((ref_kind, name))
                tid = lookup.targets.get((ref_kind, anchor)) if anchor is not None else None
                rows.append(RefRow(kind, sid, path, name, ref_kind, anchor, tid))
                if tid is not None:
                    got.append(tid)
                    continue
                if anchor is None and (ref_kind, name) in lookup.anchors:
                    why = (f"{name!r} names no {ref_kind} in scope (none, or several): "
                           f"pending until it does")
                else:
                    shown = lookup.names.get((ref_kind, anchor), name) if anchor else name
                    why = f"pending until {shown} is linked"
                waiting.append((item.name, path, why))
            changed[path] = _shape(value, got)
        out[sid] = replace(item, attrs={**item.attrs, **changed}) if changed else item
    return Resolved(out, rows, waiting)


def _shape(value: Value, got: list[str]) -> Value:
    """Resolved values in the shape the rule gave: one value, or a tuple for a multi one."""
    if isinstance(value, tuple):
        return tuple(got)
    return got[0] if got else None


def notes(waiting: Sequence[tuple[str, str, str]]) -> list[str]:
    """Plan notes for references left empty: "pending until X is linked", or why never."""
    out = [f"{who}: {path} is empty, {what}"
           for who, path, what in waiting[:NOTES_MAX]]
    if len(waiting) > NOTES_MAX:
        out.append(f"… and {len(waiting) - NOTES_MAX} more references pending")
    return out


def refill(rows: Iterable[RefRow], links: Mapping[tuple[Kind, str], Link],
           targets: Mapping[tuple[Kind, str], str],
           names: Mapping[tuple[Kind, str], str] | None = None
           ) -> tuple[list[Change], list[RefRow]]:
    """Updates for entries whose references now resolve differently from what their link's
    base holds (an object linked, deprovisioned or deleted since), and the rows as they are
    once those updates are applied.

    `rows` must hold *every* row of each (entry, path) it names (a multi-valued reference is
    rewritten whole); `links`: the entries' links; `targets`: (kind, anchor) -> target id of
    the active links among the referenced objects. Entries without an active link are left
    alone (an entry not created yet gets its references with its create)."""
    names = names or {}
    groups: dict[tuple[Kind, str, str], list[RefRow]] = {}
    for r in rows:
        groups.setdefault((r.kind, r.source_id, r.path), []).append(r)
    changes: dict[tuple[Kind, str], Change] = {}
    new_rows: list[RefRow] = []
    for (kind, sid, path), group in sorted(groups.items()):
        link = links.get((kind, sid))
        if link is None or link.status != "active":
            continue
        group.sort(key=lambda r: r.value)
        now = [replace(r, target_id=targets.get((r.ref_kind, r.ref_source_id))
                       if r.ref_source_id is not None else None) for r in group]
        new_rows += [r for r, old in zip(now, group, strict=True) if r != old]
        got = [r.target_id for r in now if r.target_id is not None]
        old_value = link.base.get(path)
        value: Value = tuple(got) if isinstance(old_value, tuple) or len(group) > 1 else (
            got[0] if got else None)
        if same(value, old_value):
            continue
        c = changes.get((kind, sid))
        base = dict(c.base if c is not None else link.base)
        attrs = dict(c.attrs) if c is not None else {}
        before = dict(c.before) if c is not None else {}
        attrs[path], before[path], base[path] = value, old_value, value
        who = ", ".join(names.get((r.ref_kind, r.ref_source_id or ""), r.value) for r in group)
        reason = (f"reference {path}: {who} linked" if got else
                  f"reference {path}: {who} no longer linked")
        name = base_name(link.base, kind, sid)
        changes[(kind, sid)] = Change("update", kind, sid, name, link.target_id, attrs=attrs,
                                      before=before, base=base, reason=reason)
    return list(changes.values()), new_rows
