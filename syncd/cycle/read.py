"""Reading for a cycle: stream the source into scoped, mapped items; find match candidates.

Only mapped values are kept (never raw pages), so memory grows with the number of in-scope
entries times the mapped attributes, not with what the server sends.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from syncd.config.flows import KindFlow
from syncd.connector import Connector
from syncd.errors import Fatal, Rejected, Retriable
from syncd.mapping.conditions import ConditionError
from syncd.mapping.rules import MappingError
from syncd.model import Batch, Entry, Kind, RawAttrs, Value
from syncd.plan.push import Item, label, match_value
from syncd.plan.value import Hold
from syncd.state.records import Link
from syncd.state.store import Store

log = logging.getLogger("syncd.read")

#: Up to this many unlinked entries are matched with one `find` per entry; above it the
#: target is listed once and matched in memory (initial syncs).
FIND_LIMIT = 50


@dataclass
class SourceRead:
    items: dict[str, Item] = field(default_factory=dict)
    held: list[Hold] = field(default_factory=list)
    complete: bool = True
    full: bool = True
    seen: int = 0
    #: Deleted at the source (incremental) or read but out of scope.
    gone: set[str] = field(default_factory=set)
    #: Of `gone`, those read but out of scope -> the scope condition they fail.
    left_scope: dict[str, str] = field(default_factory=dict)
    cursor: str | None = None
    error: str | None = None
    error_class: type[Exception] | None = None
    #: Linked entries a complete full listing did not return and the source did not confirm
    #: gone: the listing missed objects, so its cursor is not kept (the next cycle reads in
    #: full again instead of trusting a feed that starts after what was missed).
    missed: int = 0
    #: Groups: each group read -> its direct (member users, member groups), whatever the
    #: flow's scope and mapping made of it (nested groups walk through every group read).
    edges: dict[str, tuple[frozenset[str], frozenset[str]]] = field(default_factory=dict)
    #: Groups read as member changes only (Graph members@delta): (users added, removed,
    #: groups added, removed).
    edge_deltas: dict[str, tuple[frozenset[str], ...]] = field(default_factory=dict)
    #: Said in the plan (nested group cycles).
    notes: list[str] = field(default_factory=list)

    @property
    def trusted(self) -> bool:
        """Complete, without error, and nothing missed: its cursor may be stored."""
        return self.complete and self.error is None and not self.missed


def read_source(source: Connector, kf: KindFlow, cursor: str | None) -> SourceRead:
    """The whole read in memory (incremental cycles, dry runs, two-way flows)."""
    out = SourceRead(full=cursor is None)
    try:
        for batch in source.read(kf.kind, cursor, _attributes(kf)):
            _take(kf, batch, out)
    except (Fatal, Retriable) as exc:
        _failed(source, kf, exc, out)
    # A deleted anchor that re-appeared later in the same feed is not gone.
    out.gone -= set(out.items)
    return out


@dataclass
class TargetRead:
    """A two-way flow's read of its target, whole (entries as the target holds them, not
    mapped): the cycle merges them and `syncd.cycle.catch_up` checks them for echoes."""

    entries: dict[str, Entry] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    full: bool = True
    complete: bool = True
    cursor: str | None = None
    error: str | None = None
    #: Linked objects the full listing missed and the target did not confirm gone.
    missed: int = 0

    @property
    def trusted(self) -> bool:
        return self.complete and self.error is None and not self.missed


def read_target(target: Connector, kind: Kind, cursor: str | None) -> TargetRead:
    out = TargetRead(full=cursor is None)
    try:
        for batch in target.read(kind, cursor, None):
            out.complete = out.complete and batch.complete
            out.full = batch.full
            out.gone.update(batch.deleted)
            if batch.cursor is not None:
                out.cursor = batch.cursor
            for e in batch.entries:
                out.entries[e.external_id] = e
    except (Fatal, Retriable) as exc:
        out.complete = False
        out.error = f"reading {kind}s from {target.name} failed: {exc}"
        log.warning(out.error)
    out.gone -= set(out.entries)
    return out


def entering(users: SourceRead | None, links: Mapping[str, Link]) -> set[str]:
    """Users an incremental read brings (back) into scope: read, and not linked as active."""
    if users is None or users.full:
        return set()
    return {sid for sid in users.items
            if (lk := links.get(sid)) is None or lk.status != "active"}


def add_groups_naming(source: Connector, kf: KindFlow, users: set[str],
                      out: SourceRead) -> None:
    """Add to an incremental group read the groups that name `users` (see `entering`).

    Incremental equals full: a user back in scope, or recreated after a delete, was left
    out of (or removed from) its target groups while the groups themselves did not change,
    so the group feed will never return them; a full read would. What the feed returned is
    newer and wins; a failed lookup makes the read untrusted, so its cursor is not kept."""
    naming = source.groups_naming  # type: ignore[attr-defined]
    extra = SourceRead(full=False)
    try:
        entries = naming(sorted(users), _attributes(kf))
    except (Fatal, Retriable) as exc:
        _failed(source, kf, exc, out)
        return
    _take(kf, Batch(kf.kind, tuple(entries), full=False), extra)
    held = {h.source_id for h in out.held}
    for sid, it in extra.items.items():
        if sid not in out.items and sid not in out.gone and sid not in held:
            out.items[sid] = it
    for sid, direct in extra.edges.items():
        if sid not in out.edges and sid not in out.gone:
            out.edges[sid] = direct
    out.held += [h for h in extra.held if h.source_id not in out.items]


class PagedRead:
    """A full read delivered in pages of about `size` entries, each its own `SourceRead`.

    Nothing is kept between pages, so reading 100k entries costs the memory of one page and
    the caller can plan and apply a page while the next is read. The read's outcome
    (`complete`, `full`, `cursor`, `error`, `seen`) is known once `pages()` is exhausted.
    """

    def __init__(self, source: Connector, kf: KindFlow, cursor: str | None, size: int) -> None:
        self.source, self.kf, self.start, self.size = source, kf, cursor, size
        self.outcome = SourceRead(full=cursor is None)

    def pages(self) -> Iterator[SourceRead]:
        page = SourceRead(full=self.outcome.full)
        try:
            for batch in self.source.read(self.kf.kind, self.start, _attributes(self.kf)):
                before = page.seen
                _take(self.kf, batch, page)
                self._note(page, page.seen - before)
                if len(page.items) + len(page.held) + len(page.gone) >= self.size:
                    yield page
                    page = SourceRead(full=page.full)
        except (Fatal, Retriable) as exc:
            _failed(self.source, self.kf, exc, self.outcome)
        yield page

    def _note(self, page: SourceRead, seen: int) -> None:
        o = self.outcome
        o.complete = o.complete and page.complete
        o.full = page.full
        o.cursor = page.cursor if page.cursor is not None else o.cursor
        o.seen += seen


def _attributes(kf: KindFlow) -> list[str]:
    return sorted(kf.mapping.source_attributes() | kf.scope.source_attributes())


def _failed(source: Connector, kf: KindFlow, exc: Exception, out: SourceRead) -> None:
    out.complete = False
    out.error = f"reading {kf.kind}s from {source.name} failed: {exc}"
    out.error_class = type(exc)
    log.warning(out.error)


def _take(kf: KindFlow, batch: Batch, out: SourceRead) -> None:
    """Scope and map one batch of source entries into `out`."""
    implicit_active = kf.kind == "user" and "active" not in kf.mapping.paths
    out.complete = out.complete and batch.complete
    out.full = batch.full
    out.gone.update(batch.deleted)
    if batch.cursor is not None:
        out.cursor = batch.cursor
    for e in batch.entries:
        out.seen += 1
        if e.members is not None:
            out.edges[e.external_id] = (e.members, e.member_groups or frozenset())
        elif e.members_added is not None or e.members_removed is not None:
            out.edge_deltas[e.external_id] = (
                e.members_added or frozenset(), e.members_removed or frozenset(),
                e.member_groups_added or frozenset(), e.member_groups_removed or frozenset())
        try:
            failing = kf.scope.failing(e.raw)
        except ConditionError as exc:  # undecidable is not "out": holding it deletes nothing
            out.held.append(Hold(kf.kind, e.external_id, e.name or e.external_id,
                                 f"scope: {exc}"))
            continue
        if failing is None and kf.members_in is not None and \
                e.external_id not in kf.members_in:  # member_of (cycle.membership)
            if not kf.member_proven:
                out.held.append(Hold(kf.kind, e.external_id, e.name or e.external_id,
                                     kf.member_why))
                continue
            failing = kf.member_why
        if failing is not None:
            out.gone.add(e.external_id)
            out.left_scope[e.external_id] = failing
            out.items.pop(e.external_id, None)
            continue
        if not e.raw and (e.members_added is not None or e.members_removed is not None):
            # a membership-only change (Graph members@delta): attributes unknown, not cleared
            out.items[e.external_id] = Item(
                e.external_id, e.name or e.external_id, {}, e.members,
                e.members_added, e.members_removed, e.modified)
            continue
        try:
            attrs: dict[str, Value] = kf.mapping.map(e.raw)
        except MappingError as exc:
            out.held.append(Hold(kf.kind, e.external_id, e.name or e.external_id, str(exc)))
            continue
        empty = kf.mapping.empty_identifier(kf.kind, attrs)
        if empty is not None:
            out.held.append(Hold(kf.kind, e.external_id, e.name or e.external_id, empty))
            continue
        if implicit_active:
            attrs["active"] = True
        out.gone.discard(e.external_id)
        out.items[e.external_id] = Item(
            e.external_id, _label(e, attrs), attrs, e.members,
            e.members_added, e.members_removed, e.modified,
            _unique_raw(kf, e.raw))


def _unique_raw(kf: KindFlow, raw: RawAttrs) -> RawAttrs | None:
    """What a flow's ``unique`` rules read of an entry (a few attributes, not all of raw)."""
    names = kf.mapping.unique_attributes
    if not names:
        return None
    return {a: raw[a] for a in names if a in raw}


