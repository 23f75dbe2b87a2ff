"""What a flow would certainly refuse, answered to the sender before anything is stored.

A received resource is evaluated through the mapping of every flow that reads the directory
(``source`` = the ``scim_inbox`` connector), exactly as a cycle would read it
(`syncd.cycle.read`): the same raw attributes (`syncd.state.inbox_source.flatten`), the
scope first, then the mapping. Two outcomes are certain refusals, so the client gets a 400
(RFC 7644 §3.12, ``scimType: invalidValue``) that says why, which Entra ID shows in its
provisioning logs, instead of a 201 for a change that would then be held forever:

- the mapping cannot read a value (`syncd.mapping.rules.MappingError`: a transform or a
  typed test fails on it);
- the mapping yields an empty identifier (userName of a user, displayName of a group:
  `Mapping.empty_identifier`).

Not refusals: an entry out of a flow's scope (that flow just does not take it), a scope that
cannot be decided (held at plan time), a ``unique`` rule's choice, a collision on the target,
the target being down: those are decided later, at plan or apply time, visible in ``syncd
status`` / ``syncd log`` and retried like every other change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from syncd.mapping.conditions import ConditionError
from syncd.mapping.rules import MappingError
from syncd.model import Kind
from syncd.state.inbox import scrubbed
from syncd.state.inbox_source import flatten


class Refusals:
    """Checks received resources against the flows reading `directory` of the config that
    `config` returns (called per request: a reloaded daemon checks with the new flows)."""

    def __init__(self, config: Callable[[], Any], directory: str) -> None:
        self.config = config
        self.directory = directory

    def flows(self) -> list[Any]:
        cfg = self.config()
        return [f for _, f in sorted(cfg.flows.items()) if f.source == self.directory]

    def why(self, kind: Kind, rid: str, body: Mapping[str, Any]) -> str | None:
        """Why the resource `body` (as it would be stored) would be refused, or None."""
        raw = flatten(scrubbed(body), rid)
        for flow in self.flows():
            kf = flow.kind(kind)
            if kf is None:
                continue
            try:
                if kf.scope.failing(raw) is not None:
                    continue  # out of this flow's scope: nothing it would refuse
            except ConditionError:
                continue  # undecidable: held at plan time, not refused here
            try:
                attrs = kf.mapping.map(raw)
            except MappingError as exc:
                return f"flow {flow.name!r} cannot map this {kind}: {exc}"
            empty = kf.mapping.empty_identifier(kind, attrs)
            if empty is not None:
                return (f"flow {flow.name!r} cannot map this {kind}: "
                        f"{empty.removesuffix(': the entry is held')}")
        return None
