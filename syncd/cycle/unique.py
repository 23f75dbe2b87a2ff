"""Unique values: choosing a ``unique`` rule's value for an entry syncd is about to create.

The mapping lists candidates (``{givenName}.{sn}``, then ``{givenName}.{sn}{n}``); the first
one nobody holds wins. "Nobody" means: no object on the target (looked up, or indexed once
when many entries are created), no link of this flow (a linked object's value, even one the
target's lookup misses), and no entry given that value earlier in this cycle. The value is
chosen once: the rule is ``apply = "on_create"``, so later cycles never rename the object when
the name's owner leaves or the source's name changes.

Only entries that no match candidate will adopt are given a value: an adopted object keeps
the value it has. A unique path can never be a match key (the config refuses it): matching
on a generated name would adopt whoever already holds it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace

from syncd.config.flows import Flow, KindFlow
from syncd.connector import Connector
from syncd.cycle.read import FIND_LIMIT, Candidates, target_index
from syncd.errors import Rejected
from syncd.mapping.rules import MappingError, Rule
from syncd.plan.push import Item, match_value
from syncd.plan.value import Hold
from syncd.state.store import Store

log = logging.getLogger(__name__)


class UniqueValues:
    """One flow and kind, one cycle: what was looked up and handed out so far."""

    def __init__(self, flow: Flow, kf: KindFlow, store: Store, target: Connector) -> None:
        self.flow, self.kf, self.store, self.target = flow, kf, store, target
        self.rules: tuple[Rule, ...] = kf.mapping.unique_rules
        self.given: set[tuple[str, str]] = set()
        self._linked: dict[str, set[str]] | None = None
        self._index: Candidates | None = None

    @property
    def active(self) -> bool:
        return bool(self.rules)

    def assign(self, items: dict[str, Item], unlinked: Iterable[Item], cands: Candidates
               ) -> list[Hold]:
        """Give each entry to be created its unique values (its Item in `items` is replaced);
        an entry with no free candidate is held, and removed from `items`."""
        if not self.rules:
            return []
        todo = [it for it in unlinked if not self._adoptable(it, cands)]
        if len(todo) > FIND_LIMIT and self._index is None:
            self._index = target_index(self.target, self.kf.kind,
                                       tuple(r.path for r in self.rules))
        holds: list[Hold] = []
        for it in todo:
            attrs = dict(it.attrs)
            why = None
            for rule in self.rules:
                try:
                    attrs[rule.path], why = self._choose(rule, it)
                except MappingError as exc:
                    why = str(exc)
                if why is not None:
                    break
            if why is not None:
                holds.append(Hold(self.kf.kind, it.source_id, it.name, why))
                items.pop(it.source_id, None)
                continue
            for rule in self.rules:
                mv = match_value(attrs[rule.path])
                if mv is not None:
                    self.given.add((rule.path, mv))
            items[it.source_id] = replace(it, attrs=attrs)
        return holds

    def _adoptable(self, it: Item, cands: Candidates) -> bool:
        """The planner will adopt (or hold) this entry on a match key: nothing to choose."""
        for key in self.kf.match:
            mv = match_value(it.attrs.get(key))
            if mv is not None and (cands.get((key, mv)) or (key, mv) in cands.errors):
                return True
        return False

    def _choose(self, rule: Rule, it: Item) -> tuple[str | None, str | None]:
        """(value, None), or (None, why the entry is held)."""
        tried: list[str] = []
        for value in rule.candidates(it.unique_raw or {}):
            tried.append(value)
            try:
                if not self._taken(rule.path, value):
                    return value, None
            except Rejected as exc:
                return None, (f"could not check whether {rule.path}={value!r} is free on "
                              f"{self.target.name}: {exc}; not creating")
        if not tried:
            return None, (f"mapping {rule.path!r} ({rule.describe()}) yields no candidate "
                          f"for this entry")
        shown = ", ".join(tried[:3]) + (f", … {tried[-1]}" if len(tried) > 3 else "")
        return None, (f"no free value for {rule.path}: all {len(tried)} candidates ({shown}) "
                      f"are held on {self.target.name} or by linked objects; not creating")

    def _taken(self, path: str, value: str) -> bool:
        mv = match_value(value)
        assert mv is not None
        if (path, mv) in self.given or mv in self._linked_values(path):
            return True
        if self._index is not None and self._index.complete:
            return bool(self._index.get((path, mv)))
        hits = self.target.find(self.kf.kind, path, value)
        return any(match_value(e.attrs.get(path)) == mv for e in hits)

    def _linked_values(self, path: str) -> set[str]:
        """Every value of `path` the flow's links hold (disabled ones too: the object still
        exists on the target), read once per cycle, only when a value is being chosen."""
        if self._linked is None:
            self._linked = {r.path: set() for r in self.rules}
            for lk in self.store.links(self.flow.name, self.kf.kind).values():
                for r in self.rules:
                    mv = match_value(lk.base.get(r.path))
                    if mv is not None:
                        self._linked[r.path].add(mv)
        return self._linked[path]
