"""Reading the config file: TOML, validated by pydantic, every error naming file, key path and
reason.

Validation happens completely before anything connects or writes, so a bad config is exit 2
with nothing touched. Connector tables are validated by the connector type's own model
(found through the entry-point registry); mappings and scopes by `syncd.mapping`; cross
references (flow -> connector, match key -> mapped path) here.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from pydantic import BaseModel, ValidationError

from syncd import registry
from syncd.config.durations import parse_duration
from syncd.config.flows import Config, ConnectorSpec, Flow, KindFlow
from syncd.config.schema import (
    DEFAULT_STATE_FILE,
    AlertsModel,
    FileModel,
    KindModel,
    ServeModel,
)
from syncd.config.suggest import did_you_mean
from syncd.errors import ConfigError
from syncd.mapping.attributes import Mapping
from syncd.mapping.scope import Scope
from syncd.model import Kind
from syncd.secrets import DEFER


def _loc(parts: tuple[int | str, ...]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _pydantic_error(exc: ValidationError, file: Path, prefix: str,
                    model: type[BaseModel] | None = None) -> ConfigError:
    lines = []
    for err in exc.errors(include_url=False, include_input=False):
        key = _loc(tuple(err["loc"]))
        full = f"{prefix}.{key}" if prefix and key else (prefix or key)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key" + did_you_mean(model, tuple(err["loc"]))
        lines.append(f"{file}: {full}: {msg}")
    return ConfigError("\n".join(lines))


#: Where the packaged units read their configs and keep their state (``StateDirectory=syncd``
#: for syncd.service, ``syncd/%i`` for syncd@NAME.service with /etc/syncd/NAME.toml).
SERVICE_CONFIG_DIR = Path("/etc/syncd")
SERVICE_STATE_DIR = Path("/var/lib/syncd")


def default_state_url(config_file: Path | None = None) -> str:
    """The store used without ``[state] url``: the same for the service and for an admin's
    shell on that host, so a manual `syncd run` cannot adopt everything again into a second
    store beside the daemon's (and `status` cannot report "no runs yet" from one).

    1. ``$STATE_DIRECTORY`` (systemd sets it for the service);
    2. for a config in /etc/syncd: the service's state directory, /var/lib/syncd for
       syncd.toml and /var/lib/syncd/NAME for NAME.toml (syncd@NAME.service);
    3. otherwise next to the config file — never the current directory, which depends on
       where the command happened to be typed."""
    env = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if env:
        base = Path(env)
    elif config_file is not None and config_file.resolve().parent == SERVICE_CONFIG_DIR:
        stem = config_file.stem
        base = SERVICE_STATE_DIR if stem == "syncd" else SERVICE_STATE_DIR / stem
    elif config_file is not None:
        base = config_file.resolve().parent
    else:
        base = Path(".")
    return f"sqlite:///{base.resolve() / DEFAULT_STATE_FILE}"


def load(path: str | os.PathLike[str], *, secrets: bool = True,
         service: bool = False) -> Config:
    """The config at `path`, checked completely. `secrets=False` leaves the connectors'
    ``env:``/``file:`` references unresolved (`syncd.secrets.UnresolvedSecret`), for commands
    that open no connector; the state store's password is always resolved. The service's
    own secrets ([serve] tokens, [alerts] headers) are resolved only with `service=True`
    (the daemon, `syncd serve`): an admin's shell running `syncd run` does not hold the
    service's credentials and needs none of them."""
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
    # [alerts] apart: its header secrets, like the connectors', are resolved only by
    # commands that use them (the daemon), not by those that only read the store.
    alerts = raw.pop("alerts", None)
    serve = raw.pop("serve", None)
    try:
        model = FileModel.model_validate(raw)
    except ValidationError as exc:
        raise _pydantic_error(exc, file, "", FileModel) from None
    if alerts is not None:
        try:
            model = model.model_copy(update={"alerts": AlertsModel.model_validate(
                alerts, context=None if secrets and service else DEFER)})
        except ValidationError as exc:
            raise _pydantic_error(exc, file, "alerts") from None
    if serve is not None:
        try:
            model = model.model_copy(update={"serve": ServeModel.model_validate(
                serve, context=None if secrets and service else DEFER)})
        except ValidationError as exc:
            raise _pydantic_error(exc, file, "serve") from None
    return _build(file, model, secrets)


