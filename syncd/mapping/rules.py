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
import string
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr
from pydantic import ValidationError as PydanticValidationError

from syncd.errors import ConfigError, Rejected
from syncd.mapping.transforms import Pipeline, TransformError, build_pipeline
from syncd.model import RawAttrs, Value
from syncd.redact import SECRET_ATTRIBUTE

OnEmpty = Literal["clear", "keep", "default"]
Apply = Literal["always", "on_create"]
#: A rule whose value names another object (a manager's DN, a Graph or SCIM id): the engine
#: resolves it through the links to the target's id of that object.
Reference = Literal["user", "group"]

#: Source attribute names: LDAP names and OIDs, AD/Graph names, options (``cert;binary``) and
#: dotted names from a SCIM or Graph source. No spaces, so a constant is never taken for one.
_ATTR = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.;:-]*$")
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
        super().__init__(f"mapping {path!r} (from {attribute}): {reason}")


class Keep:
    """Sentinel: the rule does not manage its path for this entry."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP = Keep()


# --- sources -------------------------------------------------------------------------------


def _values(raw: RawAttrs, attr: str) -> tuple[str, ...]:
    vals = raw.get(attr, ())
    # Fast path: connectors rarely hand over empty strings, so avoid rebuilding the tuple.
    return vals if all(vals) else tuple(v for v in vals if v)


@dataclass(frozen=True)
class FromAttribute:
    attr: str  # lower-cased

    def read(self, raw: RawAttrs) -> tuple[tuple[str, ...], str]:
        return _values(raw, self.attr), self.attr

    def attributes(self) -> frozenset[str]:
        return frozenset({self.attr})

    def __str__(self) -> str:
        return f"from {self.attr}"


@dataclass(frozen=True)
class _Coalesce:
    attrs: tuple[str, ...]

    def read(self, raw: RawAttrs) -> tuple[tuple[str, ...], str]:
        for a in self.attrs:
            vals = _values(raw, a)
            if vals:
                return vals, a
        return (), "/".join(self.attrs)

    def attributes(self) -> frozenset[str]:
        return frozenset(self.attrs)

    def __str__(self) -> str:
        return f"coalesce {', '.join(self.attrs)}"


@dataclass(frozen=True)
class _Template:
    text: str
    #: (literal, lower-cased attribute or None) pairs, as string.Formatter parses them.
    parts: tuple[tuple[str, str | None], ...]

    def read(self, raw: RawAttrs) -> tuple[tuple[str, ...], str]:
        out: list[str] = []
        found = False
        for literal, attr in self.parts:
            out.append(literal)
            if attr is not None:
                vals = _values(raw, attr)
                if vals:
                    found = True
                    out.append(vals[0])  # a template builds one string: first value wins
        if not found:
            return (), self.text
        text = "".join(out).strip()
        return ((text,) if text else ()), self.text

    def attributes(self) -> frozenset[str]:
        return frozenset(a for _, a in self.parts if a is not None)

    def __str__(self) -> str:
        return f"template {self.text!r}"


@dataclass(frozen=True)
class _Const:
    value: str | bool | int

    def read(self, raw: RawAttrs) -> tuple[tuple[str, ...], str]:
        # Only string constants reach here: bool/int constants bypass the pipeline.
        return ((str(self.value),) if self.value != "" else ()), "const"

    def attributes(self) -> frozenset[str]:
        return frozenset()

    def __str__(self) -> str:
        return f"const {self.value!r}"


_Source = FromAttribute | _Coalesce | _Template | _Const


def _parse_template(text: str) -> _Template:
    """Parse with str.format's grammar (``{{`` escapes) but allow only bare attribute names."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as e:
        raise ValueError(f"invalid template {text!r}: {e}") from None
    parts: list[tuple[str, str | None]] = []
    for literal, name, spec, conv in parsed:
        if name is None:
            parts.append((literal, None))
            continue
        if conv or spec:
            raise ValueError(f"template field {{{name}}}: conversions and format specs "
                             "are not supported")
        if not _ATTR.match(name):
            raise ValueError(f"template field {{{name}}} is not an attribute name")
        parts.append((literal, name.lower()))
    if not any(a for _, a in parts):
        raise ValueError(f"template {text!r} references no attribute; use const for a fixed "
                         "value")
    return _Template(text, tuple(parts))


