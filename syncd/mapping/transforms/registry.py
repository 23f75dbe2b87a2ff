"""The transform machinery: typed parameters, the registry, and building pipelines from config.

A transform is built once at config time -- parameters are type-checked, ranges and regexes
validated -- so a bad config fails at startup instead of on the 40,000th entry. Everything that
can still go wrong at run time is a `TransformError` naming the transform, the value and why.

A transform spec in config is either a bare name (``"lower"``) or a single-key table whose value
is the transform's main parameter (``{ join = ", " }``, ``{ pad = 6 }``) or a table of named
parameters (``{ replace = { pattern = "^x", with = "" } }``). The main parameter is the only
parameter, or else the only required one.

Parameters are typed (string, integer, boolean, table of strings, one of a few words): the
declared `check` turns the TOML value into what the builder reads, or says what it must be.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from syncd.errors import ConfigError

Strs = tuple[str, ...]
Fn = Callable[[Strs], Strs]
T = TypeVar("T")


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
    fn: Fn = field(repr=False, compare=False)
    params: tuple[tuple[str, object], ...] = ()

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


# --- typed parameters ---------------------------------------------------------------------
# A check takes the raw TOML value and returns the typed one, or raises ValueError saying what
# the parameter must be; `build` prefixes the transform and parameter name.


def text(value: object) -> str:
    """A string; an integer is accepted as its decimal text (``{ default = 0 }``)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"must be a string, got {value!r}")
    return str(value)


def integer(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be an integer, got {value!r}")
    return value


def flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")
    return value


def table(value: object) -> dict[str, str]:
    """A table of strings (``{ A = "x", B = "y" }``); integers are taken as their text."""
    if not isinstance(value, Mapping):
        raise ValueError(f'must be a table ({{ key = "value" }}), got {value!r}')
    out: dict[str, str] = {}
    for k, v in value.items():
        try:
            out[str(k)] = text(v)
        except ValueError as e:
            raise ValueError(f"entry {k!r} {e}") from None
    return out


def index_or_name(value: object) -> int | str:
    """A regex group: its number or its name."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"must be a group number or name, got {value!r}")
    return value


def choice(*options: str) -> Callable[[object], str]:
    def check(value: object) -> str:
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}; got {value!r}")
        return str(value)

    return check


@dataclass(frozen=True)
class Param:
    """One declared parameter. An optional parameter without a default reads as ``None``."""

    name: str
    check: Callable[[object], object] = text
    required: bool = True
    default: object = None


def opt(name: str, check: Callable[[object], object] = text, default: object = None) -> Param:
    return Param(name, check, required=False, default=default)


def position(p: Params, name: str) -> int:
    """A 1-based position (negative: from the end) as a Python index; 0 is a config error.

    Positions count from 1 like Entra's Item, Word and Mid, so 0 is refused at build time: a
    config written for 0-based indexes fails loudly instead of being off by one.
    """
    n = p.get(name, int)
    if n == 0:
        raise ValueError(f"{name} counts from 1 (-1 is the last); 0 is not a position")
    return n - 1 if n > 0 else n


def at_least_1(p: Params, name: str) -> int:
    n = p.get(name, int)
    if n < 1:
        raise ValueError(f"{name} must be at least 1, got {n}")
    return n


class Params:
    """The checked parameters one builder reads, each with the type its `Param` declared."""

    def __init__(self, values: dict[str, object], given: frozenset[str]) -> None:
        self._values = values
        self.given = given  #: the names config actually set (for "either this or that")

    def get(self, name: str, kind: type[T]) -> T:
        value = self._values[name]
        if not isinstance(value, kind):  # only a registration bug gets here
            raise TypeError(f"parameter {name} is {value!r}, not {kind.__name__}")
        return value

    def maybe(self, name: str, kind: type[T]) -> T | None:
        return None if self._values[name] is None else self.get(name, kind)

    def raw(self, name: str) -> object:
        return self._values[name]


# --- the registry -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Kind:
    """A registered transform: its parameters and how to build the function from them."""

    name: str
    doc: str
    build: Callable[[Params], Fn]
    params: tuple[Param, ...] = ()

    @property
    def shorthand(self) -> Param | None:
        """The parameter a non-table value sets (``{ join = " " }`` sets ``sep``)."""
        if len(self.params) == 1:
            return self.params[0]
        required = [p for p in self.params if p.required]
        return required[0] if len(required) == 1 else None


_REGISTRY: dict[str, _Kind] = {}


def register(name: str, doc: str, *params: Param) -> Callable[[Callable[[Params], Fn]], None]:
    """Register a transform builder: it reads its checked `Params` and returns the function.

    A builder raises ValueError for a parameter combination no check alone can see (an
    invalid regex, a group the pattern does not have); the message should name the parameter.
    """

    def deco(build: Callable[[Params], Fn]) -> None:
        if name in _REGISTRY:
            raise RuntimeError(f"transform {name!r} registered twice")
        _REGISTRY[name] = _Kind(name, doc, build, params)

    return deco


def each(f: Callable[[str], str]) -> Fn:
    """Apply `f` to every value, dropping the empty results (they are not values)."""

    def run(values: Strs) -> Strs:
        return tuple(filter(None, map(f, values)))  # C-level: this runs per value read

    return run


def pick(items: Sequence[str], i: int) -> Strs:
    """The item at Python index `i` as a one-value tuple, or nothing when out of range."""
    return (items[i],) if -len(items) <= i < len(items) else ()


def known() -> tuple[str, ...]:
    """Names of every registered transform, for error messages and docs."""
    return tuple(sorted(_REGISTRY))


def describe() -> dict[str, str]:
    """Name -> one-line description, for ``syncd`` help output and the config reference."""
    return {name: _REGISTRY[name].doc for name in known()}


# --- building from config -----------------------------------------------------------------


def _shown(value: object) -> object:
    """A parameter as kept on `Transform`: hashable, so a compiled rule stays a frozen value."""
    if isinstance(value, dict):
        return tuple(value.items())
    return value


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

    given: dict[str, Any] = {}
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

    values: dict[str, object] = {}
    for p in kind.params:
        if p.name in given:
            try:
                values[p.name] = p.check(given[p.name])
            except ValueError as e:
                raise _fail(f"{kind.name}: {p.name} {e}") from None
        elif p.required:
            raise _fail(f"{kind.name}: missing parameter {p.name!r}")
        else:
            values[p.name] = p.default
    try:
        fn = kind.build(Params(values, frozenset(given)))
    except ValueError as e:
        raise _fail(f"{kind.name}: {e}") from None
    shown = tuple((k, _shown(v)) for k, v in values.items() if v is not None)
    return Transform(kind.name, fn, shown)


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
