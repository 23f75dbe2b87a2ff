"""Conditions over a source entry's raw attributes: one grammar for scope and for mappings.

A condition is a table. A *test* names an attribute and one operator; ``all``, ``any`` and
``not`` combine conditions::

    { attribute = "employeeType", in = ["staff", "intern"] }
    { attribute = "userAccountControl", bits_any = 2 }          # AD: ACCOUNTDISABLE
    { any = [ { attribute = "nsAccountLock", equals = true },
              { attribute = "disabled", equals = true } ] }
    { not = { attribute = "mail", present = true } }

A multi-valued attribute satisfies a test when any of its values does; ``not = true`` on a test
negates the whole test ("no value equals"). Tests compare case-insensitively unless
``case_sensitive = true``.

Typed operators refuse values they cannot read instead of quietly answering "no": a
``bits_any`` over ``"abc"``, ``equals = true`` over ``"maybe"``, ``gt = 5`` over ``"x"`` raise
`ConditionError`, which holds that one entry with the attribute, value and reason -- a wrong
"no" in a scope would deprovision it, a wrong "no" in ``active`` would disable it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr
from pydantic import ValidationError as PydanticValidationError

from syncd.errors import ConfigError, Rejected
from syncd.model import RawAttrs

Op = Literal["equals", "in", "matches", "present", "contains", "starts_with", "ends_with",
             "gt", "ge", "lt", "le", "bits_all", "bits_any"]
OPS: tuple[Op, ...] = ("equals", "in", "matches", "present", "contains", "starts_with",
                       "ends_with", "gt", "ge", "lt", "le", "bits_all", "bits_any")
_COMBINATORS = ("all", "any", "not")
TEST_KEYS = ("attribute", *OPS, "not", "case_sensitive")
_ATTR = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.;:-]*$")
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})
_WORDS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<=", "bits_all": "has all bits of",
          "bits_any": "has any bit of", "starts_with": "starts with", "ends_with": "ends with"}


class ConditionError(Rejected):
    """A value a typed test cannot read: the entry is held, never decided on a guess."""

    def __init__(self, attribute: str, value: str, reason: str) -> None:
        self.attribute = attribute
        self.value = value
        self.reason = reason
        super().__init__(f"{attribute} = {value!r}: {reason}")


class _TestTable(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    attribute: StrictStr
    equals: StrictStr | StrictBool | StrictInt | None = None
    in_: list[StrictStr | StrictInt] | None = Field(None, alias="in", min_length=1)
    matches: StrictStr | None = None
    present: StrictBool | None = None
    contains: StrictStr | None = None
    starts_with: StrictStr | None = None
    ends_with: StrictStr | None = None
    gt: StrictInt | StrictFloat | StrictStr | None = None
    ge: StrictInt | StrictFloat | StrictStr | None = None
    lt: StrictInt | StrictFloat | StrictStr | None = None
    le: StrictInt | StrictFloat | StrictStr | None = None
    bits_all: StrictInt | None = None
    bits_any: StrictInt | None = None
    not_: StrictBool = Field(False, alias="not")
    case_sensitive: StrictBool = False


def condition_json_schema() -> type[BaseModel]:
    """The model of one test, for the config's JSON Schema (combinators are added there)."""
    return _TestTable


_EXPECTED = {"equals": "a string, boolean or integer", "in": "a list of strings or integers",
             "gt": "a number or string", "ge": "a number or string", "lt": "a number or string",
             "le": "a number or string"}


def _number(attribute: str, value: str, op: str) -> float:
    try:
        return float(value.strip())
    except ValueError:
        raise ConditionError(attribute, value, f"is not a number ({op} compares numbers)"
                             ) from None


