"""Safety checks between plan and apply: the answer to "it deleted everyone".

A plan that would deprovision more than the flow's threshold (a count, or a percentage of the
active links once past a small floor) is refused as a whole, with the list of what would go,
unless the operator allows it for this run. A source that returned nothing while links exist is
always suspicious (wrong base DN, filter typo, empty replica) and is refused the same way.
"""

from __future__ import annotations

from syncd.config import SafetyModel
from syncd.errors import SafetyRefused
from syncd.model import KINDS
from syncd.plan import Plan

SHOW = 20


def check(plan: Plan, safety: SafetyModel, *, seen: dict[str, int],
          allow_deletes: bool = False) -> None:
    """Raise `SafetyRefused` listing every reason; `seen` = source entries read per kind
    by a full read (incremental reads are absent: seeing nothing is normal for them)."""
    if allow_deletes:
        return
    reasons: list[str] = []
    for kind in KINDS:
        going = [c for c in plan.changes if c.kind == kind and c.op in ("deprovision", "delete")]
        if not going:
            continue
        linked = plan.linked.get(kind, 0)
        names = ", ".join(c.name for c in going[:SHOW]) + (" …" if len(going) > SHOW else "")
        if kind in seen and seen[kind] == 0 and linked > 0:  # full reads only
            reasons.append(
                f"the source returned no {kind}s while {linked} are linked: refusing to "
                f"deprovision {len(going)} (check the base DN and filter): {names}")
            continue
        if len(going) > safety.max_deprovision:
            reasons.append(
                f"{len(going)} {kind}s would be deprovisioned, over max_deprovision="
                f"{safety.max_deprovision}: {names}")
            continue
        pct = 100.0 * len(going) / linked if linked else 100.0
        if len(going) > safety.percent_floor and pct > safety.max_deprovision_percent:
            reasons.append(
                f"{len(going)} of {linked} linked {kind}s ({pct:.0f}%) would be deprovisioned, "
                f"over max_deprovision_percent={safety.max_deprovision_percent:g}: {names}")
    if reasons:
        raise SafetyRefused(reasons)
