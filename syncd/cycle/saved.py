"""Saved plans: review once, apply exactly that — or only the objects an admin approves.

`make` writes what a dry run computed (the plan each flow's run would check, refused or not)
with a fingerprint of what it was computed from: the config file's digest, each flow's
cursor fingerprint (mapping, scope, match keys) and the state store.

`Review` is the hook `syncd apply` gives the engine (`Options.review`): the run computes a
fresh plan from the directories as they are now, and only reviewed changes that the fresh
plan contains *unchanged* are kept — same object, same values sent, same values replaced,
same resulting base. That is the precondition check: a change whose source or link moved
since the review is not applied ("changed since the plan was made"), and neither is any
change nobody reviewed. With approvals (`--approve NAME`) only the named objects' changes
are kept, and the safety check — which refused the whole — is waived for them; without, the
reviewed plan is safety-checked like any run. No cursor moves: what was left out is simply
planned again by the next run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from syncd.config.flows import Config
from syncd.cycle.render import Lazy, shown
from syncd.cycle.result import FlowResult
from syncd.cycle.setup import fingerprint
from syncd.errors import ConfigError
from syncd.plan.value import Change, Plan

FORMAT = 1
#: What identifies a change; everything in `Change.to_dict` but its wording (`reason`) and
#: its derived `id` must be equal for a reviewed change to be applied.
_WORDING = ("id", "reason")


def config_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make(config: Config, results: Sequence[FlowResult], state_store: str) -> dict[str, Any]:
    """The saved-plan document for these dry-run results, to be written with
    `render.json_pieces` (each flow's changes are a `Lazy` array)."""
    flows = []
    for r in results:
        flow = config.flows[r.flow]
        flows.append({
            "flow": r.flow, "result": r.result, "refused": list(r.refused),
            "errors": list(r.errors),
            "fingerprints": {kf.kind: fingerprint(flow, kf.kind) for kf in flow.kinds},
            "names": dict(r.names),
            "plan": _masked(r.plan) if r.plan is not None else None,
        })
    return {"syncd_plan": FORMAT, "created_at": datetime.now(UTC).isoformat(),
            "config": str(config.path), "config_sha256": config_digest(config.path),
            "state_store": state_store, "flows": flows}


def load(doc: Mapping[str, Any], config: Config, where: str) -> dict[str, Plan]:
    """The reviewed plans per flow, after checking that the file was made from this config
    (ConfigError naming the file otherwise: a plan is only valid for what it was made of)."""
    if not isinstance(doc, Mapping) or doc.get("syncd_plan") != FORMAT:
        raise ConfigError(f"{where}: not a saved plan of this syncd version "
                          f"(syncd_plan = {FORMAT} expected)")
    if doc.get("config_sha256") != config_digest(config.path):
        raise ConfigError(f"{where}: the config {config.path} changed since this plan was "
                          "made: make a new plan (syncd plan --out)")
    plans: dict[str, Plan] = {}
    flows = doc.get("flows")
    if not isinstance(flows, list) or not all(
            isinstance(f, Mapping) and isinstance(f.get("flow"), str) for f in flows):
        raise ConfigError(f"{where}: malformed plan (flows)")
    for f in flows:
        name = f["flow"]
        flow = config.flows.get(name)
        if flow is None:
            raise ConfigError(f"{where}: flow {name!r} is not in {config.path}")
        now = {kf.kind: fingerprint(flow, kf.kind) for kf in flow.kinds}
        if f.get("fingerprints") != now:
            raise ConfigError(f"{where}: flow {name}'s mapping, scope or match keys changed "
                              "since this plan was made: make a new plan")
        if f.get("plan") is not None:
            try:
                plans[name] = Plan.from_dict(f["plan"])
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise ConfigError(f"{where}: flow {name}: malformed plan ({exc!r})") from None
    return plans


def _identity(c: Change) -> tuple[str, str, str, str]:
    return (c.kind, c.op, c.source_id or f"target:{c.target_id}", c.side)


def _masked(plan: Plan) -> dict[str, Any]:
    """The plan as saved: secret attributes (a mapped password) masked — a plan file is
    reviewed and kept, and a password is sent, never kept. Its changes are a `Lazy` array,
    each rendered when the document is written (`render.json_pieces`): `Plan.to_dict` of
    the plan without its changes gives the keys in their order, then summary and changes
    are this plan's."""
    doc = replace(plan, changes=()).to_dict()
    doc["summary"] = plan.summary()
    doc["changes"] = Lazy(lambda: (shown(c) for c in plan.changes))
    return doc


def _content(c: Change) -> dict[str, Any]:
    """What must be equal for a reviewed change to be applied: everything but its wording,
    secret attributes masked on both sides (the saved plan holds them masked; their values
    come from the config, whose digest the plan carries)."""
    d = json.loads(json.dumps(shown(c), sort_keys=True))
    return {k: v for k, v in d.items() if k not in _WORDING}


def _object(flow: str, c: Change) -> tuple[str, str, str]:
    return (flow, c.kind, c.source_id or f"target:{c.target_id}")


def approvals(reviewed: Mapping[str, Plan], tokens: Iterable[str]
              ) -> frozenset[tuple[str, str, str]]:
    """The objects `--approve` names, each (flow, kind, id): by name (case-insensitive) when
    some change is about an object of that name, else by anchor (source id or target id,
    exact). A token that names no object of the plan, or several (also the same id in two
    flows), is an error: approving the wrong object is what this command exists to prevent."""
    changes = [(flow, c) for flow, p in reviewed.items() for c in p.changes]
    out: set[tuple[str, str, str]] = set()
    problems = []
    for token in tokens:
        hits = {_object(f, c): c.name for f, c in changes
                if c.name.casefold() == token.casefold()}
        if not hits:
            hits = {_object(f, c): c.name for f, c in changes
                    if token in (c.source_id, c.target_id)}
        if not hits:
            problems.append(f"{token!r}: no change of this plan is about it")
        elif len(hits) > 1:
            which = ", ".join(f"{k} {n} ({sid}, flow {f})"
                              for (f, k, sid), n in sorted(hits.items()))
            problems.append(f"{token!r} names several objects ({which}): approve by anchor")
        else:
            out |= set(hits)
    if problems:
        raise ConfigError("--approve: " + "; ".join(problems))
    return frozenset(out)


def _leaving_members(fresh: Plan, keep: list[Change], chosen: set[tuple[str, str, str, str]]
                     ) -> list[Change]:
    """The membership removals that go with the users a kept change deprovisions or deletes
    (`follow_members` put them in group changes): applied with them even where the group's
    change itself was not kept — a user deleted while still named by a group would stay
    there, its link gone, for ever."""
    leaving = {c.source_id for c in keep
               if c.kind == "user" and c.op in ("deprovision", "delete")}
    if not leaving:
        return []
    out = []
    for c in fresh.changes:
        if c.op != "set_members" or _identity(c) in chosen:
            continue
        remove = tuple(m for m in c.remove if m in leaving)
        source_remove = tuple(m for m in c.source_remove if m in leaving)
        if remove or source_remove:
            out.append(replace(c, add=(), source_add=(), remove=remove,
                               source_remove=source_remove, members=None,
                               reason="members deprovisioned by approved changes"))
    return out


@dataclass
class Outcome:
    """What became of a flow's reviewed changes."""

    kept: list[str] = field(default_factory=list)
    #: Reviewed, but the object changed since (or the change is no longer planned).
    stale: list[str] = field(default_factory=list)
    #: Reviewed and still valid, but not among the approved objects.
    not_approved: list[str] = field(default_factory=list)
    #: Planned now but never reviewed (not applied).
    unreviewed: int = 0


@dataclass
class Review:
    """`Options.review` for `syncd apply` (see the module docstring)."""

    reviewed: Mapping[str, Plan]
    #: `approvals`: the objects whose changes alone are applied (empty: all reviewed).
    approve: frozenset[tuple[str, str, str]] = frozenset()
    outcomes: dict[str, Outcome] = field(default_factory=dict)

    def __call__(self, fresh: Plan) -> Plan:
        out = self.outcomes[fresh.flow] = Outcome()
        reviewed = self.reviewed.get(fresh.flow)
        if reviewed is None:
            return Plan(fresh.flow, (), fresh.held, fresh.notes, fresh.linked)
        now = {_identity(c): c for c in fresh.changes}
        keep: list[Change] = []
        for c in reviewed.changes:
            cur = now.get(_identity(c))
            if cur is None or _content(cur) != _content(c):
                out.stale.append(c.name)
            elif self.approve and _object(fresh.flow, c) not in self.approve:
                out.not_approved.append(c.name)
            else:
                keep.append(cur)
                out.kept.append(c.name)
        keep += _leaving_members(fresh, keep, {_identity(c) for c in keep})
        seen = {_identity(c) for c in reviewed.changes}
        out.unreviewed = sum(1 for k in now if k not in seen)
        return Plan(fresh.flow, Plan.ordered(keep), fresh.held, fresh.notes, fresh.linked)
