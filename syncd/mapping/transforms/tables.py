"""`map`: replace each value through a table (Entra's Switch on one attribute).

``{ map = { values = { NSW = "Australia/Sydney", QLD = "Australia/Brisbane" },
default = "Australia/Sydney" } }``

A value not in the table is, by `otherwise`: an ``error`` (the default: the entry is rejected
with the value named, so a new code in HR is seen, not silently passed on), ``keep`` (passed
through unchanged) or ``drop`` (removed); or, when `default` is given instead, that value.
Keys compare case-insensitively unless ``case_sensitive = true``. A table entry mapped to
``""`` removes that value.
"""

from __future__ import annotations

from syncd.mapping.transforms.registry import (
    Fn,
    Param,
    Params,
    Strs,
    TransformError,
    choice,
    flag,
    opt,
    register,
    table,
)

_SHOWN_KEYS = 8  # an error lists this many keys of a long table


@register("map", "replace each value through a table; otherwise = error (default) | keep | "
          "drop, or a default value", Param("values", table),
          opt("otherwise", choice("error", "keep", "drop")), opt("default"),
          opt("case_sensitive", flag, default=False))
def _map(p: Params) -> Fn:
    entries = p.get("values", dict)
    if not entries:
        raise ValueError("values must not be empty")
    if "" in entries:
        raise ValueError("values: an empty key never matches (empty strings are not values); "
                         "use the default transform for a missing value")
    if "otherwise" in p.given and "default" in p.given:
        raise ValueError("give either otherwise or default, not both")
    exact = p.get("case_sensitive", bool)
    fold = (lambda s: s) if exact else str.casefold
    lookup: dict[str, str] = {}
    first: dict[str, str] = {}
    for key, out in entries.items():
        k = fold(key)
        if k in lookup:
            raise ValueError(f"values: keys {first[k]!r} and {key!r} differ only in case; "
                             "set case_sensitive = true or keep one")
        lookup[k], first[k] = out, key
    default = p.maybe("default", str)
    otherwise = "default" if default is not None else p.maybe("otherwise", str) or "error"
    keys = list(entries)
    known = ", ".join(keys[:_SHOWN_KEYS]) + (", ..." if len(keys) > _SHOWN_KEYS else "")

    def one(value: str) -> str:
        hit = lookup.get(fold(value))
        if hit is not None:
            return hit
        if otherwise == "default":
            return default or ""
        if otherwise == "keep":
            return value
        if otherwise == "drop":
            return ""
        raise TransformError("map", value, f"is not in the table ({known}); set otherwise "
                             "= \"keep\" or \"drop\", or a default")

    def run(values: Strs) -> Strs:
        return tuple(r for r in (one(v) for v in values) if r)

    return run
