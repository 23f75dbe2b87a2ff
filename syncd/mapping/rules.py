"""Declarative attribute mapping: raw source attributes -> canonical attributes.

The canonical path is the key, the rule is the value, so a mapping reads like the target object.
Rules are parsed once (pydantic at the edge, so every mistake is reported with its key path) and
compiled into small frozen objects; ``Mapping.map`` then runs per entry with no parsing at all,
which matters at 100k users.

A rule's *result* is a canonical `Value`; "empty" means no non-empty value survived. What an
empty result means to the target is the rule's choice (`on_empty`): clear the attribute (value
``None``), leave it unmanaged this time (key absent), or use a default.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr
from pydantic import ValidationError as PydanticValidationError

from syncd.errors import ConfigError, Rejected
from syncd.mapping.conditions import ConditionError, compile_condition
from syncd.mapping.sources import (
    ATTR,
    Coalesce,
    Const,
    EvalError,
    FromAttribute,
    If,
    Piped,
    Source,
    Switch,
    Trace,
    Type,
    Values,
    const,
    parse_template,
    run_pipeline,
)
from syncd.mapping.transforms import Pipeline, build_pipeline
from syncd.model import RawAttrs, Value
from syncd.redact import SECRET_ATTRIBUTE

OnEmpty = Literal["clear", "keep", "default"]
Apply = Literal["always", "on_create"]
#: A rule whose value names another object (a manager's DN, a Graph or SCIM id): the engine
#: resolves it through the links to the target's id of that object.
Reference = Literal["user", "group"]

_ATTR = ATTR
#: Canonical paths: flattened SCIM paths such as ``name.givenName`` or ``emails.work``, or an
#: attribute of a schema extension named by its URN as SCIM writes it (RFC 7644 section 3.10):
#: ``urn:ietf:params:scim:schemas:extension:acme:2.0:User:costCenter`` -- the URN is everything
#: before the last colon, the attribute path (``manager.value``) what follows.
_PATH = re.compile(r"^(urn:[A-Za-z0-9._:-]+:)?"
                   r"[A-Za-z_$][A-Za-z0-9_$-]*(\.[A-Za-z0-9_$][A-Za-z0-9_$-]*)*$")


#: Server-maintained (operational) attributes and ids: never written back to a source.
READ_ONLY_ATTRIBUTES = frozenset({
    "entryuuid", "objectguid", "objectsid", "entrydn", "entrycsn", "createtimestamp",
    "modifytimestamp", "creatorsname", "modifiersname", "memberof", "whencreated",
    "whenchanged", "usnchanged", "usncreated", "dn", "id", "meta.lastmodified",
    "meta.created"})


class MappingError(Rejected):
    """One entry cannot be mapped; the engine skips it and records why."""

    def __init__(self, path: str, attribute: str, reason: str) -> None:
        self.path = path
        self.attribute = attribute
        self.reason = reason
        #: The expression's steps up to the failure, when `Rule.trace` ran it.
        self.trace: list[tuple[str, Any]] = []
        super().__init__(f"mapping {path!r} (from {attribute}): {reason}")


class Keep:
    """Sentinel: the rule does not manage its path for this entry."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP = Keep()


# --- rules ---------------------------------------------------------------------------------


#: Paths whose canonical value is a boolean: a string-typed rule for them is read as one
#: (TRUE/FALSE, 1/0, yes/no) or the entry is held -- never sent as the string "FALSE".
BOOLEAN_PATHS = frozenset({"active"})