def _integer(attribute: str, value: str, op: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise ConditionError(attribute, value, f"is not an integer ({op} tests bits)") from None


@dataclass(frozen=True)
class Test:
    """One attribute, one operator. `needles` are case-folded unless case-sensitive."""

    attribute: str  # lower-cased
    op: Op
    needles: frozenset[str] = frozenset()
    needle: str | float | int | bool = ""
    regex: re.Pattern[str] | None = None
    present: bool = True
    negate: bool = False
    case_sensitive: bool = False

    def _fold(self, v: str) -> str:
        return v if self.case_sensitive else v.casefold()

    def _one(self, v: str) -> bool:
        op, needle = self.op, self.needle
        if op == "matches":
            assert self.regex is not None
            return self.regex.search(v) is not None
        if op == "in" or (op == "equals" and not isinstance(needle, bool)):
            return self._fold(v) in self.needles
        if op == "equals":
            low = v.strip().lower()
            if low not in _TRUE and low not in _FALSE:
                raise ConditionError(self.attribute, v, "is not a boolean (TRUE/FALSE, 1/0, "
                                     "yes/no)")
            return (low in _TRUE) == needle
        if op in ("contains", "starts_with", "ends_with"):
            text, n = self._fold(v), self._fold(str(needle))
            return (n in text if op == "contains" else
                    text.startswith(n) if op == "starts_with" else text.endswith(n))
        if op in ("bits_all", "bits_any"):
            bits = _integer(self.attribute, v, op)
            assert isinstance(needle, int)
            return (bits & needle) == needle if op == "bits_all" else bool(bits & needle)
        if isinstance(needle, str):  # gt/ge/lt/le on text: generalizedTime, ISO dates
            a, b = self._fold(v), self._fold(needle)
        else:
            a, b = _number(self.attribute, v, op), needle  # type: ignore[assignment]
        return (a > b if op == "gt" else a >= b if op == "ge" else
                a < b if op == "lt" else a <= b)

    def holds(self, raw: RawAttrs) -> bool:
        values = raw.get(self.attribute, ())
        if self.op == "present":
            result = any(values) == self.present
        elif self.needles and "" not in self.needles:  # equals/in: one set test, in C
            result = not self.needles.isdisjoint(
                values if self.case_sensitive else map(str.casefold, values))
        else:
            one = self._one
            result = any(one(v) for v in values if v)
        return result != self.negate

    def attributes(self) -> frozenset[str]:
        return frozenset({self.attribute})

    def __str__(self) -> str:
        if self.op == "present":
            text = f"{self.attribute} {'present' if self.present else 'absent'}"
        elif self.op == "matches":
            assert self.regex is not None
            text = f"{self.attribute} matches {self.regex.pattern!r}"
        elif self.op in ("equals", "in") and not isinstance(self.needle, bool):
            text = f"{self.attribute} {self.op} {sorted(self.needles)!r}"
        else:
            text = f"{self.attribute} {_WORDS.get(self.op, self.op)} {self.needle!r}"
        if self.case_sensitive:
            text += " (case-sensitive)"
        return f"not ({text})" if self.negate else text

    def why_not(self) -> str:
        if self.negate:
            return f"{replace(self, negate=False)}, which the scope excludes"
        return f"{self} does not hold"


@dataclass(frozen=True)
class All:
    """Every condition holds (an empty list holds)."""

    conditions: tuple[Condition, ...]

    def holds(self, raw: RawAttrs) -> bool:
        return all(c.holds(raw) for c in self.conditions)

    def attributes(self) -> frozenset[str]:
        return frozenset().union(*(c.attributes() for c in self.conditions))

    def __str__(self) -> str:
        return "(" + " and ".join(str(c) for c in self.conditions) + ")"

    def why_not(self) -> str:
        return f"{self} does not hold"


@dataclass(frozen=True)
class Any_:
    """At least one condition holds."""

    conditions: tuple[Condition, ...]

    def holds(self, raw: RawAttrs) -> bool:
        return any(c.holds(raw) for c in self.conditions)

    def attributes(self) -> frozenset[str]:
        return frozenset().union(*(c.attributes() for c in self.conditions))

    def __str__(self) -> str:
        return "(" + " or ".join(str(c) for c in self.conditions) + ")"

    def why_not(self) -> str:
        return f"none of {self} holds"


@dataclass(frozen=True)
class Not:
    inner: Condition

    def holds(self, raw: RawAttrs) -> bool:
        return not self.inner.holds(raw)

    def attributes(self) -> frozenset[str]:
        return self.inner.attributes()

    def __str__(self) -> str:
        return f"not {self.inner}"

    def why_not(self) -> str:
        return f"{self.inner} holds, which the scope excludes"


Condition = Test | All | Any_ | Not


def _test_error(e: PydanticValidationError, item: Mapping[str, Any], where: str
                ) -> ConfigError:
    err = e.errors()[0]
    key = str(err["loc"][0]) if err["loc"] else "attribute"
    if err["type"] == "extra_forbidden":
        hint = difflib.get_close_matches(key, (*TEST_KEYS, *_COMBINATORS), n=1, cutoff=0.6)
        msg = "unknown key" + (f" (did you mean {hint[0]!r}?)" if hint else "")
        msg += f"; a condition takes: {', '.join(TEST_KEYS)} -- or all, any, not"
    elif err["type"] == "missing":
        msg = "required"
    elif key in _EXPECTED and err["type"] != "too_short":
        index = "".join(f"[{p}]" for p in err["loc"][1:] if isinstance(p, int))
        if index:  # one item of a list is wrong: say what an item is
            msg = f"expected a string or integer (got {err['input']!r})"
        else:
            msg = f"expected {_EXPECTED[key]} (got {item.get(key)!r})"
        key += index
    else:
        msg = f"{err['msg']} (got {err['input']!r})"
    return ConfigError(msg, where=f"{where}.{key}")


def _compile_test(item: Mapping[str, Any], where: str) -> Test:
    try:
        t = _TestTable.model_validate(dict(item))
    except PydanticValidationError as e:
        raise _test_error(e, item, where) from None
    if not _ATTR.match(t.attribute):
        raise ConfigError(f"{t.attribute!r} is not an attribute name",
                          where=f"{where}.attribute")
    given = [op for op in OPS if item.get(op) is not None]
    if len(given) != 1:
        what = f"got {', '.join(given)}" if given else "got none"
        raise ConfigError(f"needs exactly one of {', '.join(OPS)}; {what}",
                          where=f"{where}.{given[1] if given else 'attribute'}")
    op = given[0]
    attr, cs, neg = t.attribute.lower(), t.case_sensitive, t.not_
    value = getattr(t, "in_" if op == "in" else op)
    if op == "present":
        return Test(attr, op, present=value, negate=neg)
    if op == "matches":
        try:
            rx = re.compile(value, 0 if cs else re.IGNORECASE)
        except re.error as e:
            raise ConfigError(f"invalid regex {value!r}: {e}", where=f"{where}.matches"
                              ) from None
        return Test(attr, op, regex=rx, negate=neg, case_sensitive=cs)
    if op in ("bits_all", "bits_any") and value <= 0:
        raise ConfigError(f"a bit mask is a positive integer, got {value}",
                          where=f"{where}.{op}")
    if op == "in" or (op == "equals" and not isinstance(value, bool)):
        raw_needles = value if op == "in" else [value]
        needles = frozenset(str(n) if cs else str(n).casefold() for n in raw_needles)
        return Test(attr, op, needles=needles, negate=neg, case_sensitive=cs)
    return Test(attr, op, needle=value, negate=neg, case_sensitive=cs)


def compile_condition(item: object, where: str) -> Condition:
    """Compile one condition table; errors name ``where.key``."""
    if not isinstance(item, Mapping):
        raise ConfigError(f"a condition is a table like {{ attribute = \"x\", equals = \"y\" "
                          f"}} or {{ any = [...] }}, got {item!r}", where=where)
    for key in ("all", "any"):
        if key in item:
            if len(item) != 1:
                others = ", ".join(sorted(str(k) for k in item if k != key))
                raise ConfigError(f"{key} = [...] stands alone in its table (also got "
                                  f"{others}); nest the other tests inside it", where=where)
            items = item[key]
            if not isinstance(items, Sequence) or isinstance(items, str) or not items:
                raise ConfigError(f"{key} takes a non-empty list of conditions, got "
                                  f"{items!r}", where=f"{where}.{key}")
            compiled = tuple(compile_condition(c, f"{where}.{key}[{i}]")
                             for i, c in enumerate(items))
            return All(compiled) if key == "all" else Any_(compiled)
    if isinstance(item.get("not"), Mapping):
        if len(item) != 1:
            raise ConfigError("not = { ... } stands alone in its table; to negate one test "
                              "write not = true next to its attribute", where=where)
        return Not(compile_condition(item["not"], f"{where}.not"))
    return _compile_test(item, where)


def compile_conditions(items: object, where: str) -> tuple[Condition, ...]:
    """A list of conditions (all must hold), as scope and ``all`` take them."""
    if not isinstance(items, Sequence) or isinstance(items, str | bytes):
        raise ConfigError(f"expected a list of condition tables, got {items!r}", where=where)
    return tuple(compile_condition(item, f"{where}[{i}]") for i, item in enumerate(items))
