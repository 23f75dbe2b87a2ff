"""Two-way flows: the source side of apply (creates, deprovisioning and deletes written back).

A mixin of `syncd.cycle.apply.Applier`, kept apart so the push path reads on its own. Everything
here writes to the flow's *source* connector, for changes planned with ``side = "source"``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from syncd.mapping.rules import MappingError
from syncd.model import Entry, StoredAttrs, Value, digest
from syncd.plan.push import same
from syncd.state.records import Link

if TYPE_CHECKING:
    from syncd.config.flows import Flow
    from syncd.connector import Connector
    from syncd.cycle.ref_names import TargetNames
    from syncd.plan.value import Change
    from syncd.state.store import Store


@dataclass(frozen=True)
class _Outcome:
    change: Change
    link: Link | None = None
    drop: bool = False
    target_id: str | None = None
    error: BaseException | None = None


class WriteBack:
    flow: Flow
    target: Connector
    source: Connector | None
    store: Store
    names: TargetNames

    def _source_create(self, c: Change) -> _Outcome:
        assert self.source is not None and c.target_id
        entry = self.source.create(c.kind, dict(c.source_attrs))
        members: frozenset[str] | None = frozenset() if c.kind == "group" else None
        if c.kind == "group" and c.source_add:  # a target group arrives with its members
            self.source.set_members(entry.external_id, list(c.source_add), [])
            members = frozenset(c.source_add)
        base = dict(c.base)
        error: Exception | None = None
        one_way = self._one_way(c, entry)
        if one_way:
            # What only the new source entry can give (its anchor as externalId, templates)
            # goes to the target now, not one cycle later: an app-side create converges in
            # one cycle. If that fails the link is still recorded; the next cycle retries.
            try:
                self.target.update(c.kind, c.target_id,
                                   self.names.out(c.kind, one_way))
                base.update(one_way)
            except Exception as exc:
                error = exc
        b = StoredAttrs.of(base)
        link = Link(self.flow.name, c.kind, entry.external_id, c.target_id, b, digest(b),
                    members, "active", "created")
        return _Outcome(c, link=link, target_id=c.target_id, error=error)

    def _one_way(self, c: Change, entry: Entry) -> dict[str, Value]:
        """The mapped values of a source entry syncd just created that cannot have come
        from the target (one-way paths), where they differ from the target's."""
        kf = self.flow.kind(c.kind)
        if kf is None or not entry.raw:
            return {}
        try:
            mapped = kf.mapping.map(entry.raw)
        except MappingError:
            return {}
        # reference paths: the source's names, not target ids (the references round fills
        # them once resolved)
        skip = set(kf.mapping.reverse()) | kf.mapping.on_create_only | set(
            r.path for r in kf.mapping.rules if r.reference is not None) | set(
            self.target.capabilities.unsupported(c.kind, kf.mapping.paths))
        return {p: v for p, v in mapped.items()
                if p not in skip and not same(v, c.before.get(p))}

    def _source_deprovision(self, c: Change) -> _Outcome:
        """The target object is gone and the source entry is disabled for it. The link is
        kept, disabled: the entry syncd just wrote is read again, and without its link it
        would look new and be provisioned to the target again."""
        assert self.source is not None
        self.source.deactivate(c.kind, c.source_id)
        current = self.store.links(self.flow.name, c.kind, {c.source_id}).get(c.source_id)
        if current is None:
            return _Outcome(c, drop=True, target_id=c.target_id)
        link = replace(current, status="disabled", status_at=datetime.now(UTC),
                       members=frozenset() if c.kind == "group" else current.members)
        return _Outcome(c, link=link, target_id=c.target_id)

    def _source_delete(self, c: Change) -> _Outcome:
        assert self.source is not None
        self.source.delete(c.kind, c.source_id)
        return _Outcome(c, drop=True, target_id=c.target_id)
