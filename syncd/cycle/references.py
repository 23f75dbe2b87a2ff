"""Reference attributes in a cycle: names -> source anchors (the source connector) -> target
ids (the links), before planning; after applying, the references whose object was linked or
unlinked meanwhile are filled or cleared (`syncd.plan.references` has the rules).

Why after applying, in the same cycle: a manager and its report created in one cycle, in any
order, have no target id for the manager until its create is applied; the report gets it in a
short second round instead of one cycle later. The rows in the store make an incremental cycle
do the same for entries it does not read (see `syncd.state.references`).

Cost: one `resolve_references` call per page of entries read (the LDAP connector answers from
the DNs it has already read, then one search per 200 unknown DNs), one link query per page;
after applying, one query for the pending rows and those naming objects this cycle linked or
unlinked.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace

from syncd.config.flows import Flow
from syncd.connector import Connector
from syncd.cycle.apply import Applier
from syncd.cycle.result import FlowResult, Options
from syncd.errors import ConnectorError
from syncd.model import KINDS, Kind
from syncd.plan.push import Item
from syncd.plan.references import Lookup, notes, reference_paths, refill, resolve
from syncd.plan.value import Change, Plan
from syncd.state.records import Link, RefRow
from syncd.state.store import Store

log = logging.getLogger("syncd.references")

#: Base attributes that name an object, in order of preference.
_NAME_KEYS = ("userName", "displayName", "uid", "cn", "mail")


def _name(lk: Link) -> str:
    return next((str(v) for k in _NAME_KEYS if (v := lk.base.get(k))), lk.source_id)


class References:
    """One flow's references for one cycle (see the module docstring)."""

    def __init__(self, flow: Flow, store: Store, source: Connector) -> None:
        self.flow, self.store, self.source = flow, store, source
        self.paths: dict[Kind, dict[str, Kind]] = {
            kf.kind: reference_paths(kf.mapping) for kf in flow.kinds}
        self.rows: dict[Kind, list[RefRow]] = {"user": [], "group": []}
        self.read: dict[Kind, set[str]] = {"user": set(), "group": set()}
        self.waiting: list[tuple[str, str, str]] = []
        #: (kind, name) looked up this cycle: not asked again after applying.
        self.looked_up: dict[tuple[Kind, str], str | None] = {}
        #: (kind, source anchor) -> name, of entries read this cycle.
        self.names: dict[tuple[Kind, str], str] = {}
        #: target id -> name of the referenced objects, for showing plans.
        self.shown: dict[str, str] = {}

    @property
    def active(self) -> bool:
        return any(self.paths.values())

    def resolve(self, kind: Kind, items: Mapping[str, Item]) -> dict[str, Item]:
        """`items` with their reference paths resolved to target ids (or emptied)."""
        self.names.update(((kind, sid), it.name) for sid, it in items.items())
        paths = self.paths.get(kind) or {}
        if not paths or not items:
            return dict(items)
        wanted: dict[Kind, set[str]] = {}
        for it in items.values():
            for path, ref_kind in paths.items():
                v = it.attrs.get(path)
                for name in (v if isinstance(v, tuple) else (v,)):
                    if isinstance(name, str) and name:
                        wanted.setdefault(ref_kind, set()).add(name)
        lookup = self._lookup(wanted)
        out = resolve(kind, items, paths, lookup)
        self.rows[kind] += out.rows
        self.read[kind] |= set(items)
        self.waiting += out.waiting
        return out.items

    def _anchors(self, kind: Kind, names: set[str]) -> dict[str, str | None]:
        """Names -> source anchors; a source without `resolve_references` names objects by
        their anchors (SCIM and Graph ids). A failed lookup resolves nothing (pending)."""
        fresh = sorted(n for n in names if (kind, n) not in self.looked_up)
        if fresh:
            resolver = getattr(self.source, "resolve_references", None)
            got: Mapping[str, str | None]
            if resolver is None:
                got = {n: n for n in fresh}
            else:
                try:
                    got = resolver(kind, fresh)
                except ConnectorError as exc:
                    log.warning("%s: resolving %d %s references failed: %s; they stay "
                                "pending", self.flow.name, len(fresh), kind, exc)
                    got = {}
            for n in fresh:
                if n in got:
                    self.looked_up[(kind, n)] = got[n]
        return {n: self.looked_up[(kind, n)] for n in names if (kind, n) in self.looked_up}

    def _lookup(self, wanted: Mapping[Kind, set[str]]) -> Lookup:
        anchors: dict[tuple[Kind, str], str | None] = {}
        targets: dict[tuple[Kind, str], str] = {}
        names: dict[tuple[Kind, str], str] = {}
        for kind, spelled in wanted.items():
            found = self._anchors(kind, spelled)
            anchors.update(((kind, n), a) for n, a in found.items())
            ids = {a for a in found.values() if a is not None}
            t, n = self._targets(kind, ids)
            targets.update(t)
            names.update(n)
        return Lookup(anchors, targets, names)

    def _targets(self, kind: Kind, ids: set[str]
                 ) -> tuple[dict[tuple[Kind, str], str], dict[tuple[Kind, str], str]]:
        """Target ids of the active links among `ids`, and names for all of `ids`."""
        targets: dict[tuple[Kind, str], str] = {}
        names = {(kind, i): self.names[(kind, i)] for i in ids if (kind, i) in self.names}
        if not ids:
            return targets, names
        for sid, lk in self.store.links(self.flow.name, kind, ids).items():
            if lk.status == "active":
                targets[(kind, sid)] = lk.target_id
                names.setdefault((kind, sid), _name(lk))
                self.shown[lk.target_id] = names[(kind, sid)]
        return targets, names

    def name_values(self, changes: Sequence[Change]) -> dict[str, str]:
        """Target id -> name for every reference value these changes show (the values they
        replace included): plans show the manager's name, not only its id. One query."""
        unnamed: dict[Kind, set[str]] = {}
        for c in changes:
            for path, ref_kind in (self.paths.get(c.kind) or {}).items():
                for v in (c.attrs.get(path), c.before.get(path)):
                    for tid in (v if isinstance(v, tuple) else (v,)):
                        if isinstance(tid, str) and tid not in self.shown:
                            unnamed.setdefault(ref_kind, set()).add(tid)
        for kind, tids in unnamed.items():
            for lk in self.store.links(self.flow.name, kind, tids, by_target=True).values():
                self.shown[lk.target_id] = _name(lk)
        return self.shown

    def notes(self) -> list[str]:
        return notes(self.waiting)

    def save(self, failed: Collection[tuple[str, str]] = ()) -> None:
        """Remember what the entries read this cycle name (not in a dry run). Rows of
        entries whose change failed are pending: their base does not hold the value."""
        for kind in ("user", "group"):
            if self.read[kind]:
                rows = [replace(r, target_id=None) if (kind, r.source_id) in failed else r
                        for r in self.rows[kind]]
                self.store.replace_references(self.flow.name, kind, self.read[kind], rows)

    def follow_up(self, changes: Sequence[Change]) -> tuple[list[Change], list[RefRow]]:
        """After applying `changes`: the updates that fill references to objects linked
        since (this cycle or before) and clear those to objects unlinked; the rows to save
        once they are applied."""
        if not self.active:
            return [], []
        moved = {(c.kind, c.source_id) for c in changes if c.source_id and (
            c.op in ("create", "adopt", "deprovision", "delete")
            or (c.op == "update" and c.reason.startswith("re-appeared")))}
        rows = self.store.references(self.flow.name, pending=True, naming=moved)
        if not rows:
            return [], []
        # every row of each entry concerned: a multi-valued reference is rewritten whole
        for kind in ("user", "group"):
            sids = {r.source_id for r in rows if r.kind == kind}
            if sids:
                rows += self.store.references(self.flow.name, kind=kind, source_ids=sids)
        unique = {(r.kind, r.source_id, r.path, r.value): r for r in rows}
        rows = list(unique.values())
        found = self._found(rows)
        newly = [r for r, old in zip(found, rows, strict=True) if r != old]
        rows = found
        links: dict[tuple[Kind, str], Link] = {}
        targets: dict[tuple[Kind, str], str] = {}
        names: dict[tuple[Kind, str], str] = {}
        for kind in KINDS:
            sids = {r.source_id for r in rows if r.kind == kind}
            if sids:
                links.update(((kind, s), lk) for s, lk in
                             self.store.links(self.flow.name, kind, sids).items())
            refs = {r.ref_source_id for r in rows if r.ref_kind == kind and r.ref_source_id}
            t, n = self._targets(kind, refs)
            targets.update(t)
            names.update(n)
        changes, saved = refill(rows, links, targets, names)
        keys = {(r.kind, r.source_id, r.path, r.value) for r in saved}
        return changes, saved + [r for r in newly
                                 if (r.kind, r.source_id, r.path, r.value) not in keys]

    def _found(self, rows: list[RefRow]) -> list[RefRow]:
        """Rows whose name resolved to nothing before: looked up again (an object created
        in the source since is named by them now)."""
        lost: dict[Kind, set[str]] = {}
        for r in rows:
            if r.ref_source_id is None:
                lost.setdefault(r.ref_kind, set()).add(r.value)
        if not lost:
            return rows
        found = {(k, n): a for k, names in lost.items()
                 for n, a in self._anchors(k, names).items()}
        return [replace(r, ref_source_id=found.get((r.ref_kind, r.value)))
                if r.ref_source_id is None else r for r in rows]


