"""The plan is a value: ordered changes that `apply` executes and humans review.

Order is part of the contract: users before groups (groups need member ids), membership after
both, deprovisioning last (so a failed create never leaves a user neither here nor there).
A plan serialises to JSON and back, so it can be reviewed, saved and re-applied.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from syncd.model import Kind, Value

Op = Literal["create", "adopt", "update", "set_members", "deprovision", "delete"]
OPS: tuple[Op, ...] = ("create", "adopt", "update", "set_members", "deprovision", "delete")

_STAGE = {
    ("user", "create"): 0, ("user", "adopt"): 0, ("user", "update"): 0,
    ("group", "create"): 1, ("group", "adopt"): 1, ("group", "update"): 1,
    ("group", "set_members"): 2,
    ("group", "deprovision"): 3, ("group", "delete"): 3,
    ("user", "deprovision"): 4, ("user", "delete"): 4,
}


@dataclass(frozen=True)
class Change:
    """One operation on the target.

    `attrs` holds the new values this change sends (all mapped values for create; only the
    changed ones for update and adopt); `before` the values it replaces, for review.
    `add`/`remove` are member *source* ids, resolved to target ids at apply time because
    users created earlier in the same apply have no target id yet.
    """

    op: Op
    kind: Kind
    source_id: str
    name: str
    target_id: str | None = None
    attrs: Mapping[str, Value] = field(default_factory=dict)
    before: Mapping[str, Value] = field(default_factory=dict)
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    #: The full mapped values after this change: becomes the link's base once applied.
    base: Mapping[str, Value] = field(default_factory=dict)
    reason: str = ""
    #: Two-way flows: where the object-level op happens ("target" or "source"); for updates
    #: and memberships the source-side part travels in the `source_*` fields (source
    #: attribute names; member source ids) and both parts succeed or the base stays.
    side: Literal["target", "source"] = "target"
    source_attrs: Mapping[str, Value] = field(default_factory=dict)
    source_before: Mapping[str, Value] = field(default_factory=dict)
    source_add: tuple[str, ...] = ()
    source_remove: tuple[str, ...] = ()
    #: Two-way memberships: the member source ids both sides hold once this change is
    #: applied, recorded as the link's member base (also when nothing is sent because both
    #: sides made the same change).
    members: tuple[str, ...] | None = None

    @property
    def stage(self) -> int:
        return _STAGE[(self.kind, self.op)]

    @property
    def id(self) -> str:
        """Stable within a plan: names the change in logs and the journal."""
        key = self.source_id or f"target:{self.target_id}"
        return f"{self.kind}:{self.op}:{key}" + (":source" if self.side == "source" else "")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id, "op": self.op, "kind": self.kind, "source_id": self.source_id,
            "target_id": self.target_id, "name": self.name, "reason": self.reason,
        }
        if self.attrs:
            d["attrs"] = _jsonable(self.attrs)
        if self.before:
            d["before"] = _jsonable(self.before)
        if self.add or self.remove:
            d["add"] = list(self.add)
            d["remove"] = list(self.remove)
        if self.base:
            d["base"] = _jsonable(self.base)
        if self.side != "target":
            d["side"] = self.side
        if self.source_attrs:
            d["source_attrs"] = _jsonable(self.source_attrs)
            d["source_before"] = _jsonable(self.source_before)
        if self.source_add or self.source_remove:
            d["source_add"] = list(self.source_add)
            d["source_remove"] = list(self.source_remove)
        if self.members is not None:
            d["members"] = list(self.members)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Change:
        return cls(
            op=d["op"], kind=d["kind"], source_id=d["source_id"], name=d.get("name", ""),
            target_id=d.get("target_id"), attrs=_from_jsonable(d.get("attrs", {})),
            before=_from_jsonable(d.get("before", {})), add=tuple(d.get("add", ())),
            remove=tuple(d.get("remove", ())), base=_from_jsonable(d.get("base", {})),
            reason=d.get("reason", ""), side=d.get("side", "target"),
            source_attrs=_from_jsonable(d.get("source_attrs", {})),
            source_before=_from_jsonable(d.get("source_before", {})),
            source_add=tuple(d.get("source_add", ())),
            source_remove=tuple(d.get("source_remove", ())),
            members=tuple(d["members"]) if d.get("members") is not None else None,
        )


@dataclass(frozen=True)
class Hold:
    """An entry the planner refused to act on, and why (ambiguous match, mapping error)."""

    kind: Kind
    source_id: str
    name: str
    reason: str
    #: "collision" (another source entry owns the object this one would become) is kept as
    #: a pending row, so `syncd status` and `syncd explain` show it between runs.
    code: str = ""


@dataclass(frozen=True)
class Plan:
    flow: str
    changes: tuple[Change, ...]
    held: tuple[Hold, ...] = ()
    notes: tuple[str, ...] = ()
    #: Per kind: how many links are active (denominator of the % safety rule).
    linked: Mapping[str, int] = field(default_factory=dict)
    #: Per kind and op: changes applied page by page while a large source was read
    #: (`syncd.cycle.stream`) and too many to list here; the run's journal has each of them.
    streamed: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    @staticmethod
    def ordered(changes: list[Change]) -> tuple[Change, ...]:
        return tuple(sorted(changes, key=lambda c: (c.stage, c.name.casefold(), c.source_id)))

    def summary(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {
            "user": {op: 0 for op in OPS if op != "set_members"},
            "group": {op: 0 for op in OPS},
        }
        for c in self.changes:
            out[c.kind][c.op] += 1
        for kind, ops in self.streamed.items():
            for op, n in ops.items():
                out[kind][op] += n
        return out

    def count(self, kind: Kind, *ops: Op) -> int:
        return sum(1 for c in self.changes if c.kind == kind and c.op in ops)

    def __len__(self) -> int:
        return len(self.changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "flow": self.flow,
            "summary": self.summary(),
            "changes": [c.to_dict() for c in self.changes],
            "held": [vars(h) for h in self.held],
            "notes": list(self.notes),
            "linked": dict(self.linked),
            **({"streamed": {k: dict(v) for k, v in self.streamed.items()}}
               if self.streamed else {}),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Plan:
        return cls(
            flow=d["flow"],
            changes=tuple(Change.from_dict(c) for c in d["changes"]),
            held=tuple(Hold(**h) for h in d.get("held", ())),
            notes=tuple(d.get("notes", ())),
            linked=dict(d.get("linked", {})),
            streamed=dict(d.get("streamed", {})),
        )


def _jsonable(attrs: Mapping[str, Value]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in attrs.items()}


def _from_jsonable(d: Mapping[str, Any]) -> dict[str, Value]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


#: Base attributes (any case) an object no longer read from its source is named by, in
#: order: the SCIM names, then the naming attributes of a flow into LDAP or AD.
_NAMING: dict[str, tuple[str, ...]] = {
    "user": ("username", "uid", "samaccountname", "userprincipalname", "mail", "displayname",
             "cn"),
    "group": ("displayname", "cn", "samaccountname"),
}


def base_name(base: Mapping[str, Value], kind: Kind | None, default: str) -> str:
    """A human label from a link's base (plans, refusals, the journal): its userName or
    displayName, else what a flow into a directory maps (uid, sAMAccountName, cn), else
    `default` (the source id). `kind` None tries the user names, then the group ones."""
    low = {k.lower(): v for k, v in base.items()}
    for key in _NAMING["user" if kind is None else kind] + (
            _NAMING["group"] if kind is None else ()):
        value = low.get(key)
        if isinstance(value, tuple):
            value = value[0] if value else None
        if isinstance(value, str) and value:
            return value
    return default

