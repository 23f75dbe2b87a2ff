"""Regular-expression transforms: `replace` (substitution with groups) and `extract`.

Patterns are Python regular expressions, compiled at build time. In `with`, ``\\1`` and
``\\g<name>`` insert groups (``\\g<0>`` the whole match); Entra's ``${name}`` is written
``\\g<name>`` here.
"""

from __future__ import annotations

import re

from syncd.mapping.transforms.registry import (
    Fn,
    Param,
    Params,
    Strs,
    each,
    index_or_name,
    opt,
    register,
)


def compile_pattern(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as e:
        raise ValueError(f"pattern: invalid regex {pattern!r}: {e}") from None


@register("replace", "regex substitution on every value; with may use groups (\\1, \\g<name>)",
          Param("pattern"), Param("with"))
def _replace(p: Params) -> Fn:
    rx = compile_pattern(p.get("pattern", str))
    repl = p.get("with", str)
    try:
        rx.sub(repl, "")  # CPython parses the replacement template eagerly: bad \1 fails here
    except (re.error, IndexError) as e:
        raise ValueError(f"with: invalid replacement {repl!r}: {e}") from None
    return each(lambda v: rx.sub(repl, v))


def _group(rx: re.Pattern[str], group: int | str | None) -> int | str:
    """The group to keep, checked against the pattern: by default the first, else the match."""
    if group is None:
        return 1 if rx.groups else 0
    if isinstance(group, str):
        if group not in rx.groupindex:
            names = ", ".join(rx.groupindex) or "none"
            raise ValueError(f"group {group!r} is not a named group of the pattern "
                             f"(named groups: {names})")
        return group
    if not 0 <= group <= rx.groups:
        raise ValueError(f"group {group} is out of range: the pattern has {rx.groups} "
                         "group(s); 0 is the whole match")
    return group


@register("extract", "keep only the part of each value a regex group matched (the first "
          "group, or the whole match); values that do not match are dropped",
          Param("pattern"), opt("group", index_or_name))
def _extract(p: Params) -> Fn:
    rx = compile_pattern(p.get("pattern", str))
    raw = p.raw("group")
    group = _group(rx, raw if isinstance(raw, int | str) else None)

    def run(values: Strs) -> Strs:
        out = []
        for v in values:
            m = rx.search(v)
            part = m.group(group) if m else None
            if part:
                out.append(part)
        return tuple(out)

    return run
