"""Reference values at the connectors' edges: the engine compares and stores *target ids*
for reference paths (`syncd.cycle.references`); a connector that names objects otherwise
(LDAP: by DN) writes and reads its own names.

- Writing to a target: target ids -> the target's names (`reference_names`), for every
  change of an apply stage at once (`TargetNames`). A target without the method takes ids
  (SCIM, Graph).
- Reading a target (two-way flows, match candidates): the target's names -> its ids
  (`resolve_references`), so a second cycle compares ids with ids and plans nothing.
- Writing back to a source (two-way): target id -> link -> source anchor -> the source's
  own name (`WriteBack`), never a target id in a source attribute. A target id no link
  knows (an object the flow does not manage) or an anchor the source cannot name is not
  written back: that path of the change is dropped and said, and its base keeps the old
  value, so the next cycle tries again.

The optional connector methods (`syncd.connector`): ``reference_names(kind, anchors) ->
{anchor: name or None}`` and ``resolve_references(kind, names) -> {name: anchor or None}``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from syncd.config.flows import Flow
from syncd.connector import Connector
from syncd.errors import ConnectorError, Rejected
from syncd.model import Entry, Kind, Value
from syncd.plan.references import reference_paths, spellings
from syncd.plan.value import Change
from syncd.state.store import Store

log = logging.getLogger("syncd.references")


def flow_paths(flow: Flow) -> dict[Kind, dict[str, Kind]]:
    """Per kind: reference path -> the kind it references."""
    return {kf.kind: reference_paths(kf.mapping) for kf in flow.kinds}


def _wanted(paths: Mapping[str, Kind], attrs: Mapping[str, Value],
            into: dict[Kind, set[str]]) -> None:
    for path, ref_kind in paths.items():
        for v in spellings(attrs.get(path)):
            into.setdefault(ref_kind, set()).add(v)


def _swap(value: Value, table: Mapping[str, str | None]) -> tuple[Value, list[str]]:
    """`value` with each name replaced through `table`, and the names it has no entry for."""
    if value is None or isinstance(value, bool):
        return value, []
    items = value if isinstance(value, tuple) else (str(value),)
    got: list[str] = []
    lost: list[str] = []
    for v in items:
        if not v:
            continue
        new = table.get(v)
        if new is None:
            lost.append(v)
        else:
            got.append(new)
    if isinstance(value, tuple):
        return tuple(got), lost
    return (got[0] if got else None), lost


class TargetNames:
    """Target ids -> the target's names, for the changes an apply writes (one lookup per
    referenced kind and stage, as `prefetch` is given the stage's changes)."""

    def __init__(self, flow: Flow, target: Connector) -> None:
        self.paths = flow_paths(flow)
        self.method = getattr(target, "reference_names", None)
        self.names: dict[tuple[Kind, str], str | None] = {}
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return self.method is not None and any(self.paths.values())

    def prefetch(self, changes: Iterable[Change]) -> None:
        if not self.active:
            return
        wanted: dict[Kind, set[str]] = {}
        for c in changes:
            if c.side == "target" and c.attrs:
                _wanted(self.paths.get(c.kind) or {}, c.attrs, wanted)
        self._ask(wanted)

    def _ask(self, wanted: Mapping[Kind, set[str]]) -> None:
        assert self.method is not None
        for kind, ids in wanted.items():
            fresh = sorted(i for i in ids if (kind, i) not in self.names)
            if not fresh:
                continue
            got: Mapping[str, str | None] = self.method(kind, fresh)
            with self._lock:
                self.names.update(((kind, i), got.get(i)) for i in fresh)

    def out(self, kind: Kind, attrs: Mapping[str, Value]) -> dict[str, Value]:
        """`attrs` as the target writes them. A target id the target cannot name (its object
        gone meanwhile) rejects the change: never a write of an id where a name belongs."""
        paths = self.paths.get(kind) or {}
        if not self.active or not any(p in attrs for p in paths):
            return dict(attrs)
        wanted: dict[Kind, set[str]] = {}
        _wanted(paths, attrs, wanted)
        self._ask(wanted)
        out = dict(attrs)
        for path, ref_kind in paths.items():
            if path not in out:
                continue
            table = {i: self.names.get((ref_kind, i)) for i in spellings(out[path])}
            out[path], lost = _swap(out[path], table)
            if lost:
                raise Rejected(f"{path}: the target has no {ref_kind} with id "
                               f"{', '.join(lost[:5])} any more; not written")
        return out