# --- rules ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One compiled rule. `default` is already shaped for `multi` (tuple or scalar)."""

    path: str
    source: _Source
    pipeline: Pipeline = field(default_factory=Pipeline)
    on_empty: OnEmpty = "clear"
    default: Value = None
    apply: Apply = "always"
    multi: bool = False
    reference: Reference | None = None

    def evaluate(self, raw: RawAttrs) -> Value | Keep:
        """The rule's result for one entry: a value, ``None`` (clear) or `KEEP`."""
        src = self.source
        if isinstance(src, _Const) and not isinstance(src.value, str):
            return src.value
        values, label = src.read(raw)
        result: tuple[str, ...] | tuple[bool, ...] = values
        if self.pipeline:
            try:
                result = self.pipeline(values)
            except TransformError as e:
                raise MappingError(self.path, label, f"{e.transform}: {e.value!r} {e.reason}"
                                   ) from None
        if not result:
            if self.on_empty == "keep":
                return KEEP
            return self.default if self.on_empty == "default" else None
        if self.multi:
            return cast(tuple[str, ...], result)  # config forbids multi with bool results
        return result[0]

    def source_attributes(self) -> frozenset[str]:
        return self.source.attributes()

    def describe(self) -> str:
        """One line for logs and ``explain``: where the value comes from and what happens."""
        secret = SECRET_ATTRIBUTE.search(self.path) is not None
        # a constant or default for a password is the password: never in a description
        parts = ["const [redacted]" if secret and isinstance(self.source, _Const)
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
    coalesce: list[StrictStr] | None = Field(None, min_length=1)
    transform: Any = None  # checked by syncd.mapping.transforms, which gives better messages
    on_empty: OnEmpty | None = None
    default: _Scalar | list[StrictStr] | None = None
    apply: Apply = "always"
    multi: StrictBool = False
    reference: Reference | None = None


RULE_KEYS = ("from", "const", "template", "coalesce", "transform", "on_empty", "default",
              "apply", "multi", "reference")
_SOURCE_KEYS = ("from", "const", "template", "coalesce")


#: What a key accepts, for union-typed keys whose pydantic errors come one per union member.
_EXPECTED = {"const": "a string, boolean or integer",
             "default": "a string, boolean, integer or list of strings"}


def _pydantic_error(e: PydanticValidationError, table: AbcMapping[str, Any], where: str
                    ) -> ConfigError:
    err = e.errors()[0]
    key = str(err["loc"][0]) if err["loc"] else ""
    if err["type"] == "extra_forbidden":
        hint = difflib.get_close_matches(key, RULE_KEYS, n=1, cutoff=0.6)
        msg = f"unknown key {key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
        return ConfigError(f"{msg}; a rule takes: {', '.join(RULE_KEYS)}", where=where)
    if key in _EXPECTED:
        return ConfigError(f"{key}: expected {_EXPECTED[key]} (got {table.get(key)!r})",
                           where=where)
    index = "".join(f"[{p}]" for p in err["loc"][1:] if isinstance(p, int))
    return ConfigError(f"{key}{index}: {err['msg']} (got {err['input']!r})", where=where)


def _attr(name: str, key: str) -> str:
    if not _ATTR.match(name):
        raise ValueError(f"{key}: {name!r} is not an attribute name")
    return name.lower()


def _compile_table(path: str, table: AbcMapping[str, Any], where: str) -> Rule:
    try:
        t = RuleTable.model_validate(dict(table))
    except PydanticValidationError as e:
        raise _pydantic_error(e, table, where) from None
    given = [k for k in _SOURCE_KEYS if table.get(k) is not None]
    if len(given) != 1:
        what = f"{len(given)} given ({', '.join(given)})" if given else "none given"
        raise ConfigError(f"a rule needs exactly one of {', '.join(_SOURCE_KEYS)}; {what}",
                          where=where)
    pipeline = build_pipeline(t.transform, where)
    try:
        source: _Source
        if t.from_ is not None:
            source = FromAttribute(_attr(t.from_, "from"))
        elif t.coalesce is not None:
            source = _Coalesce(tuple(_attr(a, "coalesce") for a in t.coalesce))
        elif t.template is not None:
            source = _parse_template(t.template)
        else:
            assert t.const is not None
            source = _Const(t.const)
    except ValueError as e:
        raise ConfigError(str(e), where=where) from None

    if isinstance(source, _Const) and not isinstance(source.value, str):
        if pipeline:
            raise ConfigError("a boolean or integer const takes no transform", where=where)
        if t.multi:
            raise ConfigError("multi = true needs string values; const is "
                              f"{source.value!r}", where=where)
    if t.multi and pipeline.to_bool:
        raise ConfigError("multi = true needs string values, but the bool transform yields "
                          "a boolean", where=where)

    on_empty: OnEmpty = t.on_empty or ("default" if t.default is not None else "clear")
    default: Value = None
    if on_empty == "default":
        if t.default is None:
            raise ConfigError('on_empty = "default" needs a default value', where=where)
        default = _shape_default(t.default, t.multi, where)
    elif t.default is not None:
        raise ConfigError(f'default is only used with on_empty = "default" (on_empty is '
                          f'{on_empty!r})', where=where)
    if t.reference is not None and not isinstance(source, FromAttribute | _Coalesce):
        raise ConfigError("reference = ... needs from or coalesce: the value must be the "
                          "referenced object's name or id as the source holds it", where=where)
    return Rule(path, source, pipeline, on_empty, default, t.apply, t.multi, t.reference)


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
        return Rule(path, _Const(spec))
    if isinstance(spec, str):
        if "{" in spec or "}" in spec:
            try:
                return Rule(path, _parse_template(spec))
            except ValueError as e:
                raise ConfigError(str(e), where=where) from None
        if not _ATTR.match(spec):
            raise ConfigError(f"{spec!r} is not an attribute name; for a fixed value write "
                              f"{{ const = {json.dumps(spec)} }}", where=where)
        return Rule(path, FromAttribute(spec.lower()))
    if isinstance(spec, AbcMapping):
        return _compile_table(path, spec, where)
    raise ConfigError(f"a rule is an attribute name, a template, a constant or a table; got "
                      f"{spec!r}", where=where)


