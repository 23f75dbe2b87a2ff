"""Transforms of each value's text: case, whitespace, affixes, cutting, padding, words.

Lengths and positions count characters (code points), not bytes. Positions count from 1 like
Entra's Mid and Word, and -1 is the last (see `registry.position`).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

from syncd.mapping.transforms.registry import (
    Fn,
    Param,
    Params,
    at_least_1,
    choice,
    each,
    integer,
    opt,
    pick,
    position,
    register,
)

MAX_WIDTH = 1024  # a pad wider than any directory attribute is a typo, not a wish
_APOSTROPHES = "'\u2019"


def _nonempty(p: Params, name: str) -> str:
    s = p.get(name, str)
    if not s:
        raise ValueError(f"{name} must not be empty")
    return s


# --- case ---------------------------------------------------------------------------------


@register("lower", "lower-case every value")
def _lower(p: Params) -> Fn:
    return each(str.lower)


@register("upper", "upper-case every value")
def _upper(p: Params) -> Fn:
    return each(str.upper)


def _in_word(c: str) -> bool:
    """Letters, digits, combining marks and apostrophes continue a word (O'neil, 3rd, Zoë)."""
    return c.isalnum() or c in _APOSTROPHES or unicodedata.category(c).startswith("M")


def title_case(value: str, seps: str | None = None) -> str:
    """First letter of each word upper, the rest lower (Entra PCase).

    Words are separated by `seps` when given, else by anything that cannot be part of a word
    (spaces, hyphens, brackets, ...): ``"PINTO-DE'SILVA"`` -> ``"Pinto-De'silva"``, and with
    ``seps = " -'"`` -> ``"Pinto-De'Silva"``.
    """
    is_sep: Callable[[str], bool] = ((lambda c: c in seps) if seps is not None
                                     else (lambda c: not _in_word(c)))
    out: list[str] = []
    start = True
    for c in value:
        if is_sep(c):
            out.append(c)
            start = True
        else:
            out.append(c.title() if start else c.lower())
            start = False
    return "".join(out)


@register("title", "first letter of each word upper, the rest lower (Entra PCase)",
          opt("seps"))
def _title(p: Params) -> Fn:
    seps = p.maybe("seps", str)
    if seps == "":
        raise ValueError("seps must not be empty (leave it out for the default separators)")
    return each(lambda v: title_case(v, seps))


@register("capitalize", "first character upper, the rest lower")
def _capitalize(p: Params) -> Fn:
    return each(str.capitalize)


# --- whitespace and affixes -----------------------------------------------------------------


@register("trim", "strip surrounding whitespace from every value")
def _trim(p: Params) -> Fn:
    return each(str.strip)


@register("strip_spaces", "remove all whitespace, inside too (Entra StripSpaces)")
def _strip_spaces(p: Params) -> Fn:
    return each(lambda v: "".join(v.split()))


@register("append", "add a constant suffix to every value", Param("value"))
def _append(p: Params) -> Fn:
    suffix = _nonempty(p, "value")
    return each(lambda v: v + suffix)


@register("prepend", "add a constant prefix to every value", Param("value"))
def _prepend(p: Params) -> Fn:
    prefix = _nonempty(p, "value")
    return each(lambda v: prefix + v)


# --- cutting and padding ------------------------------------------------------------------


def substring(value: str, start: int, length: int | None) -> str:
    """`length` characters from the Python index `start` (negative: from the end, clamped)."""
    i = start if start >= 0 else max(len(value) + start, 0)
    return value[i:] if length is None else value[i:i + length]


@register("substring", "characters from position start (1-based; -1 is the last), "
          "length of them or to the end (Entra Mid)", Param("start", integer),
          opt("length", integer))
def _substring(p: Params) -> Fn:
    start = position(p, "start")
    length = at_least_1(p, "length") if p.maybe("length", int) is not None else None
    return each(lambda v: substring(v, start, length))


@register("left", "the first n characters (Entra Left)", Param("n", integer))
def _left(p: Params) -> Fn:
    n = at_least_1(p, "n")
    return each(lambda v: v[:n])


@register("right", "the last n characters", Param("n", integer))
def _right(p: Params) -> Fn:
    n = at_least_1(p, "n")
    return each(lambda v: v[-n:])


@register("pad", "pad every value to width characters with char on side (left: 42 -> 00042)",
          Param("width", integer), opt("char", default=" "),
          opt("side", choice("left", "right"), default="left"))
def _pad(p: Params) -> Fn:
    width = at_least_1(p, "width")
    if width > MAX_WIDTH:
        raise ValueError(f"width must be at most {MAX_WIDTH}, got {width}")
    char = p.get("char", str)
    if len(char) != 1:
        raise ValueError(f"char must be exactly one character, got {char!r}")
    if p.get("side", str) == "left":
        return each(lambda v: v.rjust(width, char))
    return each(lambda v: v.ljust(width, char))


# --- words --------------------------------------------------------------------------------


def words(value: str, seps: str | None) -> list[str]:
    """The non-empty runs of `value` between separator characters (whitespace by default)."""
    if seps is None:
        return value.split()
    out: list[str] = []
    cur: list[str] = []
    for c in value:
        if c in seps:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    out.append("".join(cur))
    return [w for w in out if w]


@register("word", "the Nth word of every value (1-based; -1 is the last); any character of "
          "sep separates words, whitespace by default (Entra Word)",
          Param("index", integer), opt("sep"))
def _word(p: Params) -> Fn:
    i = position(p, "index")
    seps = p.maybe("sep", str)
    if seps == "":
        raise ValueError("sep must not be empty (leave it out to split on whitespace)")
    return lambda values: tuple(w for v in values for w in pick(words(v, seps), i))