@dataclass(frozen=True)
class Rule:
    """One compiled rule. `default` is already shaped for `multi` (tuple or scalar)."""

    path: str
    source: Source
    pipeline: Pipeline = field(default_factory=Pipeline)
    on_empty: OnEmpty = "clear"
    default: Value = None
    apply: Apply = "always"
    multi: bool = False
    reference: Reference | None = None

    @property
    def type(self) -> Type:
        return "bool" if self.pipeline.to_bool else self.source.type

    def _values(self, raw: RawAttrs, trace: Trace | None) -> Values:
        try:
            values, label = self.source.read(raw, trace)
            if self.pipeline:
                values = run_pipeline(self.pipeline, values, label,  # type: ignore[arg-type]
                                      trace)
        except EvalError as e:
            raise MappingError(self.path, e.label, e.reason) from None
        except ConditionError as e:
            raise MappingError(self.path, e.attribute, f"{e.value!r} {e.reason}") from None
        return values

    def evaluate(self, raw: RawAttrs) -> Value | Keep:
        """The rule's result for one entry: a value, ``None`` (clear) or `KEEP`."""
        return self._shape(self._values(raw, None))

    def _shape(self, result: Values) -> Value | Keep:
        if not result:
            if self.on_empty == "keep":
                return KEEP
            return self.default if self.on_empty == "default" else None
        if self.multi:
            return cast(tuple[str, ...], result)  # config forbids multi with bool results
        return result[0]

    def trace(self, raw: RawAttrs) -> tuple[Trace, Value | Keep]:
        """Each step of the expression for one entry, for ``test-mapping``; raises like
        `evaluate` (the steps recorded so far are on the exception's ``trace``)."""
        steps: Trace = []
        try:
            return steps, self._shape(self._values(raw, steps))
        except MappingError as e:
            e.trace = steps
            raise

    def source_attributes(self) -> frozenset[str]:
        return self.source.attributes()

    def describe(self) -> str:
        """One line for logs and ``explain``: where the value comes from and what happens."""
        secret = SECRET_ATTRIBUTE.search(self.path) is not None
        # a constant or default for a password is the password: never in a description
        parts = ["const [redacted]" if secret and isinstance(self.source, Const)
                 else str(self.source)]
        if self.pipeline:
            parts.append(str(self.pipeline))
        if self.on_empty != "clear":
            shown = "[redacted]" if secret else repr(self.default)
            extra = f" {shown}" if self.on_empty == "default" else ""
            parts.append(f"on_empty={self.on_empty}{extra}")
        if self.apply != "always":
            parts.append(f"apply={self.apply}")
        if self.multi:
            parts.append("multi")
        if self.reference:
            parts.append(f"reference to a {self.reference}")
        return " | ".join(parts)


_Scalar = StrictStr | StrictBool | StrictInt


