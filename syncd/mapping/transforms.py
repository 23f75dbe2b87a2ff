"""Named, pure value transforms: the only "logic" a mapping may contain.

Config never carries code (no eval, no expressions), so everything an admin can do to a value is
listed here. A transform is built once at config time -- parameters are checked and regexes
compiled then -- so a bad config fails at startup instead of on the 40,000th entry.

Values flowing through are LDAP-style multi-values, ``tuple[str, ...]``. Empty strings are not
values (LDAP cannot store them and SCIM treats them as absent), so every step drops them; that
keeps "is it empty?" a plain ``not values`` everywhere downstream.

A transform spec in config is either a bare name (``"lower"``) or a single-key table whose value
is the transform's main parameter (``{ join = ", " }``) or a table of named parameters
(``{ replace = { pattern = "^x", with = "" } }``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from syncd.errors import ConfigError

Strs = tuple[str, ...]

_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


class TransformError(ValueError):
    """A value a transform cannot handle; the mapping names the path and attribute around it."""

    def __init__(self, transform: str, value: str, reason: str) -> None:
        self.transform = transform
        self.value = value
        self.reason = reason
        super().__init__(f"{transform}: {value!r} {reason}")


@dataclass(frozen=True)
class Transform:
    """One configured step. `params` is kept only so rules can describe themselves in logs."""

    name: str
    fn: Callable[[Strs], Strs] = field(repr=False, compare=False)
    params: tuple[tuple[str, str], ...] = ()

    def __call__(self, values: Strs) -> Strs:
        return self.fn(values)

    def __str__(self) -> str:
        if not self.params:
            return self.name
        return f"{self.name}({', '.join(f'{k}={v!r}' for k, v in self.params)})"


@dataclass(frozen=True)
class Pipeline:
    """Transforms applied in order.

    `to_bool` is set when the last step is ``bool``: strings stay strings through every other
    step, and only the end of the pipeline turns the canonical ``TRUE``/``FALSE`` into Python
    booleans. That is why ``bool`` must come last.
    """

    steps: tuple[Transform, ...] = ()
    to_bool: bool = False

    def __call__(self, values: Strs) -> Strs | tuple[bool, ...]:
        for step in self.steps:
            values = step(values)
        if self.to_bool:
            return tuple(v == "TRUE" for v in values)
        return values

    def __bool__(self) -> bool:
        return bool(self.steps)

    def __str__(self) -> str:
        return " | ".join(str(s) for s in self.steps)


# --- the registry -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Param:
    name: str
    required: bool = True
    default: str = ""


@dataclass(frozen=True)
class _Kind:
    """A registered transform: its parameters and how to build the function from them."""

    name: str
    doc: str
    build: Callable[[dict[str, str]], Callable[[Strs], Strs]]
    params: tuple[_Param, ...] = ()

    @property
    def shorthand(self) -> _Param | None:
        """The parameter a non-table value sets (``{ join = " " }`` sets ``sep``)."""
        return self.params[0] if len(self.params) == 1 else None


_REGISTRY: dict[str, _Kind] = {}


def _register(
    name: str, doc: str, *params: _Param
) -> Callable[[Callable[[dict[str, str]], Callable[[Strs], Strs]]], None]:
    def deco(build: Callable[[dict[str, str]], Callable[[Strs], Strs]]) -> None:
        _REGISTRY[name] = _Kind(name, doc, build, params)

    return deco


def _each(f: Callable[[str], str]) -> Callable[[Strs], Strs]:
    def run(values: Strs) -> Strs:
        return tuple(r for r in (f(v) for v in values) if r)

    return run


@_register("lower", "lower-case every value")
def _lower(p: dict[str, str]) -> Callable[[Strs], Strs]:
    return _each(str.lower)


@_register("upper", "upper-case every value")
def _upper(p: dict[str, str]) -> Callable[[Strs], Strs]:
    return _each(str.upper)


@_register("trim", "strip surrounding whitespace from every value")
def _trim(p: dict[str, str]) -> Callable[[Strs], Strs]:
    return _each(str.strip)


@_register("first", "keep only the first value")
def _first(p: dict[str, str]) -> Callable[[Strs], Strs]:
    return lambda values: values[:1]


@_register("join", "join all values into one", _Param("sep", required=False, default=" "))
def _join(p: dict[str, str]) -> Callable[[Strs], Strs]:
    sep = p["sep"]

    def join(values: Strs) -> Strs:
        joined = sep.join(values)
        return (joined,) if joined else ()

    return join


@_register("split", "split every value on a separator", _Param("sep"))
def _split(p: dict[str, str]) -> Callable[[Strs], Strs]:
    sep = p["sep"]
    if not sep:
        raise ValueError("sep must not be empty")
    return lambda values: tuple(part for v in values for part in v.split(sep) if part)


@_register("replace", "regex substitution on every value", _Param("pattern"), _Param("with"))
def _replace(p: dict[str, str]) -> Callable[[Strs], Strs]:
    try:
        rx = re.compile(p["pattern"])
    except re.error as e:
        raise ValueError(f"invalid regex {p['pattern']!r}: {e}") from None
    repl = p["with"]
    try:
        rx.sub(repl, "")  # CPython parses the replacement template eagerly: bad \1 fails here
    except (re.error, IndexError) as e:
        raise ValueError(f"invalid replacement {repl!r}: {e}") from None
    return _each(lambda v: rx.sub(repl, v))


@_register("default", "use this value when there is none", _Param("value"))
def _default(p: dict[str, str]) -> Callable[[Strs], Strs]:
    fallback: Strs = (p["value"],) if p["value"] else ()
    return lambda values: values or fallback


@_register("bool", "LDAP TRUE/FALSE, 1/0, yes/no to a boolean (must be last)")
def _bool(p: dict[str, str]) -> Callable[[Strs], Strs]:
    def canon(values: Strs) -> Strs:
        out = []
        for v in values:
            low = v.strip().lower()
            if low in _TRUE:
                out.append("TRUE")
            elif low in _FALSE:
                out.append("FALSE")
            else:
                raise TransformError("bool", v, "is not a boolean (TRUE/FALSE, 1/0, yes/no)")
        return tuple(out)

    return canon


def known() -> tuple[str, ...]:
    """Names of every registered transform, for error messages and docs."""
    return tuple(sorted(_REGISTRY))


def describe() -> dict[str, str]:
    """Name -> one-line description, for ``syncd`` help output and the config reference."""
    return {name: _REGISTRY[name].doc for name in known()}


# --- building from config -----------------------------------------------------------------


def _param_value(kind: _Kind, name: str, value: object, fail: Callable[[str], ConfigError]
                 ) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise fail(f"{kind.name}: {name} must be a string, got {value!r}")
    return str(value)


def build(spec: object, where: str, label: str = "transform") -> Transform:
    """Build one transform from its config spec.

    Errors are ``ConfigError(f"{label}: ...", where=where)``: the caller's `where` stays the
    rule's own location and `label` says which transform inside it is wrong.
    """

    def _fail(message: str) -> ConfigError:
        return ConfigError(f"{label}: {message}", where=where)

    if isinstance(spec, str):
        name, raw = spec, None
    elif isinstance(spec, Mapping) and len(spec) == 1:
        ((name, raw),) = spec.items()
        if raw is None:
            raise _fail(f"{name}: missing parameter")
    else:
        raise _fail(
            f"a transform is a name (\"lower\") or a one-key table ({{ join = \" \" }}), "
            f"got {spec!r}"
        )
    kind = _REGISTRY.get(str(name))
    if kind is None:
        raise _fail(f"unknown transform {name!r}; known: {', '.join(known())}")

    given: dict[str, object] = {}
    if raw is None:
        pass
    elif isinstance(raw, Mapping):
        given = {str(k): v for k, v in raw.items()}
        allowed = {p.name for p in kind.params}
        unknown = sorted(set(given) - allowed)
        if unknown:
            takes = ", ".join(sorted(allowed)) if allowed else "no parameters"
            raise _fail(f"{kind.name}: unknown parameter {unknown[0]!r} (takes {takes})")
    elif kind.shorthand is not None:
        given = {kind.shorthand.name: raw}
    elif not kind.params:
        raise _fail(f"{kind.name} takes no parameters; write just {kind.name!r}")
    else:
        names = ", ".join(p.name for p in kind.params)
        raise _fail(f"{kind.name} needs a table of parameters ({names})")

    params: dict[str, str] = {}
    for p in kind.params:
        if p.name in given:
            params[p.name] = _param_value(kind, p.name, given[p.name], _fail)
        elif p.required:
            raise _fail(f"{kind.name}: missing parameter {p.name!r}")
        else:
            params[p.name] = p.default
    try:
        fn = kind.build(params)
    except ValueError as e:
        raise _fail(f"{kind.name}: {e}") from None
    return Transform(kind.name, fn, tuple(params.items()))


def build_pipeline(specs: object, where: str, key: str = "transform") -> Pipeline:
    """Build a pipeline from a list of specs; errors name ``key[index]`` at `where`."""
    if specs is None:
        return Pipeline()
    if isinstance(specs, str | Mapping):
        specs = [specs]  # a single spec is an unambiguous shorthand for a one-step list
    if not isinstance(specs, Sequence):
        raise ConfigError(f"{key}: must be a list of transforms, got {specs!r}", where=where)
    steps = tuple(build(spec, where, f"{key}[{i}]") for i, spec in enumerate(specs))
    for i, step in enumerate(steps[:-1]):
        if step.name == "bool":
            raise ConfigError(f"{key}[{i}]: bool must be the last transform: it turns strings "
                              "into a boolean", where=where)
    return Pipeline(steps, to_bool=bool(steps) and steps[-1].name == "bool")
