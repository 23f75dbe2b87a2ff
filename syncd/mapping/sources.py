"""Where a rule's value comes from: attributes, templates, constants, and the logic over them.

Every source reads a raw entry and returns its values plus a *label* naming what it read (an
attribute, a template), which errors carry so an admin sees which input was wrong. A source
has a `type`: ``str`` values flow through transforms; ``bool`` and ``int`` come from constants
and conditions and are checked at config time so a boolean mapping can only yield a boolean.

``if`` and ``switch`` take *nested expressions* for their results. Inside them a plain string
is a value, not an attribute name -- ``then = "Employee"`` means the word -- because that is
what a result almost always is; ``{ from = "title" }`` reads an attribute there.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from syncd.mapping.conditions import Condition
from syncd.mapping.transforms import Pipeline, TransformError
from syncd.model import RawAttrs

Scalar = str | bool | int
Values = tuple[str, ...] | tuple[bool, ...] | tuple[int, ...]
Type = Literal["str", "bool", "int"]
#: Steps recorded by ``test-mapping``: (what happened, values after it).
Trace = list[tuple[str, Values]]

#: Source attribute names: LDAP names and OIDs, AD/Graph names, options (``cert;binary``) and
#: dotted names from a SCIM or Graph source. No spaces, so a constant is never taken for one.
ATTR = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.;:-]*$")


class EvalError(ValueError):
    """A nested expression failed; the rule turns it into a MappingError naming its path."""

    def __init__(self, label: str, reason: str) -> None:
        self.label = label
        self.reason = reason
        super().__init__(f"{label}: {reason}")


def _values(raw: RawAttrs, attr: str) -> tuple[str, ...]:
    vals = raw.get(attr, ())
    # Fast path: connectors rarely hand over empty strings, so avoid rebuilding the tuple.
    return vals if all(vals) else tuple(filter(None, vals))


@dataclass(frozen=True)
class FromAttribute:
    attr: str  # lower-cased
    type: Type = "str"

    def read(self, raw: RawAttrs, trace: Trace | None = None) -> tuple[Values, str]:
        vals = raw.get(self.attr, ())
        if not all(vals):
            vals = tuple(filter(None, vals))
        if trace is not None:
            trace.append((f"read {self.attr}", vals))
        return vals, self.attr

    def attributes(self) -> frozenset[str]:
        return frozenset({self.attr})

    def __str__(self) -> str:
        return f"from {self.attr}"


@dataclass(frozen=True)
class Template:
    text: str
    #: (literal, lower-cased attribute or None) pairs, as string.Formatter parses them.
    parts: tuple[tuple[str, str | None], ...]
    type: Type = "str"

    def read(self, raw: RawAttrs, trace: Trace | None = None) -> tuple[Values, str]:
        out: list[str] = []
        found = False
        for literal, attr in self.parts:
            out.append(literal)
            if attr is not None:
                vals = _values(raw, attr)
                if vals:
                    found = True
                    out.append(vals[0])  # a template builds one string: first value wins
        text = "".join(out).strip() if found else ""
        result = (text,) if text else ()
        if trace is not None:
            trace.append((f"template {self.text!r}", result))
        return result, self.text

    def attributes(self) -> frozenset[str]:
        return frozenset(a for _, a in self.parts if a is not None)

    def __str__(self) -> str:
        return f"template {self.text!r}"


@dataclass(frozen=True)
class Const:
    value: Scalar
    type: Type = "str"

    def read(self, raw: RawAttrs, trace: Trace | None = None) -> tuple[Values, str]:
        result: Values = () if self.value == "" else (self.value,)  # type: ignore[assignment]
        if trace is not None:
            trace.append(("const", result))  # the value is in the (maskable) values column
        return result, "const"

    def attributes(self) -> frozenset[str]:
        return frozenset()

    def __str__(self) -> str:
        return f"const {self.value!r}"


def const(value: Scalar) -> Const:
    return Const(value, "bool" if isinstance(value, bool) else
                 "int" if isinstance(value, int) else "str")


@dataclass(frozen=True)
class Piped:
    """A nested expression: a source and its own transforms."""

    source: Source
    pipeline: Pipeline

    @property
    def type(self) -> Type:
        return "bool" if self.pipeline.to_bool else self.source.type

    def read(self, raw: RawAttrs, trace: Trace | None = None) -> tuple[Values, str]:
        values, label = self.source.read(raw, trace)
        if not self.pipeline:
            return values, label
        return run_pipeline(self.pipeline, values, label, trace), label  # type: ignore[arg-type]

    def attributes(self) -> frozenset[str]:
        return self.source.attributes()

    def __str__(self) -> str:
        return f"{self.source} | {self.pipeline}" if self.pipeline else str(self.source)


def run_pipeline(pipeline: Pipeline, values: tuple[str, ...], label: str,
                 trace: Trace | None) -> Values:
    """Apply `pipeline`, recording each step when tracing; errors name `label`."""
    try:
        if trace is None:
            return pipeline(values)
        for step in pipeline.steps:
            values = step(values)
            trace.append((str(step), values))
        if pipeline.to_bool:
            return tuple(v == "TRUE" for v in values)
        return values
    except TransformError as e:
        raise EvalError(label, f"{e.transform}: {e.value!r} {e.reason}") from None


@dataclass(frozen=True)
class Coalesce:
    """The first item with a value: attributes, templates or nested expressions."""

    items: tuple[Source, ...]
    type: Type = "str"

    def read(self, raw: RawAttrs, trace: Trace | None = None) -> tuple[Values, str]:
        for item in self.items:
            vals, label = item.read(raw, trace)
            if vals:
                return vals, label
        return (), "/".join(sorted(self.attributes())) or "coalesce"

    def attributes(self) -> frozenset[str]:
        return frozenset().union(*(i.attributes() for i in self.items))

    def __str__(self) -> str:
        return f"coalesce {', '.join(str(i) for i in self.items)}"


@dataclass(frozen=True)
class If:
    """A condition choosing between two results; without them, the condition's truth."""

    condition: Condition
    then: Source | None
    else_: Source | None
    type: Type = "bool"

    def read(self, raw: RawAttrs, trace: Trace | None = None) -> tuple[Values, str]:
        holds = self.condition.holds(raw)
        if trace is not None:
            trace.append((f"if {self.condition}: {'holds' if holds else 'does not hold'}",
                          (holds,)))
        if self.then is None and self.else_ is None:
            return (holds,), "if"
        branch = self.then if holds else self.else_
        if branch is None:
            return (), "if"
        return branch.read(raw, trace)

    def attributes(self) -> frozenset[str]:
        out = set(self.condition.attributes())
        for b in (self.then, self.else_):
            if b is not None:
                out |= b.attributes()
        return frozenset(out)

    def __str__(self) -> str:
        if self.then is None and self.else_ is None:
            return f"if {self.condition}"
        return f"if {self.condition} then {self.then} else {self.else_}"


