"""Absence is not proof: a linked entry missing from a full listing is confirmed gone first.

Paged listings are not snapshots. A SCIM server paged by ``startIndex`` shifts later objects
across a page boundary when earlier ones are deleted meanwhile; a directory replica can answer
with a partial tree; a filter can be evaluated against an index that is being rebuilt. Taking
"not listed" for "deleted" is how a sync tool deletes objects nobody touched. So before any
entry is deprovisioned (or hard-deleted after its grace period) *because a full read did not
return it*, the connector is asked directly, by anchor and within its own scope
(`confirm_gone`, batched). Only what it proves absent goes; the rest is held and said so.

Deletes reported by a feed (syncrepl delete, DirSync tombstone, Graph ``@removed``) and entries
the read returned but the flow's scope excludes are proof already and need no lookup.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

from syncd.connector import Connector
from syncd.errors import ConnectorError
from syncd.model import Kind
from syncd.plan.value import Hold, base_name
from syncd.state.records import Link

log = logging.getLogger("syncd.absence")

#: Anchors per `confirm_gone` call: connectors batch further inside (LDAP OR-filters, a pool
#: of GETs), this only bounds one call's work and memory.
CHUNK = 500


def confirm(conn: Connector, kind: Kind, unseen: Iterable[str],
            name: Callable[[str], str], side: str = "source") -> tuple[set[str], list[Hold]]:
    """Of `unseen` (linked, missing from a complete full listing of `conn`), the anchors
    `conn` proves gone, and a hold for every other one."""
    ids = sorted(set(unseen))
    if not ids:
        return set(), []
    confirmed, why = gone(conn, kind, ids)
    held = [Hold(kind, sid, name(sid),
                 f"missing from the full listing of {conn.name} ({side}) but not confirmed "
                 f"gone ({why}): not deprovisioned")
            for sid in ids if sid not in confirmed]
    if held:
        log.warning("%s: %d linked %ss were missing from the full listing but are not "
                    "confirmed gone: the listing was incomplete; they are held, not "
                    "deprovisioned", conn.name, len(held), kind)
    return confirmed, held


def gone(conn: Connector, kind: Kind, ids: Iterable[str]) -> tuple[set[str], str]:
    """The anchors `conn` proves absent by a direct lookup, and why the others are not."""
    ids = sorted(set(ids))
    lookup = getattr(conn, "confirm_gone", None)
    confirmed: set[str] = set()
    why = "a direct lookup still finds it, or could not tell"
    if lookup is None:
        return confirmed, f"{conn.name} cannot look entries up by anchor"
    for i in range(0, len(ids), CHUNK):
        chunk = ids[i:i + CHUNK]
        try:
            confirmed |= set(lookup(kind, chunk)) & set(chunk)
        except ConnectorError as exc:
            why = f"the direct lookup failed ({exc})"
            log.warning("%s: confirming %d %ss gone failed: %s", conn.name, len(ids) - i,
                        kind, exc)
            break
    return confirmed, why


def at_stake(links: Mapping[str, Link], unseen: Iterable[str], deprovision: str,
             delete_after: float | None) -> set[str]:
    """The unseen links a plan could act on: active ones (deprovision), and disabled ones when
    they can still be deleted (``deprovision = "delete"``, or a grace period). Disabled links
    with nothing left to do are not looked up on every full read."""
    out = set()
    for sid in unseen:
        lk = links.get(sid)
        if lk is None:
            continue
        if (lk.status == "active" and deprovision != "ignore") or deprovision == "delete" \
                or (delete_after is not None and lk.status != "active"):
            out.add(sid)
    return out


def link_name(links: Mapping[str, Link]) -> Callable[[str], str]:
    """A human label for a linked source id: the base's userName or displayName."""
    def name(sid: str) -> str:
        lk = links.get(sid)
        base = lk.base if lk is not None else {}
        return base_name(base, None, sid)
    return name
