"""The config file: TOML, validated by pydantic, every error naming file, key path and reason.

Validation happens completely before anything connects or writes, so a bad config is exit 2
with nothing touched. Connector tables are validated by the connector type's own model
(found through the entry-point registry); mappings and scopes by `syncd.mapping` and
`syncd.scope`; cross references (flow -> connector, match key -> mapped path) here.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from syncd import registry
from syncd.checks import ListenAddress
from syncd.connector import ConnectorConfig
from syncd.durations import parse_duration
from syncd.errors import ConfigError
from syncd.mapping import Mapping
from syncd.model import Kind
from syncd.scope import Scope
from syncd.secrets import Secret

DEFAULT_STATE_FILE = "syncd-state.db"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _state_url(v: str) -> str:
    from syncd.store_open import check_state_url

    return check_state_url(v)


def _cron(v: str) -> str:
    from syncd.crontab import check_cron

    return check_cron(v)


class StateModel(_Strict):
    url: Annotated[str, AfterValidator(_state_url)] | None = None
    #: The database password as a secret reference, for a server URL without one.
    password: Secret | None = None

    @model_validator(mode="after")
    def _password_use(self) -> StateModel:
        from syncd.store_open import check_password_use

        check_password_use(self.url, self.password)
        return self


class SafetyModel(_Strict):
    """Thresholds on every destructive effect, per flow. Deprovisioning: Entra Connect
    defaults to 500, Okta to 20%; a mapped ``active`` going true -> false counts as one."""

    max_deprovision: int = Field(default=500, ge=0)
    max_deprovision_percent: float = Field(default=20.0, ge=0, le=100)
    #: The percentage rule only bites above this many deprovisions, so that removing 2 of 5
    #: users in a small directory is not refused.
    percent_floor: int = Field(default=5, ge=0)
    #: Group member removals in one run, over all groups (a `member_attribute` typo removes
    #: every membership at once).
    max_member_removals: int = Field(default=500, ge=0)
    #: Share of one group's members removed in one run, once more than `member_floor` go.
    max_member_removal_percent: float = Field(default=50.0, ge=0, le=100)
    member_floor: int = Field(default=5, ge=0)
    #: Share of the linked objects of a kind whose same attribute is rewritten (a value
    #: replaced or cleared, not a first value) in one run, once more than `rewrite_floor`
    #: change: a bad mapping that rewrites every user's email is refused, not applied.
    max_rewrite_percent: float = Field(default=50.0, ge=0, le=100)
    rewrite_floor: int = Field(default=10, ge=0)


def _duration(v: str | None) -> str | None:
    if v is not None:
        parse_duration(v)
    return v


Duration = Annotated[str, AfterValidator(_duration)]


class ScheduleModel(_Strict):
    """When the daemon runs a flow: every `interval`, or on a 5-field `cron` expression."""

    interval: Duration | None = None
    cron: Annotated[str, AfterValidator(_cron)] | None = None
    jitter: Duration | None = None

    @model_validator(mode="after")
    def _one_of(self) -> ScheduleModel:
        if (self.interval is None) == (self.cron is None):
            raise ValueError("give exactly one of interval (e.g. \"5m\") or cron")
        return self


class MetricsModel(_Strict):
    listen: ListenAddress | None = None  # "127.0.0.1:9464"


Authority = Literal["source", "target", "newest", "manual"]


class KindModel(_Strict):
    mapping: dict[str, Any] = Field(default_factory=dict)
    scope: list[dict[str, Any]] = Field(default_factory=list)
    match: list[str] | None = None
    deprovision: Literal["disable", "delete", "ignore"] | None = None
    #: two_way: per-attribute authority overrides, and merge rules for multi-valued
    #: attributes (and "members" for groups)
    authority: dict[str, Authority] = Field(default_factory=dict)
    merge: dict[str, Literal["union", "replace"]] = Field(default_factory=dict)


class FlowModel(_Strict):
    source: str
    target: str
    mode: Literal["push", "two_way"] = "push"
    deprovision: Literal["disable", "delete", "ignore"] = "disable"
    #: After `disable`, hard-delete once the object has been disabled this long (None: never).
    delete_after: Duration | None = None
    #: Force a full read of the source when the last one is older than this.
    full_reconcile: Duration | None = "24h"
    schedule: ScheduleModel | None = None
    match: list[str] = Field(default_factory=lambda: ["userName"])
    # two_way only: default authority for conflicts, the `newest` tie-breaker, which side
    # may create on the other, and what a deleted target object means for its source.
    authority: Authority = "source"
    tie_breaker: Literal["source", "target"] = "source"
    create: Literal["both", "source", "none"] = "source"
    reverse_deprovision: Literal["recreate", "disable", "delete"] = "recreate"
    users: KindModel | None = None
    groups: KindModel | None = None
    safety: SafetyModel = Field(default_factory=SafetyModel)


class FileModel(_Strict):
    state: StateModel = Field(default_factory=StateModel)
    connectors: dict[str, dict[str, Any]] = Field(default_factory=dict)
    flows: dict[str, FlowModel] = Field(default_factory=dict)
    metrics: MetricsModel = Field(default_factory=MetricsModel)


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


def _loc(parts: tuple[int | str, ...]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _pydantic_error(exc: ValidationError, file: Path, prefix: str) -> ConfigError:
    lines = []
    for err in exc.errors(include_url=False, include_input=False):
        key = _loc(tuple(err["loc"]))
        full = f"{prefix}.{key}" if prefix and key else (prefix or key)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{file}: {full}: {msg}")
    return ConfigError("\n".join(lines))


def default_state_url() -> str:
    base = os.environ.get("STATE_DIRECTORY", "").split(":")[0] or "."
    return f"sqlite:///{Path(base).resolve() / DEFAULT_STATE_FILE}"


def load(path: str | os.PathLike[str]) -> Config:
    file = Path(path)
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{file}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read config: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not UTF-8: byte 0x{exc.object[exc.start]:02x} at offset "
                          f"{exc.start} ({exc.reason}); save the file as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    try:
        model = FileModel.model_validate(raw)
    except ValidationError as exc:
        raise _pydantic_error(exc, file, "") from None
    return _build(file, model)


def _build(file: Path, model: FileModel) -> Config:
    connectors: dict[str, ConnectorSpec] = {}
    classes: dict[str, type] = {}
    for name, table in model.connectors.items():
        where = f"{file}: connectors.{name}"
        type_name = table.get("type")
        if not isinstance(type_name, str):
            raise ConfigError("missing 'type' (e.g. type = \"ldap\")", where)
        cls = registry.load(type_name, where)
        try:
            cfg = cls.config_model.model_validate(table)
        except ValidationError as exc:
            raise _pydantic_error(exc, file, f"connectors.{name}") from None
        connectors[name] = ConnectorSpec(name, type_name, cfg)
        classes[name] = cls

    flows: dict[str, Flow] = {}
    for name, fm in model.flows.items():
        where = f"{file}: flows.{name}"
        for role in ("source", "target"):
            ref = getattr(fm, role)
            if ref not in connectors:
                known = ", ".join(sorted(connectors)) or "none defined"
                raise ConfigError(f"unknown connector {ref!r} (defined: {known})",
                                  f"{where}.{role}")
        if fm.source == fm.target:
            raise ConfigError("source and target must be different connectors", where)
        kinds: list[KindFlow] = []
        pairs: tuple[tuple[Kind, KindModel | None, str], ...] = (
            ("user", fm.users, "users"), ("group", fm.groups, "groups"))
        for kind, km, key in pairs:
            if km is None:
                continue
            kwhere = f"{where}.{key}"
            if not km.mapping:
                raise ConfigError("mapping is empty: map at least one attribute",
                                  f"{kwhere}.mapping")
            mapping = Mapping.from_config(km.mapping, f"{kwhere}.mapping")
            _check_paths(classes[fm.target], kind, mapping, f"{kwhere}.mapping")
            scope = Scope.from_config(km.scope, f"{kwhere}.scope")
            default_match = tuple(fm.match) if kind == "user" else tuple(
                p for p in ("displayName", "cn", "displayname") if p in mapping.paths)[:1]
            if kind == "group" and km.match is None and not default_match:
                raise ConfigError("groups are matched on displayName (or cn) by default and "
                                  "neither is mapped: set match = [...] for the groups",
                                  f"{kwhere}.match")
            match = tuple(km.match) if km.match is not None else default_match
            for m in match:
                if m not in mapping.paths:
                    raise ConfigError(
                        f"match key {m!r} is not a mapped attribute "
                        f"(mapped: {', '.join(mapping.paths)})",
                        f"{kwhere if km.match is not None else where}.match",
                    )
            for key2, table in (("authority", km.authority), ("merge", km.merge)):
                for path in table:
                    if path not in mapping.paths and not (key2 == "merge" and path == "members"):
                        raise ConfigError(f"{path!r} is not a mapped attribute",
                                          f"{kwhere}.{key2}.{path}")
            if fm.mode != "two_way" and (km.authority or km.merge):
                raise ConfigError("authority and merge apply to mode = \"two_way\" flows",
                                  f"{kwhere}")
            deprovision = km.deprovision or fm.deprovision
            kinds.append(KindFlow(kind, mapping, scope, match, deprovision,
                                  dict(km.authority), dict(km.merge)))
        if not kinds:
            raise ConfigError(
                "flow syncs nothing: add [users] and/or [groups] with a mapping", where)
        flows[name] = Flow(
            name, fm.source, fm.target, fm.mode, tuple(kinds), fm.safety,
            parse_duration(fm.delete_after) if fm.delete_after else None,
            parse_duration(fm.full_reconcile) if fm.full_reconcile else None,
            fm.schedule, fm.authority, fm.tie_breaker, fm.create, fm.reverse_deprovision)

    from syncd.store_open import StateURL

    state_url = StateURL(model.state.url or default_state_url(), model.state.password)
    return Config(file, state_url, connectors, flows, model.metrics)


def _check_paths(target_cls: type, kind: Kind, mapping: Mapping, where: str) -> None:
    """Catch typos like ``name.givenname`` at validate time when the target can tell."""
    known_paths = getattr(target_cls, "known_paths", None)
    if known_paths is None:
        return
    known = known_paths(kind)
    for path in mapping.paths:
        if path not in known:
            raise ConfigError(
                f"the target does not know attribute {path!r} for {kind}s "
                f"(known: {', '.join(sorted(known))})",
                f"{where}.{path}",
            )
