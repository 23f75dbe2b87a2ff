"""What the oracle compares: a target directory projected to what a person would check.

Users by userName with their attributes and whether they are active; groups by displayName
with the userNames of their members. Ids are left out (a fresh sync makes new ones), and so
are deprovisioned users and emptied groups under ``deprovision = "disable"`` (a fresh sync
never made them; an empty group is left out on both sides).
"""

from __future__ import annotations

from typing import Any

from syncd.testing import Directory


def project(d: Directory, *, active_only: bool = False) -> dict[str, Any]:
    names = {oid: str(a.get("userName")) for oid, a in d.objects["user"].items()}
    users = {}
    for a in d.objects["user"].values():
        if active_only and a.get("active") is False:
            continue
        users[str(a.get("userName"))] = {k: v for k, v in sorted(a.items()) if v is not None}
    live = set(users)
    groups = {}
    for gid, a in d.objects["group"].items():
        members = {names.get(m, f"<gone {m}>") for m in d.members.get(gid, set())}
        kept = sorted(members & live if active_only else members)
        if active_only and not kept:
            continue  # deprovisioned groups stay on the target, emptied (disable policy)
        groups[str(a.get("displayName"))] = kept
    return {"users": users, "groups": groups}
