"""The shared tail of push and two-way cycles: safety check, apply, retry bookkeeping, and
the cursors, which advance only after a clean apply."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta

from syncd.config.durations import parse_duration
from syncd.config.flows import Flow
from syncd.connector import Connector
from syncd.cycle.apply import Applier
from syncd.cycle.result import MEMBERS_SHOWN, FlowResult, Options
from syncd.cycle.retrying import record_holds, record_outcomes
from syncd.cycle.setup import fingerprint
from syncd.model import Kind
from syncd.plan.nesting import GROUP_MEMBER
from syncd.plan.push import Item
from syncd.plan.safety import check, going
from syncd.plan.value import Plan
from syncd.state.store import Store


def check_apply_commit(flow: Flow, store: Store, source: Connector, target: Connector,
                        res: FlowResult, opts: Options, plan: Plan, seen: dict[str, int],
                        saves: list[tuple[str, Kind, str | None, bool, bool]],
                        items_by_kind: dict[Kind, dict[str, Item]], *,
                        shown: Plan | None = None, applier: Applier | None = None) -> None:
    """Shared tail: safety check, apply, pending bookkeeping, cursors (only when clean).

    `shown` is the plan reported (a streamed read's changes were applied already and only
    `plan`, what is left, is checked and applied here)."""
    if opts.review is not None:  # a saved plan: only its still-valid reviewed changes
        plan, shown, saves = opts.review(plan), None, []
    res.plan = shown if shown is not None else plan
    name_members(res, store, flow.name)
    check(plan, flow.safety, seen=seen, allow_deletes=opts.allow_deletes,
          recent=_recent(flow, store, plan, opts))
    if res.dry_run:
        return
    record_holds(flow, store, res.plan.held, items_by_kind)
    try:
        if plan.changes:
            assert res.run_id is not None
            applier = applier or Applier(flow, target, store, res.run_id, opts.progress,
                                         opts.stop, source=source)
            outcome = applier.apply(plan)
            res.applied += outcome.applied
            res.failures += outcome.failures
            record_outcomes(flow, store, plan.changes, outcome.failures, items_by_kind)
            if outcome.stopped:
                res.result = "aborted"
                res.errors.append("stopped before the plan was fully applied (shutdown "
                                  "requested)")
                return
            if outcome.fatal:
                res.result = "aborted"
                res.errors.append(f"Fatal: {outcome.fatal}")
                return
    finally:
        res.target_stats = target_stats(target)
    if res.failures:
        res.result = "failed"
    if any(f.retriable for f in res.failures):
        res.warnings.append("cursors not advanced: some changes failed transiently and will "
                            "be read again")
        return
    for conn, kind, value, full, ok in saves:
        if ok:
            store.save_cursor(flow.name, conn, kind, value, full=full,
                              fingerprint=fingerprint(flow, kind))


def _recent(flow: Flow, store: Store, plan: Plan, opts: Options) -> dict[str, int] | None:
    """What the flow deprovisioned within its safety window, looked up only when this plan
    deprovisions something too (and the check is not waived)."""
    window = flow.safety.window
    if window is None or opts.allow_deletes or not any(
            going(plan, kind) for kind in ("user", "group")):
        return None
    return store.recent_going(flow.name, datetime.now(UTC) - timedelta(
        seconds=parse_duration(window)))


def target_stats(target: Connector) -> dict[str, int]:
    """The counters a target exposes as `stats` (e.g. {"http_429": 3}), for metrics."""
    return dict(getattr(target, "stats", {}) or {})


#: Base attributes that name a person or group, in order of preference (LDAP targets keep
#: lower-cased names).
NAME_KEYS = ("userName", "username", "uid", "displayName", "displayname", "cn", "mail")


#: Member names looked up from links for one run's output, at most: past this, members
#: are shown by anchor (a plan of 10,000 groups' initial membership names a million users;
#: their names would cost more memory than the whole run).
NAME_LOOKUPS_MAX = 20_000


def name_members(res: FlowResult, store: Store, flow: str) -> None:
    """Member changes name people, not anchors: members not read in this run (an incremental
    cycle reads only what changed) are named from their links' base.

    Only the members the text output shows (the first 50 of each list) are looked up, up to
    `NAME_LOOKUPS_MAX`, streamed without building links: naming the initial membership of a
    million users used to load and decode every user's link (1.1 GB)."""
    assert res.plan is not None
    ids: set[str] = set()
    for c in res.plan.changes:
        if c.op == "set_members" or c.kind == "group":
            for members in (c.add, c.remove, c.source_add, c.source_remove):
                ids.update(m for m in members[:MEMBERS_SHOWN] if m not in res.names)
        if len(ids) >= NAME_LOOKUPS_MAX:
            break
    if not ids:
        return
    # member groups (nested = "preserve") are named "group NAME": from this plan, else links
    groups = {i.removeprefix(GROUP_MEMBER): i for i in ids if i.startswith(GROUP_MEMBER)}
    for c in res.plan.changes:
        if c.kind == "group" and c.source_id in groups:
            res.names[groups.pop(c.source_id)] = f"group {c.name}"
    lookups: tuple[tuple[Kind, Collection[str]], ...] = (("user", ids), ("group", groups))
    for kind, wanted in lookups:
        if not wanted:
            continue
        for sid, base in store.link_bases(flow, kind, wanted):
            name = next((str(v) for k in NAME_KEYS if (v := base.get(k))), None)
            if name and kind == "user":
                res.names[sid] = name
            elif name:
                res.names[groups[sid]] = f"group {name}"