def target_ids(target: Connector, paths: Mapping[str, Kind], entries: Iterable[Entry]
               ) -> None:
    """Reference values of target entries (as the target spells them) -> target ids, in
    place (`Entry.attrs`), one lookup per referenced kind. A name the target resolves to
    nothing stays as it is (it then differs from every id: drift, shown and undone)."""
    resolver = getattr(target, "resolve_references", None)
    if resolver is None or not paths:
        return
    entries = list(entries)
    wanted: dict[Kind, set[str]] = {}
    for e in entries:
        _wanted(paths, e.attrs, wanted)
    tables: dict[Kind, Mapping[str, str | None]] = {}
    for kind, names in wanted.items():
        try:
            tables[kind] = resolver(kind, sorted(names))
        except ConnectorError as exc:
            log.warning("%s: resolving %d %s references failed: %s", target.name,
                        len(names), kind, exc)
            tables[kind] = {}
    for e in entries:
        for path, ref_kind in paths.items():
            if path in e.attrs:
                table = tables.get(ref_kind, {})
                value = e.attrs[path]
                full = {n: table.get(n) or n for n in spellings(value)}
                e.attrs[path] = _swap(value, full)[0]  # type: ignore[index]


class SourceNames:
    """Two-way write-back of reference paths: target ids -> the source's own names."""

    def __init__(self, flow: Flow, store: Store, source: Connector) -> None:
        self.flow, self.store, self.source = flow, store, source
        self.paths = flow_paths(flow)

    @staticmethod
    def writable(source: Connector) -> bool:
        """A source can take references written back when it can name an anchor
        (`reference_names`) or names objects by their anchors (no `resolve_references`)."""
        return (hasattr(source, "reference_names")
                or not hasattr(source, "resolve_references"))

    def translate(self, changes: Sequence[Change], reverse: Mapping[Kind, Mapping[str, str]]
                  ) -> tuple[list[Change], list[str]]:
        """`changes` whose source values of reference paths are the source's names; the
        paths that cannot be written back dropped (notes say why). `reverse`: per kind,
        reference path -> the source attribute it is written back to."""
        wanted: dict[Kind, set[str]] = {}
        for c in changes:
            for path, ref_kind in (self.paths.get(c.kind) or {}).items():
                attr = (reverse.get(c.kind) or {}).get(path)
                if attr is not None and attr in c.source_attrs:
                    wanted.setdefault(ref_kind, set()).update(spellings(c.source_attrs[attr]))
        if not wanted:
            return list(changes), []
        names: dict[tuple[Kind, str], str | None] = {}
        for kind, tids in wanted.items():
            links = self.store.links(self.flow.name, kind, tids, by_target=True)
            anchors = {lk.target_id: lk.source_id for lk in links.values()
                       if lk.status == "active"}
            method = getattr(self.source, "reference_names", None)
            try:
                spelled = (method(kind, sorted(set(anchors.values()))) if method and anchors
                           else {a: a for a in anchors.values()})
            except ConnectorError as exc:
                log.warning("%s: naming %d %s references failed: %s", self.source.name,
                            len(anchors), kind, exc)
                spelled = {}
            names.update(((kind, t), spelled.get(anchors[t]) if t in anchors else None)
                         for t in tids)
        out: list[Change] = []
        notes: list[str] = []
        for c in changes:
            paths = {p: k for p, k in (self.paths.get(c.kind) or {}).items()
                     if (reverse.get(c.kind) or {}).get(p) in c.source_attrs}
            if not paths:
                out.append(c)
                continue
            src = dict(c.source_attrs)
            base = dict(c.base)
            for path, ref_kind in paths.items():
                attr = reverse[c.kind][path]
                table = {t: names.get((ref_kind, t)) for t in spellings(src[attr])}
                value, lost = _swap(src[attr], table)
                if lost:
                    del src[attr]
                    # the source keeps its value: that is the base, so the next cycle sees
                    # the target's edit again and retries
                    base[path] = c.source_before.get(path)
                    notes.append(f"{c.name}: {path} not written back to {self.flow.source}: "
                                 f"{', '.join(lost[:3])} is no linked {ref_kind} (pending "
                                 f"until it is linked)")
                else:
                    src[attr] = value
            out.append(replace(c, source_attrs=src, base=base))
        return out, notes

