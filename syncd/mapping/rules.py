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

import json
import re
from collections.abc import Iterator
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass, field
from typing import Any, cast

from syncd.errors import ConfigError, Rejected
from syncd.mapping.conditions import ConditionError
from syncd.mapping.expressions import (
    TYPE_WORDS,
    Apply,
    OnEmpty,
    Reference,
    RuleTable,
    compile_source,
)
from syncd.mapping.sources import (
    ATTR,
    Coalesce,
    EvalError,
    FromAttribute,
    Source,
    Trace,
    Type,
    Unique,
    Values,
    const,
    parse_template,
    run_pipeline,
)
from syncd.mapping.transforms import Pipeline, build_pipeline
from syncd.model import RawAttrs, Value
from syncd.redact import SECRET_ATTRIBUTE

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
            if self.pipeline.steps:
                values = run_pipeline(self.pipeline, values, label,  # type: ignore[arg-type]
                                      trace)
        except EvalError as e:
            raise MappingError(self.path, e.label, e.reason) from None
        except ConditionError as e:
            raise MappingError(self.path, e.attribute, f"{e.value!r} {e.reason}") from None
        return values

    def evaluate(self, raw: RawAttrs) -> Value | Keep:
        """The rule's result for one entry: a value, ``None`` (clear) or `KEEP`.

        `_values` and `_shape` inlined: this runs once per rule and entry read (a million
        times in a 100k cycle), where each Python call is a measurable share."""
        try:
            result, label = self.source.read(raw, None)
            if self.pipeline.steps:
                result = run_pipeline(self.pipeline, result, label,  # type: ignore[arg-type]
                                      None)
        except EvalError as e:
            raise MappingError(self.path, e.label, e.reason) from None
        except ConditionError as e:
            raise MappingError(self.path, e.attribute, f"{e.value!r} {e.reason}") from None
        if result:
            return cast(tuple[str, ...], result) if self.multi else result[0]
        if self.on_empty == "keep":
            return KEEP
        return self.default if self.on_empty == "default" else None

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

    def candidates(self, raw: RawAttrs) -> Iterator[str]:
        """A `unique` rule's values in the order to try them, each through the transforms;
        raises MappingError like `evaluate`."""
        assert isinstance(self.source, Unique)
        seen: set[str] = set()
        for value, label in self.source.candidates(raw):
            try:
                out = run_pipeline(self.pipeline, (value,), label, None) if self.pipeline \
                    else (value,)
            except EvalError as e:
                raise MappingError(self.path, e.label, e.reason) from None
            if out and str(out[0]) not in seen:
                seen.add(str(out[0]))
                yield str(out[0])

    def describe(self) -> str:
        """One line for logs and ``explain``: where the value comes from and what happens."""
        secret = SECRET_ATTRIBUTE.search(self.path) is not None
        # A constant, default or transform parameter for a password is the password, or
        # part of it: for secret paths only attribute names and transform names are shown.
        if not secret or isinstance(self.source, FromAttribute):
            parts = [str(self.source)]
        else:
            kind = type(self.source).__name__.lower().replace("fromattribute", "from")
            reads = ", ".join(sorted(self.source.attributes()))
            parts = [f"{kind} [redacted]" + (f" (reads {reads})" if reads else "")]
        if self.pipeline:
            parts.append(" | ".join(t.name for t in self.pipeline.steps) if secret
                         else str(self.pipeline))
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


def _compile_table(path: str, table: AbcMapping[str, Any], where: str) -> Rule:
    source, pipeline = compile_source(table, where)
    t = RuleTable.model_validate(dict(table))
    typ = "bool" if pipeline.to_bool else source.type
    if t.multi and typ != "str":
        raise ConfigError(f"multi = true needs string values, but this rule yields "
                          f"{TYPE_WORDS[typ]}", where=where)

    on_empty: OnEmpty = t.on_empty or ("default" if t.default is not None else "clear")
    default: Value = None
    if on_empty == "default":
        if t.default is None:
            raise ConfigError('on_empty = "default" needs a default value', where=where)
        default = _shape_default(t.default, t.multi, where)
    elif t.default is not None:
        raise ConfigError(f'default is only used with on_empty = "default" (on_empty is '
                          f'{on_empty!r})', where=where)
    apply = t.apply
    if isinstance(source, Unique):
        if table.get("apply") == "always" or t.multi or t.reference:
            raise ConfigError("a unique value is chosen once, when syncd creates the object "
                              "(apply = \"on_create\"), and is a single string", where=where)
        apply = "on_create"
    if t.reference is not None and not isinstance(source, FromAttribute | Coalesce):
        raise ConfigError("reference = ... needs from or coalesce: the value must be the "
                          "referenced object's name or id as the source holds it", where=where)
    return _typed(Rule(path, source, pipeline, on_empty, default, apply, t.multi,
                       t.reference), where)


def _typed(rule: Rule, where: str) -> Rule:
    """Make a boolean path's rule yield booleans: strings are read as TRUE/FALSE (or held)."""
    if rule.path not in BOOLEAN_PATHS or rule.type == "bool":
        return rule
    if rule.type != "str" or rule.multi:
        raise ConfigError(f"{rule.path} is a boolean; this rule yields "
                          f"{'several values' if rule.multi else TYPE_WORDS[rule.type]}",
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
