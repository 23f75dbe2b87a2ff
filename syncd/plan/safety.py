"""Safety checks between plan and apply: the answer to "it deleted everyone".

Every destructive effect of a plan is measured against the flow's thresholds before anything
is applied, not only deprovisioning:

- **deprovisions and deletes**, counting a mapped ``active`` that goes true -> false (a flipped
  ``employeeType`` disables everyone "by update") and the source-side deletes of two-way flows:
  a count (`max_deprovision`) and a share of the active links (`max_deprovision_percent`,
  above `percent_floor`);
- **group member removals**: a count per run (`max_member_removals`) and a share of one group's
  members (`max_member_removal_percent`, above `member_floor`) — a `member_attribute` typo
  empties every group;
- **mass rewrites of one attribute**: the share of the linked objects of a kind whose same
  attribute is replaced or cleared (`max_rewrite_percent`, above `rewrite_floor`) — a bad
  mapping that rewrites every user's email. First values (an attribute newly mapped) are not
  rewrites.

A source that returned nothing while links exist is always suspicious (wrong base DN, filter
typo, empty replica). A plan over any line is refused as a whole, with what would happen,
unless the operator lets this one run through (`--allow-deletes`, alias `--allow-destructive`).
"""

from __future__ import annotations

from collections import Counter, defaultdict

from syncd.config.schema import SafetyModel
from syncd.errors import SafetyRefused
from syncd.model import KINDS, Kind
from syncd.plan.value import Change, Plan

SHOW = 20


def _names(changes: list[Change]) -> str:
    return ", ".join(c.name for c in changes[:SHOW]) + (" …" if len(changes) > SHOW else "")


def _disables(c: Change) -> bool:
    """An update that turns a mapped ``active`` off is a deprovisioning in all but name."""
    return (c.op in ("update", "adopt") and c.attrs.get("active") is False
            and c.before.get("active") is not False)


def going(plan: Plan, kind: Kind) -> list[Change]:
    """The changes that take objects of `kind` away (either side of a two-way flow)."""
    return [c for c in plan.changes if c.kind == kind
            and (c.op in ("deprovision", "delete") or _disables(c))]


def check(plan: Plan, safety: SafetyModel, *, seen: dict[str, int],
          allow_deletes: bool = False, recent: dict[str, int] | None = None) -> None:
    """Raise `SafetyRefused` listing every reason; `seen` = source entries read per kind
    by a full read (incremental reads are absent: seeing nothing is normal for them);
    `recent` = objects per kind deprovisioned by this flow within `safety.window`."""
    if allow_deletes:
        return
    reasons = [*_deprovisions(plan, safety, seen), *_member_removals(plan, safety),
               *_rewrites(plan, safety)]
    if recent and not reasons:
        reasons = _window(plan, safety, recent)
    if reasons:
        raise SafetyRefused(reasons)


def _deprovisions(plan: Plan, safety: SafetyModel, seen: dict[str, int]) -> list[str]:
    reasons: list[str] = []
    for kind in KINDS:
        out = going(plan, kind)
        if not out:
            continue
        linked = plan.linked.get(kind, 0)
        names = _names(out)
        disables = sum(1 for c in out if _disables(c))
        how = f" ({disables} of them by a mapped active turning false)" if disables else ""
        if kind in seen and seen[kind] == 0 and linked > 0:  # full reads only
            reasons.append(
                f"the source returned no {kind}s while {linked} are linked: refusing to "
                f"deprovision {len(out)} (check the base DN and filter): {names}")
            continue
        if len(out) > safety.max_deprovision:
            reasons.append(
                f"{len(out)} {kind}s would be deprovisioned{how}, over max_deprovision="
                f"{safety.max_deprovision}: {names}")
            continue
        pct = 100.0 * len(out) / linked if linked else 100.0
        if len(out) > safety.percent_floor and pct > safety.max_deprovision_percent:
            reasons.append(
                f"{len(out)} of {linked} linked {kind}s ({pct:.0f}%) would be deprovisioned"
                f"{how}, over max_deprovision_percent={safety.max_deprovision_percent:g}: "
                f"{names}")
    return reasons


def _window(plan: Plan, safety: SafetyModel, recent: dict[str, int]) -> list[str]:
    """The deprovision thresholds over the window: what this plan takes away plus what the
    flow took away within it. A share is of the links there were: linked now + gone since."""
    reasons: list[str] = []
    for kind in KINDS:
        out, before = going(plan, kind), recent.get(kind, 0)
        if not out or not before:
            continue
        total = len(out) + before
        within = f"{len(out)} {kind}s in this plan and {before} already within the last " \
                 f"{safety.window}"
        if total > safety.max_deprovision:
            reasons.append(f"{within}: {total} deprovisioned, over max_deprovision="
                           f"{safety.max_deprovision} (a flood split across runs?): "
                           f"{_names(out)}")
            continue
        linked = plan.linked.get(kind, 0) + before
        pct = 100.0 * total / linked if linked else 100.0
        if total > safety.percent_floor and pct > safety.max_deprovision_percent:
            reasons.append(f"{within}: {total} of {linked} ({pct:.0f}%) deprovisioned, over "
                           f"max_deprovision_percent={safety.max_deprovision_percent:g} (a "
                           f"flood split across runs?): {_names(out)}")
    return reasons


def _member_removals(plan: Plan, safety: SafetyModel) -> list[str]:
    reasons: list[str] = []
    groups = [c for c in plan.changes
              if c.kind == "group" and c.op == "set_members" and (c.remove or c.source_remove)]
    total = sum(len(c.remove) + len(c.source_remove) for c in groups)
    if total > safety.max_member_removals:
        reasons.append(
            f"{total} group memberships would be removed in {len(groups)} groups, over "
            f"max_member_removals={safety.max_member_removals}: {_names(groups)}")
    for c in groups:
        removed = len(c.remove) + len(c.source_remove)
        had = c.before.get("members")
        if not isinstance(had, int) or isinstance(had, bool) or had <= 0:
            continue
        pct = 100.0 * removed / had
        if removed > safety.member_floor and pct > safety.max_member_removal_percent:
            reasons.append(
                f"group {c.name}: {removed} of its {had} members ({pct:.0f}%) would be "
                f"removed, over max_member_removal_percent="
                f"{safety.max_member_removal_percent:g}")
    return reasons


def _rewrites(plan: Plan, safety: SafetyModel) -> list[str]:
    reasons: list[str] = []
    for kind in KINDS:
        linked = plan.linked.get(kind, 0)
        if not linked:
            continue
        per_path: dict[str, list[Change]] = defaultdict(list)
        for c in plan.changes:
            if c.kind != kind or c.op != "update" or c.reason.startswith("re-appeared"):
                continue
            for side_attrs, side_before in ((c.attrs, c.before),
                                            (c.source_attrs, c.source_before)):
                for path in side_attrs:
                    if path != "active" and side_before.get(path) not in (None, "", ()):
                        per_path[path].append(c)
        counts = Counter({p: len(cs) for p, cs in per_path.items()})
        for path, n in sorted(counts.items()):
            pct = 100.0 * n / linked
            if n > safety.rewrite_floor and pct > safety.max_rewrite_percent:
                reasons.append(
                    f"{kind} attribute {path} would be rewritten on {n} of {linked} linked "
                    f"{kind}s ({pct:.0f}%), over max_rewrite_percent="
                    f"{safety.max_rewrite_percent:g} (a mapping change?): "
                    f"{_names(per_path[path])}")
    return reasons