def _label(e: Entry, attrs: dict[str, Value]) -> str:
    for key in ("userName", "userPrincipalName", "uid", "displayName"):
        v = attrs.get(key)
        if isinstance(v, str) and v:
            return v
    return e.name or e.external_id


class Candidates(dict[tuple[str, str], list[Entry]]):
    """Target objects by (match key, normalised value), and the lookups the target refused
    for one object (a value its filter parser chokes on): that entry is held, the rest of
    the flow goes on."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: dict[tuple[str, str], str] = {}
        #: False when a listing of the target said it missed objects: absence from this
        #: index then proves nothing, and creating on it would duplicate.
        self.complete = True


def candidates(target: Connector, kind: Kind, match: tuple[str, ...], unlinked: list[Item]
               ) -> Candidates:
    """Target objects that could be adopted, indexed by (match key, normalised value).

    A failure here is Fatal for the flow: creating without having been able to look for
    an existing object is exactly how duplicates happen.
    """
    if len(unlinked) > FIND_LIMIT:
        index = target_index(target, kind, match)
        if index.complete:
            return index
    return found(target, kind, match, unlinked)


def claims(store: Store, flow: str, kind: Kind, cands: Mapping[tuple[str, str], list[Entry]]
           ) -> dict[str, str]:
    """Candidates some link already owns (target id -> a label of its source entry): never
    adopted for another entry (ownership is exclusive), whatever links a run loaded."""
    ids = {e.external_id for es in cands.values() for e in es}
    if not ids:
        return {}
    return {lk.target_id: label(lk.source_id, lk.base)
            for lk in store.links(flow, kind, ids, by_target=True).values()}


def target_index(target: Connector, kind: Kind, match: tuple[str, ...]) -> Candidates:
    """The whole target listed once and indexed by match key (many unlinked entries). An
    incomplete listing is marked so: the caller looks entries up one by one instead."""
    index = Candidates()
    for batch in target.read(kind, None, None):
        if not batch.complete:
            index.complete = False
        for e in batch.entries:
            for key in match:
                mv = match_value(e.attrs.get(key))
                if mv is not None:
                    index.setdefault((key, mv), []).append(e)
    return index


def found(target: Connector, kind: Kind, match: tuple[str, ...], unlinked: list[Item]
          ) -> Candidates:
    """One `find` per match key and entry (a few unlinked entries). A lookup the target
    rejects (`Rejected`: a 4xx about this one value) holds that entry only."""
    index = Candidates()
    for it in unlinked:
        for key in match:
            value = it.attrs.get(key)
            mv = match_value(value)
            if mv is None or (key, mv) in index or (key, mv) in index.errors:
                continue
            raw = value[0] if isinstance(value, tuple) else value
            try:
                hits = target.find(kind, key, str(raw))
            except Rejected as exc:
                index.errors[(key, mv)] = str(exc)
                log.warning("looking up %s %s=%r on %s failed: %s", kind, key, raw,
                            target.name, exc)
                continue
            index[(key, mv)] = [e for e in hits if match_value(e.attrs.get(key)) == mv]
    return index
