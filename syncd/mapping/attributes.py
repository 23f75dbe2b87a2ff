"""A flow's mapping for one kind: canonical path -> compiled `Rule`, read like the target
object. ``Mapping.map`` runs per entry with no parsing at all, which matters at 100k users;
``Mapping.explain`` says why each path got its value."""

from __future__ import annotations

import difflib
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass, field
from typing import Any

from syncd.errors import ConfigError
from syncd.mapping.expressions import RULE_KEYS
from syncd.mapping.rules import (
    READ_ONLY_ATTRIBUTES,
    Keep,
    MappingError,
    Rule,
    compile_rule,
)
from syncd.mapping.sources import FromAttribute, Unique
from syncd.model import RawAttrs, Value


def _flatten(table: AbcMapping[str, Any], prefix: str, where: str) -> dict[str, object]:
    """Undo TOML's dotted keys: ``name.givenName = "x"`` arrives as ``{"name": {...}}``.

    A table with no rule key is a namespace. A key that looks like a misspelt rule key is an
    error rather than a sub-path, so ``{ fromm = "uid" }`` cannot silently map ``x.fromm``.
    """
    out: dict[str, object] = {}
    for key, spec in table.items():
        path = f"{prefix}{key}"
        if isinstance(spec, AbcMapping) and spec and not any(k in RULE_KEYS for k in spec):
            for sub in spec:
                hint = difflib.get_close_matches(str(sub), RULE_KEYS, n=1, cutoff=0.75)
                if hint:
                    raise ConfigError(
                        f"unknown key {sub!r} (did you mean {hint[0]!r}?); if {path}.{sub} "
                        "is a canonical path, quote it", where=_join(where, path))
            out.update(_flatten(spec, f"{path}.", where))
        else:
            out[path] = spec
    return out


def _join(where: str, path: str) -> str:
    return f"{where}.{path}" if where else path


#: The canonical path that names an object on every target, per kind.
IDENTIFIERS = {"user": "userName", "group": "displayName"}


# --- the mapping ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Explained:
    """Why a path got its value: for ``syncd explain`` and debugging a mapping."""

    rule: str
    result: Value
    managed: bool  # False when on_empty="keep" left the path alone
    error: str | None = None
    #: Each step of the expression: (what happened, values after it).
    steps: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Mapping:
    """A compiled mapping for one flow and kind."""

    rules: tuple[Rule, ...]
    on_create_only: frozenset[str] = field(init=False)
    #: What the ``unique`` rules read: kept per entry for the engine's choice at create.
    unique_attributes: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "on_create_only",
                           frozenset(r.path for r in self.rules if r.apply == "on_create"))
        object.__setattr__(self, "unique_attributes", tuple(sorted(frozenset().union(
            *(r.source_attributes() for r in self.rules if isinstance(r.source, Unique))))))

    @classmethod
    def from_config(cls, table: AbcMapping[str, Any], where: str) -> Mapping:
        """Compile a mapping table; every invalid rule raises ConfigError at ``where.path``."""
        if not isinstance(table, AbcMapping):
            raise ConfigError(f"a mapping is a table of path = rule, got {table!r}", where=where)
        flat = _flatten(table, "", where)
        return cls(tuple(compile_rule(p, s, _join(where, p)) for p, s in flat.items()))

    @property
    def unique_rules(self) -> tuple[Rule, ...]:
        """Rules whose value must be unused on the target, chosen at create."""
        return tuple(r for r in self.rules if isinstance(r.source, Unique))

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(r.path for r in self.rules)

    def reverse(self) -> dict[str, tuple[str, bool]]:
        """Canonical path -> (source attribute, as_bool) for rules that can be written back.

        Two-way flows write target-side changes to the source only through rules that copy
        one attribute unchanged (optionally ``trim``/``first``, or ``bool``, written back as
        TRUE/FALSE). Templates, constants, coalesce and lossy transforms (lower, replace, …)
        stay one-way: the source is their authority.
        """
        out: dict[str, tuple[str, bool]] = {}
        for r in self.rules:
            if not isinstance(r.source, FromAttribute) or r.apply == "on_create" or r.multi:
                continue
            if r.source.attr in READ_ONLY_ATTRIBUTES:
                continue
            names = {t.name for t in r.pipeline.steps}
            if names <= {"trim", "first", "bool"}:
                out[r.path] = (r.source.attr, r.pipeline.to_bool)
        return out

    def source_attributes(self) -> frozenset[str]:
        """Lower-cased raw attributes any rule reads: all a source connector needs to fetch."""
        return frozenset().union(*(r.source_attributes() for r in self.rules))

    def empty_identifier(self, kind: str, attrs: AbcMapping[str, Value]) -> str | None:
        """Why an entry must be held because its mapped identifier is empty, or None.

        Targets key users on ``userName`` and groups on ``displayName``: sent empty, a create
        fails at the target (or worse, a lenient one stores a nameless object that no match
        can ever find again). Only checked when the mapping manages that path for this entry
        (not when it is unmapped or ``on_empty = "keep"`` left it alone).
        """
        path = IDENTIFIERS.get(kind)
        if path is None or path not in attrs:  # unmapped, or on_empty = "keep" chose to
            return None
        value = attrs.get(path)
        if value is None or value == "" or value == ():
            rule = next(r for r in self.rules if r.path == path)
            return (f"mapping {path!r} ({rule.describe()}) yields no value, and a {kind} "
                    f"needs one: the entry is held")
        return None

    def map(self, raw: RawAttrs) -> dict[str, Value]:
        """Canonical attributes for one entry; raises MappingError to skip the entry."""
        out: dict[str, Value] = {}
        for rule in self.rules:
            value = rule.evaluate(raw)
            if not isinstance(value, Keep):
                out[rule.path] = value
        return out

    def explain(self, raw: RawAttrs) -> dict[str, Explained]:
        """Per path: the rule, its result, and any error, without stopping at the first."""
        out: dict[str, Explained] = {}
        for rule in self.rules:
            try:
                steps, value = rule.trace(raw)
            except MappingError as e:
                out[rule.path] = Explained(rule.describe(), None, False, e.reason,
                                           tuple(e.trace))
                continue
            if isinstance(value, Keep):
                out[rule.path] = Explained(rule.describe(), None, False, steps=tuple(steps))
            else:
                out[rule.path] = Explained(rule.describe(), value, True, steps=tuple(steps))
        return out
