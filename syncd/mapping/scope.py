"""Flow scope: which source entries a flow manages at all.

Conditions look at *raw* source attributes, before mapping, because scope is usually phrased in
the source's own terms (``employeeType``, ``memberOf``, ``userAccountControl``) which need not be
mapped anywhere. Leaving scope is a deprovisioning decision taken by policy elsewhere; this
module only answers "in or out".

Conditions are ANDed. A multi-valued attribute satisfies a condition when any value does, and
``not`` negates the whole condition: ``not`` + ``equals`` means "no value equals".
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr
from pydantic import ValidationError as PydanticValidationError

from syncd.errors import ConfigError
from syncd.model import RawAttrs

Op = Literal["equals", "in", "matches", "present"]
_OPS: tuple[Op, ...] = ("equals", "in", "matches", "present")
_KEYS = ("attribute", *_OPS, "not", "case_sensitive")
_ATTR = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.;:-]*$")


class ConditionTable(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    attribute: StrictStr
    equals: StrictStr | StrictInt | None = None
    in_: list[StrictStr | StrictInt] | None = Field(None, alias="in", min_length=1)
    matches: StrictStr | None = None
    present: StrictBool | None = None
    not_: StrictBool = Field(False, alias="not")
    case_sensitive: StrictBool = False


@dataclass(frozen=True)
class Condition:
    """One compiled condition. `needles` are already case-folded unless case-sensitive."""

    attribute: str  # lower-cased
    op: Op
    needles: frozenset[str] = frozenset()
    regex: re.Pattern[str] | None = None
    present: bool = True
    negate: bool = False
    case_sensitive: bool = False

    def _fold(self, v: str) -> str:
        return v if self.case_sensitive else v.casefold()

    def holds(self, raw: RawAttrs) -> bool:
        values = [v for v in raw.get(self.attribute, ()) if v]
        if self.op == "present":
            result = bool(values) == self.present
        elif self.op == "matches":
            assert self.regex is not None
            rx = self.regex
            result = any(rx.search(v) for v in values)
        else:
            result = any(self._fold(v) in self.needles for v in values)
        return result != self.negate

    def __str__(self) -> str:
        if self.op == "present":
            text = f"{self.attribute} {'present' if self.present else 'absent'}"
        elif self.op == "matches":
            assert self.regex is not None
            text = f"{self.attribute} matches {self.regex.pattern!r}"
        else:
            text = f"{self.attribute} {self.op} {sorted(self.needles)!r}"
        if self.case_sensitive:
            text += " (case-sensitive)"
        return f"not ({text})" if self.negate else text

    def why_not(self) -> str:
        """Why an entry failing this condition is out of scope, without double negatives."""
        if self.negate:
            inner = str(replace(self, negate=False))
            return f"{inner}, which the scope excludes"
        return f"{self} does not hold"


def _compile(item: object, where: str) -> Condition:
    if not isinstance(item, dict):
        raise ConfigError(f"a scope condition is a table like {{ attribute = \"x\", equals = "
                          f"\"y\" }}, got {item!r}", where=where)
    try:
        t = ConditionTable.model_validate(item)
    except PydanticValidationError as e:
        err = e.errors()[0]
        key = str(err["loc"][0]) if err["loc"] else "attribute"
        if err["type"] == "extra_forbidden":
            hint = difflib.get_close_matches(key, _KEYS, n=1, cutoff=0.6)
            msg = "unknown key" + (f" (did you mean {hint[0]!r}?)" if hint else "")
            msg += f"; a condition takes: {', '.join(_KEYS)}"
        elif err["type"] == "missing":
            msg = "required"
        elif key in ("equals", "in") and err["type"] != "too_short":
            # One error per union member is noise; say what is accepted.
            index = "".join(f"[{p}]" for p in err["loc"][1:] if isinstance(p, int))
            key += index
            what = "a list of strings or integers" if key == "in" else "a string or integer"
            msg = f"expected {what} (got {err['input']!r})"
        else:
            msg = f"{err['msg']} (got {err['input']!r})"
        raise ConfigError(msg, where=f"{where}.{key}") from None
    if not _ATTR.match(t.attribute):
        raise ConfigError(f"{t.attribute!r} is not an attribute name",
                          where=f"{where}.attribute")
    given = [op for op in _OPS if item.get(op) is not None]
    if len(given) != 1:
        what = f"got {', '.join(given)}" if given else "got none"
        raise ConfigError(f"needs exactly one of {', '.join(_OPS)}; {what}",
                          where=f"{where}.{given[1] if given else 'attribute'}")
    op = given[0]
    attr, cs, neg = t.attribute.lower(), t.case_sensitive, t.not_

    if op == "present":
        assert t.present is not None
        return Condition(attr, op, present=t.present, negate=neg)
    if op == "matches":
        assert t.matches is not None
        try:
            rx = re.compile(t.matches, 0 if cs else re.IGNORECASE)
        except re.error as e:
            raise ConfigError(f"invalid regex {t.matches!r}: {e}",
                              where=f"{where}.matches") from None
        return Condition(attr, op, regex=rx, negate=neg, case_sensitive=cs)
    raw_needles = [t.equals] if op == "equals" else list(t.in_ or ())
    needles = frozenset(str(n) if cs else str(n).casefold() for n in raw_needles)
    return Condition(attr, op, needles=needles, negate=neg, case_sensitive=cs)


@dataclass(frozen=True)
class Scope:
    """All conditions must hold. No conditions: everything is in scope."""

    conditions: tuple[Condition, ...] = ()
    #: `Condition.why_not` of each, once: `failing` runs for every out-of-scope entry read.
    texts: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "texts", tuple(c.why_not() for c in self.conditions))

    @classmethod
    def everything(cls) -> Scope:
        return cls(())

    @classmethod
    def from_config(cls, items: Sequence[Any] | None, where: str) -> Scope:
        """Compile a list of condition tables; errors name ``where[index].key``."""
        if items is None:
            return cls.everything()
        if not isinstance(items, Sequence) or isinstance(items, str | bytes):
            raise ConfigError(f"scope is a list of condition tables, got {items!r}",
                              where=where)
        return cls(tuple(_compile(item, f"{where}[{i}]") for i, item in enumerate(items)))

    @property
    def is_everything(self) -> bool:
        return not self.conditions

    def contains(self, raw: RawAttrs) -> bool:
        return all(c.holds(raw) for c in self.conditions)

    def failing(self, raw: RawAttrs) -> str | None:
        """Why `raw` is out of scope: the first condition it fails (None: in scope), for what
        a plan says when an entry leaves the scope."""
        for c, text in zip(self.conditions, self.texts, strict=True):
            if not c.holds(raw):
                return text
        return None

    def source_attributes(self) -> frozenset[str]:
        """Lower-cased raw attributes the conditions read: the source must fetch these too."""
        return frozenset(c.attribute for c in self.conditions)

    def __str__(self) -> str:
        return " and ".join(str(c) for c in self.conditions) or "everything"
