"""Compiling a rule's table into a source expression: the config grammar of mappings.

`RuleTable` is the table exactly as config may write it (pydantic at the edge, so each mistake
is reported with its key); `compile_source` turns it into a `syncd.mapping.sources` tree with
its transforms, checking that alternatives (then/else, cases, coalesce items) share one type.
Rule-level concerns (on_empty, apply, defaults, typed paths) stay in `syncd.mapping.rules`.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping as AbcMapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr
from pydantic import ValidationError as PydanticValidationError

from syncd.errors import ConfigError
from syncd.mapping.conditions import compile_condition
from syncd.mapping.sources import (
    ATTR,
    Coalesce,
    FromAttribute,
    If,
    Piped,
    Source,
    Switch,
    Type,
    Unique,
    const,
    parse_template,
)
from syncd.mapping.transforms import Pipeline, build_pipeline

OnEmpty = Literal["clear", "keep", "default"]
Apply = Literal["always", "on_create"]
#: A rule whose value names another object (a manager's DN, a Graph or SCIM id): the engine
#: resolves it through the links to the target's id of that object.
Reference = Literal["user", "group"]
_ATTR = ATTR

_Scalar = StrictStr | StrictBool | StrictInt


class RuleTable(BaseModel):
    """The table form of a rule, exactly as it may appear in config."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=False)

    from_: StrictStr | None = Field(None, alias="from")
    const: _Scalar | None = None
    template: StrictStr | None = None
    coalesce: list[Any] | None = Field(None, min_length=1)  # items checked by _coalesce_item
    unique: list[Any] | None = Field(None, min_length=1)  # as coalesce
    unique_limit: int = Field(99, ge=1, le=10_000)
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


_SOURCE_KEYS = ("from", "const", "template", "coalesce", "if", "switch", "unique")
#: Keys that belong to one source: (key, the source it needs).
_COMPANIONS = (("then", "if"), ("else", "if"), ("cases", "switch"), ("case_sensitive", "switch"),
               ("unique_limit", "unique"))
#: Keys about the rule as a whole, not allowed in a nested expression.
_RULE_ONLY = ("on_empty", "default", "apply", "multi", "reference", "unique")
RULE_KEYS = (*_SOURCE_KEYS, "then", "else", "cases", "case_sensitive", "unique_limit",
             "transform", *_RULE_ONLY[:-1])


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


TYPE_WORDS = {"str": "a string", "bool": "a boolean", "int": "an integer"}


def _same_type(named: list[tuple[str, Source]], where: str) -> Type:
    """The common type of alternative results; mixing them is a config error."""
    first_key, first = named[0]
    for key, src in named[1:]:
        if src.type != first.type:
            raise ConfigError(f"{first_key} yields {TYPE_WORDS[first.type]} but {key} yields "
                              f"{TYPE_WORDS[src.type]}; alternatives must have one type",
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
    source, pipeline = compile_source(spec, where, key)
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


def compile_source(table: AbcMapping[str, Any], where: str, label: str = ""
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
        elif t.unique is not None:
            items = tuple(_coalesce_item(c, where, f"unique[{i}]")
                          for i, c in enumerate(t.unique))
            if _same_type([(f"unique[{i}]", s) for i, s in enumerate(items)], where) != "str":
                raise ConfigError("unique candidates are strings", where=where)
            source = Unique(items, t.unique_limit)
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
        raise ConfigError(f"{pre}{source} yields {TYPE_WORDS[source.type]}, which takes no "
                          "transform", where=where)
    return source, pipeline