def follow_references(refs: References, flow: Flow, store: Store, target: Connector,
                      res: FlowResult, opts: Options, applied: Sequence[Change]) -> None:
    """The second round of a cycle (module docstring): plan the fills and clears, show them
    with the plan, apply them (not in a dry run); rows of failed updates stay pending, so
    the next cycle, incremental or not, tries again."""
    if not refs.active or res.plan is None or res.result in ("refused", "aborted"):
        return
    if not res.dry_run:
        refs.save({(f.change.kind, f.change.source_id) for f in res.failures})
    changes, rows = refs.follow_up(applied)
    plan = res.plan
    shown = Plan.ordered([*plan.changes, *changes]) if changes else plan.changes
    res.plan = replace(plan, changes=shown)
    if res.dry_run:
        return
    failed: set[tuple[str, str]] = set()
    if changes:
        assert res.run_id is not None
        applier = Applier(flow, target, store, res.run_id, opts.progress, opts.stop)
        outcome = applier.apply(Plan(flow.name, Plan.ordered(changes)))
        res.applied += outcome.applied
        res.failures += outcome.failures
        failed = {(f.change.kind, f.change.source_id) for f in outcome.failures}
        if outcome.failures and res.result == "ok":
            res.result = "failed"
    store.save_references(flow.name, [
        replace(r, target_id=None) if (r.kind, r.source_id) in failed else r for r in rows])
