"""Flow scope: which source entries a flow manages at all.

Conditions look at *raw* source attributes, before mapping, because scope is usually phrased in
the source's own terms (``employeeType``, ``memberOf``, ``userAccountControl``) which need not be
mapped anywhere. Leaving scope is a deprovisioning decision taken by policy elsewhere; this
module only answers "in or out".

The scope is a list of conditions that must all hold; each is a test or an ``all``/``any``/
``not`` combination (`syncd.mapping.conditions`), so "staff, or contractors with a sponsor"
is one ``any`` entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from syncd.mapping.conditions import Condition, compile_conditions
from syncd.model import RawAttrs


@dataclass(frozen=True)
class Scope:
    """All conditions must hold. No conditions: everything is in scope.

    A test that cannot read a value (`ConditionError`) propagates: the caller holds that entry
    rather than calling it out of scope, which would deprovision it.
    """

    conditions: tuple[Condition, ...] = ()
    #: `why_not` of each, once: `failing` runs for every out-of-scope entry read.
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
        return cls(compile_conditions(items, where))

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
        return frozenset().union(*(c.attributes() for c in self.conditions))

    def __str__(self) -> str:
        return " and ".join(str(c) for c in self.conditions) or "everything"
