"""Transforms over the list of values: pick, count, deduplicate, join, split, default, bool,
and the byte encodings of each value (base64, UTF-8 hex)."""

from __future__ import annotations

import base64

from syncd.mapping.transforms.registry import (
    Fn,
    Param,
    Params,
    Strs,
    TransformError,
    choice,
    each,
    integer,
    opt,
    pick,
    position,
    register,
)

_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def encode(transform: str, value: str, encoding: str) -> bytes:
    """`value`'s bytes; a lone surrogate (undecodable input kept as text) is a value error."""
    try:
        return value.encode(encoding)
    except UnicodeEncodeError as e:
        raise TransformError(transform, value, f"cannot be encoded as {encoding}: {e.reason}"
                             ) from None


@register("first", "keep only the first value")
def _first(p: Params) -> Fn:
    return lambda values: values[:1]


@register("item", "keep only the Nth value (1-based; -1 is the last)", Param("index", integer))
def _item(p: Params) -> Fn:
    i = position(p, "index")
    return lambda values: pick(values, i)


@register("distinct", "drop repeated values, keeping the first of each (exact comparison)")
def _unique(p: Params) -> Fn:
    return lambda values: tuple(dict.fromkeys(values))


@register("count", "the number of values, as one value (\"0\" when there are none)")
def _count(p: Params) -> Fn:
    return lambda values: (str(len(values)),)


@register("join", "join all values into one", opt("sep", default=" "))
def _join(p: Params) -> Fn:
    sep = p.get("sep", str)

    def join(values: Strs) -> Strs:
        joined = sep.join(values)
        return (joined,) if joined else ()

    return join


@register("split", "split every value on a separator", Param("sep"))
def _split(p: Params) -> Fn:
    sep = p.get("sep", str)
    if not sep:
        raise ValueError("sep must not be empty")
    return lambda values: tuple(part for v in values for part in v.split(sep) if part)


@register("default", "use this value when there is none", Param("value"))
def _default(p: Params) -> Fn:
    value = p.get("value", str)
    fallback: Strs = (value,) if value else ()
    return lambda values: values or fallback


@register("bool", "LDAP TRUE/FALSE, 1/0, yes/no to a boolean (must be last)")
def _bool(p: Params) -> Fn:
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


@register("base64", "base64 of each value's bytes: utf-8 (default) or utf-16le (as Entra)",
          opt("encoding", choice("utf-8", "utf-16le"), default="utf-8"))
def _base64(p: Params) -> Fn:
    encoding = p.get("encoding", str)
    return each(lambda v: base64.b64encode(encode("base64", v, encoding)).decode("ascii"))


@register("utf8_hex", "each value's UTF-8 bytes as upper-case hex (Entra ConvertToUTF8Hex)")
def _utf8_hex(p: Params) -> Fn:
    return each(lambda v: encode("utf8_hex", v, "utf-8").hex().upper())
