"""Nested groups in a push cycle: a group read becomes flattened membership (``nested =
"flatten"``), full or incremental, with the same result.

Called once per cycle on the groups' `SourceRead`, after the read (and the groups that name
users back in scope were added) and before links are loaded and the plan is made:

- **full read**: every group's direct edges are in the read; each group read gets its
  transitive user members (`syncd.plan.nesting.closure`); the edges replace the flow's
  remembered graph (`syncd.state.graph`) -- or, when the listing was incomplete, are added
  to it, since a group not seen is not proof of anything;
- **incremental read**: only changed groups are read, but every group containing one of
  them (directly or nested) changes too. Their ids come from the remembered reverse edges
  (an index lookup per level), the edges below them from the store (changed groups: from
  the read), and each such *ancestor* that has a link joins the read as a membership-only
  item (no attributes: nothing else of it is planned), exactly as a full read would have
  planned it. A deleted group brings nobody any more: its ancestors are recomputed.
  Without an established graph (never read in full, or its store was emptied) the read is
  done again in full, in place: guessing from a partial graph would remove members.

A cycle in the group graph is a note in the plan, naming the groups. With ``nested =
"direct"`` (the default) nothing here runs and nothing is stored. ``nested = "preserve"``
shares the graph and the read in full without one, then goes its own way (`cycle.preserve`).
"""

from __future__ import annotations

import logging
from dataclasses import replace

from syncd.config.flows import Flow, KindFlow
from syncd.connector import Connector
from syncd.cycle.preserve import preserve_groups
from syncd.cycle.read import SourceRead, read_source
from syncd.plan.nesting import EMPTY, Edges, ancestors, closure, cycle_note
from syncd.plan.push import Item
from syncd.plan.value import base_name
from syncd.state import graph
from syncd.state.graph import Direct
from syncd.state.store import Store

log = logging.getLogger("syncd.cycle.nesting")


def flatten_read(flow: Flow, kf: KindFlow, store: Store, source: Connector,
                 rd: SourceRead) -> None:
    """Give every group of `rd` (and, incrementally, every ancestor of one) its flattened
    members; remember the edges. Mutates `rd` (module docstring)."""
    if kf.kind != "group" or kf.nested not in ("flatten", "preserve"):
        return
    if not rd.full and not graph.established(store, flow.name):
        log.info("%s: no remembered group graph: reading groups in full", flow.name)
        again = read_source(source, kf, None)
        for name in ("items", "held", "complete", "full", "seen", "gone", "left_scope",
                     "cursor", "error", "error_class", "edges", "edge_deltas"):
            setattr(rd, name, getattr(again, name))
    fresh = _fresh(flow, store, rd)
    if kf.nested == "preserve":  # member groups kept as members (cycle.preserve)
        preserve_groups(flow, store, rd, fresh)
        return
    deleted = {g for g in rd.gone if g not in fresh}
    if rd.full:
        whole = dict(fresh)
        trusted = rd.complete and rd.error is None
        if not trusted:  # keep what is remembered of the groups this listing did not return
            for g, direct in graph.whole(store, flow.name).items():
                whole.setdefault(g, direct)
        result = closure(_edges(whole), sorted(rd.items))
        graph.save(store, flow.name, fresh, complete_full=trusted)
        extra: dict[str, Item] = {}
    else:
        affected = _ancestors(flow, store, set(fresh) | deleted) | set(fresh)
        affected -= deleted
        sub = _below(flow, store, affected, fresh, deleted)
        result = closure(_edges(sub), sorted(affected))
        graph.save(store, flow.name, fresh, deleted)
        extra = _ancestor_items(flow, store, rd, affected - set(rd.items), result.members)
    for sid, it in list(rd.items.items()):
        members = result.members.get(sid)
        if members is not None:
            rd.items[sid] = replace(it, members=members, members_added=None,
                                    members_removed=None)
    rd.items.update(extra)
    names = {sid: it.name for sid, it in rd.items.items()}
    rd.notes += [cycle_note(c, names) for c in result.cycles]


def _fresh(flow: Flow, store: Store, rd: SourceRead) -> dict[str, Direct]:
    """The direct edges this read saw; membership-only deltas (Graph members@delta) are
    applied to the remembered direct users and groups."""
    fresh = dict(rd.edges)
    pending = [g for g in rd.edge_deltas if g not in fresh]
    if pending:
        stored = graph.edges(store, flow.name, pending)
        for g in pending:
            add, remove, sub_add, sub_remove = rd.edge_deltas[g]
            users, groups = stored.get(g, (EMPTY, EMPTY))
            fresh[g] = ((users | add) - remove, (groups | sub_add) - sub_remove)
    return fresh


def _edges(direct: dict[str, Direct]) -> dict[str, Edges]:
    return {g: Edges(users, groups) for g, (users, groups) in direct.items()}


def _ancestors(flow: Flow, store: Store, changed: set[str]) -> set[str]:
    """Groups containing a changed one, level by level over the remembered reverse edges.
    An edge of a changed group may be stale in the store, but that group is recomputed
    anyway; every other edge on a path up is unchanged, so the walk is the full read's."""
    parents: dict[str, set[str]] = {}
    seen: set[str] = set()
    frontier = set(changed)
    while frontier:
        found = graph.parents(store, flow.name, frontier)
        parents.update(found)
        seen |= frontier
        frontier = {p for ps in found.values() for p in ps} - seen
    return ancestors(parents, changed)


def _below(flow: Flow, store: Store, roots: set[str], fresh: dict[str, Direct],
           deleted: set[str]) -> dict[str, Direct]:
    """The edges of `roots` and of every group below them: read ones from the read, the
    rest from the store; deleted groups have none."""
    out: dict[str, Direct] = {}
    todo = set(roots) - deleted
    while todo:
        stored = graph.edges(store, flow.name, [g for g in todo if g not in fresh])
        nxt: set[str] = set()
        for g in todo:
            direct = fresh.get(g) or stored.get(g) or (EMPTY, EMPTY)
            out[g] = direct
            nxt |= direct[1]
        todo = nxt - set(out) - deleted
    return out


def _ancestor_items(flow: Flow, store: Store, rd: SourceRead, groups: set[str],
                    members: dict[str, frozenset[str]]) -> dict[str, Item]:
    """Linked ancestors not read: membership-only items (their attributes are unknown and
    left alone, as for a Graph members@delta change)."""
    held = {h.source_id for h in rd.held}
    wanted = {g for g in groups if g not in rd.gone and g not in held}
    if not wanted:
        return {}
    out = {}
    for sid, lk in store.links(flow.name, "group", wanted).items():
        if lk.status != "active":
            continue
        name = base_name(lk.base, "group", sid)
        out[sid] = Item(sid, name, {}, members.get(sid, EMPTY))
    return out
