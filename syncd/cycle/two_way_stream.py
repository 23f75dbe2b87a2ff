"""The initial sync of a two-way flow's users, page by page, as a push flow's.

Why: `plan_two_way` holds the whole source read, the whole target read and every planned
change; an initial two-way sync of 10,000 users peaked at 193 MB and wrote nothing before
everything was read. With no link of the kind yet there is no pair to merge: every source
entry is adopted or created exactly as a push flow would (match, claims, unique values), and
nothing can be deprovisioned, so the safety check has nothing it could refuse. So the push
flow's streamed read (`syncd.cycle.stream`) applies each page while the next one is read.

What stays two-way: the target is read first (its cursor, from before the writes, is the one
`syncd.cycle.catch_up` moves past them), and with ``create = "both"`` the target objects no
source entry adopted are created on the source afterwards (`plan_target_only`), checked and
applied with the rest of the plan. Dry runs, reviewed plans, flows with references and
``create = "none"`` keep the whole-read path.
"""

from __future__ import annotations

from datetime import datetime

from syncd.config.flows import Flow, KindFlow
from syncd.connector import Connector
from syncd.cycle.apply import Applier
from syncd.cycle.read import TargetRead, read_target
from syncd.cycle.stream import Streamed, stream_kind
from syncd.plan.merge import Rules, TwoWayInput, plan_target_only
from syncd.plan.value import Change
from syncd.state.store import Store


def streams(flow: Flow, kf: KindFlow, store: Store, applier: Applier | None,
            source_cursor: str | None, refs_active: bool) -> bool:
    """An initial sync of users that may be applied while it is read."""
    return (applier is not None and kf.kind == "user" and source_cursor is None
            and flow.create != "none" and not refs_active
            and store.count_links(flow.name, kf.kind, status=None) == 0)


def stream_initial(flow: Flow, kf: KindFlow, store: Store, source: Connector,
                   target: Connector, applier: Applier, now: datetime, rules: Rules,
                   target_cursor: str | None
                   ) -> tuple[Streamed, TargetRead, list[Change], list[str]]:
    """Read the target, stream the source in (applied page by page), then plan the target
    objects nobody adopted (created on the source with ``create = "both"``)."""
    td = read_target(target, kf.kind, target_cursor)
    st = stream_kind(flow, kf, store, source, target, applier, now)
    if not td.complete or not td.entries:
        return st, td, [], []
    links = store.links(flow.name, kf.kind, set(td.entries), by_target=True)
    # an adopt that failed is still claimed: its object is not "nobody's" (no duplicate)
    tried = frozenset(f.change.target_id for f in st.result.failures if f.change.target_id)
    changes, notes = plan_target_only(TwoWayInput(kf.kind, rules, links, {}, td.entries,
                                                  claimed_targets=tried))
    return st, td, changes, notes