@dataclass(frozen=True)
class Switch:
    """A table of results keyed by an attribute's value: the first value with a case wins,
    so a multi-valued ``objectClass`` switches on the class that has one."""

    attr: str
    cases: tuple[tuple[str, Source], ...]  # keys case-folded unless case_sensitive
    case_sensitive: bool = False
    type: Type = "str"

    def read(self, raw: RawAttrs, trace: Trace | None = None) -> tuple[Values, str]:
        table = dict(self.cases)
        for v in _values(raw, self.attr):
            result = table.get(v if self.case_sensitive else v.casefold())
            if result is not None:
                if trace is not None:
                    trace.append((f"switch {self.attr}: case {v!r}", (v,)))
                return result.read(raw, trace)
        if trace is not None:
            trace.append((f"switch {self.attr}: no case", ()))
        return (), self.attr

    def attributes(self) -> frozenset[str]:
        return frozenset({self.attr}).union(*(s.attributes() for _, s in self.cases))

    def __str__(self) -> str:
        return f"switch {self.attr} ({len(self.cases)} cases)"


@dataclass(frozen=True)
class Unique:
    """Candidates for a value that must be unused on the target (Entra's SelectUniqueValue).

    Read like `Coalesce`: the first candidate with a value. The engine walks `candidates`
    for an entry it is about to create and keeps the first one the target and the links do
    not already hold. A template naming ``{n}`` is a counter: tried with n = 1, 2, ... `limit`.
    """

    items: tuple[Source, ...]
    limit: int = 99
    type: Type = "str"

    def _counted(self, item: Source) -> bool:
        return isinstance(item, Template) and "n" in item.attributes()

    def read(self, raw: RawAttrs, trace: Trace | None = None) -> tuple[Values, str]:
        for item in self.items:
            vals, label = item.read({**raw, "n": ("1",)} if self._counted(item) else raw,
                                    trace)
            if vals:
                return vals, label
        return (), "unique"

    def candidates(self, raw: RawAttrs) -> Iterator[tuple[str, str]]:
        """(candidate, label) in the order they are tried, before the rule's transforms."""
        for item in self.items:
            if not self._counted(item):
                vals, label = item.read(raw)
                if vals:
                    yield str(vals[0]), label
                continue
            for n in range(1, self.limit + 1):
                vals, label = item.read({**raw, "n": (str(n),)})
                if not vals:
                    break
                yield str(vals[0]), label

    def attributes(self) -> frozenset[str]:
        return frozenset().union(*(i.attributes() for i in self.items)) - {"n"}

    def __str__(self) -> str:
        return f"unique {', '.join(str(i) for i in self.items)}"


Source = FromAttribute | Template | Const | Piped | Coalesce | If | Switch | Unique


def parse_template(text: str) -> Template:
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
        if not ATTR.match(name):
            raise ValueError(f"template field {{{name}}} is not an attribute name")
        parts.append((literal, name.lower()))
    if not any(a for _, a in parts):
        raise ValueError(f"template {text!r} references no attribute; use const for a fixed "
                         "value")
    return Template(text, tuple(parts))