class RuleTable(BaseModel):
    """The table form of a rule, exactly as it may appear in config."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=False)

    from_: StrictStr | None = Field(None, alias="from")
    const: _Scalar | None = None
    template: StrictStr | None = None
    coalesce: list[Any] | None = Field(None, min_length=1)  # items checked by _coalesce_item
    if_: dict[str, Any] | None = Field(None, alias="if")
    then: _Scalar | dict[str, Any] | None = None
    else_: _Scalar | dict[str, Any] | None = Field(None, alias="else")
    switch: StrictStr | None = None
    cases: dict[str, _Scalar | dict[str, Any]] | None = Field(None, min_length=1)
    case_sensitive: StrictBool = False
    transform: Any = None  # checked by syncd.mapping.transforms, which gives better messages
    on_empty: OnEmpty | None = None
    default: _Scalar | list[StrictStr] | None = None
    apply: Apply = "always"
    multi: StrictBool = False
    reference: Reference | None = None


_SOURCE_KEYS = ("from", "const", "template", "coalesce", "if", "switch")
#: Keys that belong to one source: (key, the source it needs).
_COMPANIONS = (("then", "if"), ("else", "if"), ("cases", "switch"), ("case_sensitive", "switch"))
#: Keys about the rule as a whole, not allowed in a nested expression.
_RULE_ONLY = ("on_empty", "default", "apply", "multi", "reference")
RULE_KEYS = (*_SOURCE_KEYS, "then", "else", "cases", "case_sensitive", "transform",
             *_RULE_ONLY)


#: What a key accepts, for union-typed keys whose pydantic errors come one per union member.
_EXPECTED = {"const": "a string, boolean or integer",
             "default": "a string, boolean, integer or list of strings",
             "then": "a value or an expression table", "else": "a value or an expression table",
             "coalesce": "a list of attribute names, templates or expression tables",
             "if": "a condition table", "cases": "a table of value = result"}


def _pydantic_error(e: PydanticValidationError, table: AbcMapping[str, Any], where: str,
                    pre: str = "") -> ConfigError:
    err = e.errors()[0]
    key = str(err["loc"][0]) if err["loc"] else ""
    if err["type"] == "extra_forbidden":
        hint = difflib.get_close_matches(key, RULE_KEYS, n=1, cutoff=0.6)
        msg = f"unknown key {key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
        return ConfigError(f"{pre}{msg}; a rule takes: {', '.join(RULE_KEYS)}", where=where)
    if key in _EXPECTED:
        return ConfigError(f"{pre}{key}: expected {_EXPECTED[key]} (got {table.get(key)!r})",
                           where=where)
    index = "".join(f"[{p}]" for p in err["loc"][1:] if isinstance(p, int))
    return ConfigError(f"{pre}{key}{index}: {err['msg']} (got {err['input']!r})", where=where)


def _attr(name: str, key: str) -> str:
    if not _ATTR.match(name):
        raise ValueError(f"{key}: {name!r} is not an attribute name")
    return name.lower()


_TYPE_WORDS = {"str": "a string", "bool": "a boolean", "int": "an integer"}


def _same_type(named: list[tuple[str, Source]], where: str) -> Type:
    """The common type of alternative results; mixing them is a config error."""
    first_key, first = named[0]
    for key, src in named[1:]:
        if src.type != first.type:
            raise ConfigError(f"{first_key} yields {_TYPE_WORDS[first.type]} but {key} yields "
                              f"{_TYPE_WORDS[src.type]}; alternatives must have one type",
                              where=where)
    return first.type


def _nested(spec: object, where: str, key: str) -> Source:
    """A result inside if/switch/coalesce: a scalar is a constant, a table an expression."""
    if isinstance(spec, bool | int | str):
        return const(spec)
    if not isinstance(spec, AbcMapping):
        raise ConfigError(f"{key}: expected a value or an expression table, got {spec!r}",
                          where=where)
    outside = [k for k in _RULE_ONLY if k in spec]
    if outside:
        raise ConfigError(f"{key}: {outside[0]} applies to the whole rule, not to a nested "
                          "expression", where=where)
    source, pipeline = _compile_source(spec, where, key)
    return Piped(source, pipeline) if pipeline else source


def _coalesce_item(spec: object, where: str, key: str) -> Source:
    if isinstance(spec, str):  # as at the top of a rule: an attribute name or a template
        if "{" in spec or "}" in spec:
            return parse_template(spec)
        return FromAttribute(_attr(spec, key))
    if isinstance(spec, AbcMapping):
        return _nested(spec, where, key)
    raise ConfigError(f"{key}: expected an attribute name, a template or an expression table, "
                      f"got {spec!r}", where=where)


def _compile_source(table: AbcMapping[str, Any], where: str, label: str = ""
                    ) -> tuple[Source, Pipeline]:
    """The source and transforms of a rule or nested expression table."""
    pre = f"{label}: " if label else ""
    try:
        t = RuleTable.model_validate(dict(table))
    except PydanticValidationError as e:
        raise _pydantic_error(e, table, where, pre) from None
    given = [k for k in _SOURCE_KEYS if table.get(k) is not None]
    if len(given) != 1:
        what = f"{len(given)} given ({', '.join(given)})" if given else "none given"
        raise ConfigError(f"{pre}a rule needs exactly one of {', '.join(_SOURCE_KEYS)}; "
                          f"{what}", where=where)
    for key, needs in _COMPANIONS:
        if key in table and given[0] != needs:
            raise ConfigError(f"{pre}{key} goes with {needs}", where=where)
    sub = f"{label}." if label else ""
    pipeline = build_pipeline(t.transform, where, f"{sub}transform")
    source: Source
    try:
        if t.from_ is not None:
            source = FromAttribute(_attr(t.from_, "from"))
        elif t.coalesce is not None:
            items = tuple(_coalesce_item(c, where, f"{sub}coalesce[{i}]")
                          for i, c in enumerate(t.coalesce))
            typ = _same_type([(f"{sub}coalesce[{i}]", s) for i, s in enumerate(items)], where)
            source = Coalesce(items, typ)
        elif t.template is not None:
            source = parse_template(t.template)
        elif t.if_ is not None:
            cond = compile_condition(t.if_, f"{where}.{sub}if")
            then = None if t.then is None else _nested(t.then, where, f"{sub}then")
            else_ = None if t.else_ is None else _nested(t.else_, where, f"{sub}else")
            branches = [(k, b) for k, b in ((f"{sub}then", then), (f"{sub}else", else_))
                        if b is not None]
            source = If(cond, then, else_, _same_type(branches, where) if branches else "bool")
        elif t.switch is not None:
            if not t.cases:
                raise ConfigError(f"{pre}switch needs cases = {{ value = result, ... }}",
                                  where=where)
            cs = t.case_sensitive
            cases = tuple((k if cs else k.casefold(), _nested(v, where, f"{sub}cases.{k}"))
                          for k, v in t.cases.items())
            typ = _same_type([(f"{sub}cases.{k}", v) for k, v in cases], where)
            source = Switch(_attr(t.switch, "switch"), cases, cs, typ)
        else:
            assert t.const is not None
            source = const(t.const)
    except ValueError as e:
        raise ConfigError(pre + str(e), where=where) from None
    if pipeline and source.type != "str":
        raise ConfigError(f"{pre}{source} yields {_TYPE_WORDS[source.type]}, which takes no "
                          "transform", where=where)
    return source, pipeline


def _compile_table(path: str, table: AbcMapping[str, Any], where: str) -> Rule:
    source, pipeline = _compile_source(table, where)
    t = RuleTable.model_validate(dict(table))
    typ = "bool" if pipeline.to_bool else source.type
    if t.multi and typ != "str":
        raise ConfigError(f"multi = true needs string values, but this rule yields "
                          f"{_TYPE_WORDS[typ]}", where=where)

    on_empty: OnEmpty = t.on_empty or ("default" if t.default is not None else "clear")
    default: Value = None
    if on_empty == "default":
        if t.default is None:
            raise ConfigError('on_empty = "default" needs a default value', where=where)
        default = _shape_default(t.default, t.multi, where)
    elif t.default is not None:
        raise ConfigError(f'default is only used with on_empty = "default" (on_empty is '
                          f'{on_empty!r})', where=where)
    if t.reference is not None and not isinstance(source, FromAttribute | Coalesce):
        raise ConfigError("reference = ... needs from or coalesce: the value must be the "
                          "referenced object's name or id as the source holds it", where=where)
    return _typed(Rule(path, source, pipeline, on_empty, default, t.apply, t.multi,
                       t.reference), where)


def _typed(rule: Rule, where: str) -> Rule:
    """Make a boolean path's rule yield booleans: strings are read as TRUE/FALSE (or held)."""
    if rule.path not in BOOLEAN_PATHS or rule.type == "bool":
        return rule
    if rule.type != "str" or rule.multi:
        raise ConfigError(f"{rule.path} is a boolean; this rule yields "
                          f"{'several values' if rule.multi else _TYPE_WORDS[rule.type]}",
                          where=where)
    steps = (*rule.pipeline.steps, *build_pipeline("bool", where).steps)
    return Rule(rule.path, rule.source, Pipeline(steps, to_bool=True), rule.on_empty,
                rule.default, rule.apply, rule.multi, rule.reference)


