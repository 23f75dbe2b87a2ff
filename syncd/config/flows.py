"""What a loaded config *is* to the rest of syncd: flows per kind with their mapping and scope
compiled, connector specs with their validated settings. Frozen values, built by `load`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from syncd.config.schema import (
    DEFAULT_JOURNAL_KEEP,
    AlertsModel,
    MetricsModel,
    SafetyModel,
    ScheduleModel,
    ServeModel,
    journal_keep_seconds,
)
from syncd.connector import ConnectorConfig
from syncd.mapping.attributes import Mapping
from syncd.mapping.scope import Scope
from syncd.model import Kind


@dataclass(frozen=True)
class KindFlow:
    """What one flow does for one kind, with the mapping and scope compiled."""

    kind: Kind
    mapping: Mapping
    scope: Scope
    match: tuple[str, ...]
    deprovision: Literal["disable", "delete", "ignore"]
    authority: dict[str, str] = field(default_factory=dict)
    merge: dict[str, str] = field(default_factory=dict)
    #: groups: ``direct`` (member groups left out), ``flatten`` (`syncd.plan.nesting`) or
    #: ``preserve`` (member groups as members, `syncd.cycle.preserve`).
    #: Not in the repr: `cycle.setup.fingerprint` adds it only when set, so the cursors of
    #: flows that do not use it stay valid.
    nested: str = field(default="direct", repr=False)
    #: users: only members (direct or nested) of these source groups, as the source names
    #: them (a DN, an id). In the repr only when set, like `nested`.
    member_of: tuple[str, ...] = field(default=(), repr=False)
    #: Per cycle (`syncd.cycle.membership`): the users the groups hold, what to say of the
    #: others, and whether "not a member" is proven (a complete listing naming every group).
    members_in: frozenset[str] | None = field(default=None, repr=False, compare=False)
    member_why: str = field(default="", repr=False, compare=False)
    member_proven: bool = field(default=True, repr=False, compare=False)
    member_digest: str = field(default="", repr=False, compare=False)


@dataclass(frozen=True)
class Flow:
    name: str
    source: str
    target: str
    mode: str
    kinds: tuple[KindFlow, ...]
    safety: SafetyModel
    delete_after: float | None = None
    full_reconcile: float | None = None
    schedule: ScheduleModel | None = None
    authority: str = "source"
    tie_breaker: str = "source"
    create: str = "source"
    reverse_deprovision: str = "recreate"

    def kind(self, kind: Kind) -> KindFlow | None:
        return next((k for k in self.kinds if k.kind == kind), None)


@dataclass(frozen=True)
class ConnectorSpec:
    name: str
    type: str
    config: ConnectorConfig


@dataclass(frozen=True)
class Config:
    path: Path
    state_url: str
    connectors: dict[str, ConnectorSpec]
    flows: dict[str, Flow]
    metrics: MetricsModel = field(default_factory=MetricsModel)
    #: ``[state] journal_keep`` as written ("90d", "forever").
    journal_keep: str = DEFAULT_JOURNAL_KEEP
    #: ``[alerts]``: webhooks and a command told about runs that need attention.
    alerts: AlertsModel = field(default_factory=AlertsModel)
    #: ``[serve]``: the SCIM service provider (None: not configured).
    serve: ServeModel | None = None

    @property
    def journal_keep_seconds(self) -> float | None:
        """How long the journal keeps runs, in seconds; None: forever."""
        return journal_keep_seconds(self.journal_keep)
