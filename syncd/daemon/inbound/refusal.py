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
  `Mapping.empty_identifier`);
- a create the flow's target knows, without a connection, it would refuse (the connector's
  optional ``refuses``: an LDAP entry without its RDN or an attribute its object classes
  require, e.g. ``sn`` of inetOrgPerson).

Not refusals: an entry out of a flow's scope (that flow just does not take it), a scope that
cannot be decided (held at plan time), a ``unique`` rule's choice, a collision on the target,
the target being down: those are decided later, at plan or apply time, visible in ``syncd
status`` / ``syncd log`` and retried like every other change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from syncd import registry
from syncd.mapping.conditions import ConditionError
from syncd.mapping.rules import MappingError
from syncd.model import Kind
from syncd.state.inbox import scrubbed
from syncd.state.inbox_source import flatten

log = logging.getLogger(__name__)


class Refusals:
    """Checks received resources against the flows reading `directory` of the config that
    `config` returns (called per request: a reloaded daemon checks with the new flows)."""

    def __init__(self, config: Callable[[], Any], directory: str) -> None:
        self.config = config
        self.directory = directory

    def flows(self) -> list[Any]:
        cfg = self.config()
        return [f for _, f in sorted(cfg.flows.items()) if f.source == self.directory]

    def why(self, kind: Kind, rid: str, body: Mapping[str, Any], *,
            create: bool = False) -> str | None:
        """Why the resource `body` (as it would be stored) would be refused, or None.
        `create`: a new resource -- the flows' targets are asked too (`_target`)."""
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
            refused = self._target(flow.target, kind, attrs) if create else None
            if refused is not None:
                return f"flow {flow.name!r} cannot create this {kind} in {flow.target}: {refused}"
        return None

    def _target(self, name: str, kind: Kind, attrs: Mapping[str, Any]) -> str | None:
        """What the target connector knows, without a connection, it would refuse to create
        (its optional ``refuses``; LDAP: no RDN, an attribute the object classes require).
        A target that cannot say, or fails to say, refuses nothing here."""
        spec = self.config().connectors.get(name)
        if spec is None:
            return None
        try:
            conn = registry.load(spec.type)(name, spec.config)  # type: ignore[call-arg]
            refuses = getattr(conn, "refuses", None)
            return None if refuses is None else refuses(kind, dict(attrs))
        except Exception:  # a check that cannot run is no refusal: the cycle decides
            log.debug("refusal check of %s failed", name, exc_info=True)
            return None