def _build(file: Path, model: FileModel, secrets: bool = True) -> Config:
    connectors: dict[str, ConnectorSpec] = {}
    classes: dict[str, type] = {}
    for name, table in model.connectors.items():
        where = f"{file}: connectors.{name}"
        type_name = table.get("type")
        if not isinstance(type_name, str):
            raise ConfigError("missing 'type' (e.g. type = \"ldap\")", where)
        cls = registry.load(type_name, where)
        try:
            cfg = cls.config_model.model_validate(table, context=None if secrets else DEFER)
        except ValidationError as exc:
            raise _pydantic_error(exc, file, f"connectors.{name}", cls.config_model) from None
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
            spell = _speller(classes[fm.target], kind)
            mapping, km = _respelt(spell, mapping, km, f"{kwhere}.mapping")
            _check_paths(classes[fm.target], kind, mapping, f"{kwhere}.mapping")
            scope = Scope.from_config(km.scope, f"{kwhere}.scope")
            default_match = tuple(map(spell, fm.match)) if kind == "user" else tuple(
                p for p in ("displayName", "cn", "displayname") if p in mapping.paths)[:1]
            if kind == "group" and km.match is None and not default_match:
                raise ConfigError("groups are matched on displayName (or cn) by default and "
                                  "neither is mapped: set match = [...] for the groups",
                                  f"{kwhere}.match")
            match = tuple(km.match) if km.match is not None else default_match
            for m in match:
                if any(r.path == m for r in mapping.unique_rules):
                    raise ConfigError(
                        f"match key {m!r} is a unique value, chosen when syncd creates the "
                        f"object: matching on it would adopt whoever already holds the value "
                        f"(another person's account); match on a stable key instead, e.g. "
                        f"match = [\"externalId\"]",
                        f"{kwhere if km.match is not None else where}.match")
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
            _check_nesting(kind, km, fm.mode, kwhere)
            if km.nested == "preserve" and not hasattr(classes[fm.target], "set_member_groups"):
                raise ConfigError(f"nested = \"preserve\" writes groups as members of groups, "
                                  f"which connector {fm.target!r} cannot do: use \"flatten\" "
                                  f"(the users of nested groups) or \"direct\"",
                                  f"{kwhere}.nested")
            kinds.append(KindFlow(kind, mapping, scope, match, deprovision,
                                  dict(km.authority), dict(km.merge),
                                  nested=km.nested or "direct",
                                  member_of=tuple(km.member_of)))
        if not kinds:
            raise ConfigError(
                "flow syncs nothing: add [users] and/or [groups] with a mapping", where)
        safety = fm.safety
        if safety.window is None and connectors[fm.source].type == "scim_inbox":
            # requests arrive one by one, each run small: count the flood, not the run
            safety = safety.model_copy(update={"window": INBOUND_WINDOW})
        flows[name] = Flow(
            name, fm.source, fm.target, fm.mode, tuple(kinds), safety,
            parse_duration(fm.delete_after) if fm.delete_after else None,
            parse_duration(fm.full_reconcile) if fm.full_reconcile else None,
            fm.schedule, fm.authority, fm.tie_breaker, fm.create, fm.reverse_deprovision)

    for i, ref in enumerate(model.alerts.flows or ()):
        if ref not in flows:
            known = ", ".join(sorted(flows)) or "none defined"
            raise ConfigError(f"unknown flow {ref!r} (defined: {known})",
                              f"{file}: alerts.flows[{i}]")

    from syncd.state.opening import StateURL

    url = _anchored(model.state.url, file) if model.state.url else default_state_url(file)
    state_url = StateURL(url, model.state.password)
    for name, cls in classes.items():  # connectors that read the store get its URL
        if getattr(cls, "uses_state_store", False):
            spec = connectors[name]
            connectors[name] = ConnectorSpec(name, spec.type, spec.config.model_copy(
                update={"state_url": state_url}))
    if model.serve is not None:
        _check_serve(model.serve, connectors, file)
    return Config(file, state_url, connectors, flows, model.metrics, model.state.journal_keep,
                  alerts=model.alerts, serve=model.serve)


