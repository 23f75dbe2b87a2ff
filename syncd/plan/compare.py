"""Comparing values as directories mean them: what the planner calls equal and what a match
key is, shared by the push planner, the two-way merge and the cycle's lookups.

Kept apart from `syncd.plan.push` (which re-exports them) because every diff goes through
`same`: it is the one place that decides "empty is empty", "a value equals its 1-tuple" and
"42 equals the text 42".
"""

from __future__ import annotations

from syncd.model import Attrs, Value

__all__ = ["diff", "match_value", "same"]


def match_value(value: Value) -> str | None:
    """Normalise a value for matching: SCIM userName and emails are case-insensitive."""
    if value is None or value == "" or value == ():
        return None
    if isinstance(value, tuple):
        value = value[0]
    return str(value).casefold()


def same(a: Value, b: Value) -> bool:
    """Equal as directory values: empty is empty, and one value equals a 1-tuple of it
    (LDAP hands back multi-valued attributes as lists)."""
    empty = (None, "", ())
    if a in empty and b in empty:
        return True
    if isinstance(a, tuple) and len(a) == 1 and not isinstance(b, tuple):
        a = a[0]
    if isinstance(b, tuple) and len(b) == 1 and not isinstance(a, tuple):
        b = b[0]
    return a == b or _same_number(a, b) or _same_number(b, a)


def _same_number(a: Value, b: Value) -> bool:
    """An integer a mapping yields (a const, a switch case) equals the text a target reads
    back for an integer attribute (SCIM servers and LDAP hand integers over as text)."""
    return isinstance(a, int) and not isinstance(a, bool) and isinstance(b, str) and \
        str(a) == b.strip()


def diff(new: Attrs, old: Attrs, skip: frozenset[str] = frozenset()) -> dict[str, Value]:
    return {p: v for p, v in new.items() if p not in skip and not same(v, old.get(p))}