def _shape_default(value: str | bool | int | list[str], multi: bool, where: str) -> Value:
    if multi:
        if isinstance(value, list):
            return tuple(value)
        if isinstance(value, str):
            return (value,)
        raise ConfigError(f"multi = true needs a string or list of strings as default, got "
                          f"{value!r}", where=where)
    if isinstance(value, list):
        raise ConfigError("a list default needs multi = true", where=where)
    return value


def compile_rule(path: str, spec: object, where: str) -> Rule:
    """Compile one rule in any of its config forms; `where` already names the path."""
    if not _PATH.match(path):
        raise ConfigError(f"{path!r} is not a canonical attribute path", where=where)
    if isinstance(spec, bool | int):
        return _typed(Rule(path, const(spec)), where)
    if isinstance(spec, str):
        if "{" in spec or "}" in spec:
            try:
                return _typed(Rule(path, parse_template(spec)), where)
            except ValueError as e:
                raise ConfigError(str(e), where=where) from None
        if not _ATTR.match(spec):
            raise ConfigError(f"{spec!r} is not an attribute name; for a fixed value write "
                              f"{{ const = {json.dumps(spec)} }}", where=where)
        return _typed(Rule(path, FromAttribute(spec.lower())), where)
    if isinstance(spec, AbcMapping):
        return _compile_table(path, spec, where)
    raise ConfigError(f"a rule is an attribute name, a template, a constant or a table; got "
                      f"{spec!r}", where=where)