def _check_serve(serve: ServeModel, connectors: dict[str, ConnectorSpec], file: Path) -> None:
    spec = connectors.get(serve.directory)
    if spec is None or spec.type != "scim_inbox":
        inboxes = ", ".join(sorted(n for n, c in connectors.items() if c.type == "scim_inbox"))
        raise ConfigError(f"{serve.directory!r} is not a connector of type \"scim_inbox\" "
                          f"(add [connectors.{serve.directory}] type = \"scim_inbox\"; "
                          f"defined: {inboxes or 'none'})", f"{file}: serve.directory")


#: The safety window of a flow reading a SCIM service provider's directory, unless set.
INBOUND_WINDOW = "1h"


def _anchored(url: str, file: Path) -> str:
    """A relative SQLite path (``sqlite:///state.db``: three slashes) is relative to the config
    file, not to wherever the command was typed: the service (cwd /) and an admin's shell
    must open the same store."""
    from syncd.state.opening import parse_state_url

    parsed = parse_state_url(url)
    db = parsed.database
    if parsed.get_backend_name() != "sqlite" or db in (None, "", ":memory:"):
        return url
    if Path(db).is_absolute():
        return url
    return parsed.set(database=str(file.resolve().parent / db)).render_as_string(
        hide_password=False)


def _check_nesting(kind: Kind, km: KindModel, mode: str, where: str) -> None:
    """``nested`` belongs to the groups of push flows, ``member_of`` to their users."""
    if km.nested is not None and kind != "group":
        raise ConfigError("nested is a setting of [groups] (what a member group means)",
                          f"{where}.nested")
    if mode == "two_way" and km.nested not in (None, "direct"):
        raise ConfigError("nested applies to mode = \"push\" flows: a two-way flow would "
                          "write the computed membership back into the source",
                          f"{where}.nested")
    if km.member_of and kind != "user":
        raise ConfigError("member_of is a setting of [users]: users who are members (direct "
                          "or nested) of these groups", f"{where}.member_of")
    if km.member_of and mode == "two_way":
        raise ConfigError("member_of applies to mode = \"push\" flows",
                          f"{where}.member_of")
    for i, name in enumerate(km.member_of):
        if not name.strip():
            raise ConfigError("an empty group name; name a group as the source does (an "
                              "LDAP DN, a Graph object id)", f"{where}.member_of[{i}]")


def _speller(target_cls: type, kind: Kind) -> Callable[[str], str]:
    """The target's one canonical name of a path (SCIM: ``enterprise.department`` for its full
    URN form too), or the path unchanged: one attribute, one name in links and plans."""
    spell = getattr(target_cls, "canonical_path", None)
    return (lambda p: p) if spell is None else (lambda p: str(spell(kind, p)))


def _respelt(spell: Callable[[str], str], mapping: Mapping, km: KindModel,
             where: str) -> tuple[Mapping, KindModel]:
    """Mapping keys, match keys, authority and merge in the target's canonical names."""
    seen: dict[str, str] = {}
    for r in mapping.rules:
        canon = spell(r.path)
        if canon in seen:
            raise ConfigError(f"{seen[canon]!r} and {r.path!r} name the same attribute "
                              f"({canon!r}): map it once", f"{where}.{r.path}")
        seen[canon] = r.path
    if all(spell(p) == p for p in (*seen.values(), *(km.match or ()), *km.authority,
                                   *km.merge)):
        return mapping, km
    km = km.model_copy(update={
        "match": None if km.match is None else [spell(m) for m in km.match],
        "authority": {spell(k): v for k, v in km.authority.items()},
        "merge": {spell(k): v for k, v in km.merge.items()}})
    return Mapping(tuple(replace(r, path=spell(r.path)) for r in mapping.rules)), km


def _check_paths(target_cls: type, kind: Kind, mapping: Mapping, where: str) -> None:
    """Catch typos like ``name.givenname`` at validate time when the target can tell: by
    its ``check_paths`` (a ValueError naming the path and why), else ``known_paths``."""
    check = getattr(target_cls, "check_paths", None)
    if check is not None:
        for path in mapping.paths:
            try:
                check(kind, [path])
            except ValueError as exc:
                raise ConfigError(f"the target does not know {kind} attribute {path!r}: "
                                  f"{exc}", f"{where}.{path}") from None
        return
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
