"""Membership-based scope: "users who are members, direct or nested, of these groups" (like
Entra's "sync only assigned users"), configured as ``[flows.F.users] member_of = [...]``.

Each cycle lists the source's groups (their direct members only) and takes the transitive
user members of the named groups (`syncd.plan.nesting.closure`: nested groups, cycles). That
set joins the scope: a user read that is not in it is out of scope, with the groups named as
the reason, and leaving the scope is a deprovisioning like any other (safety thresholds
apply).

Incremental equals full: membership can change while the users do not, so an incremental user
feed would never bring them. The set's digest is part of the user cursor's fingerprint
(`syncd.cycle.setup.fingerprint`): when who the groups hold changes, the stored cursor no
longer fits and the users are read in full once; the new fingerprint is saved only with a
successful full read, so a crash in between reads in full again.

Absence is not proof: when the group listing failed or was incomplete, or a named group is
not in it (a typo, a group deleted or out of the connector's groups base), "not a member" is
not proven. Users not known to be members are then *held* with that reason -- never taken out
of scope, which would deprovision them.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import replace

from syncd.config.flows import Flow, KindFlow
from syncd.connector import Connector
from syncd.errors import Fatal, Retriable
from syncd.plan.nesting import Edges, closure

log = logging.getLogger(__name__)

_DN_SPACES = re.compile(r"\s*([,=+])\s*")


def _key(name: str) -> str:
    """One spelling of a group's name: DNs compare case-insensitively and ignore the spaces
    around separators (``CN=App, OU=Groups`` is ``cn=app,ou=groups``)."""
    return _DN_SPACES.sub(r"\1", name.strip()).casefold()


def with_membership(flow: Flow, source: Connector) -> Flow:
    """`flow` with its users' member set for this cycle, or `flow` when it has none."""
    kf = flow.kind("user")
    if kf is None or not kf.member_of:
        return flow
    found = _members(kf, source)
    return replace(flow, kinds=tuple(found if k.kind == "user" else k for k in flow.kinds))


def _members(kf: KindFlow, source: Connector) -> KindFlow:
    graph: dict[str, Edges] = {}
    by_name: dict[str, str] = {}
    problem = ""
    try:
        for batch in source.read("group", None, []):
            if not batch.complete:
                problem = f"the listing of {source.name}'s groups was incomplete"
            for e in batch.entries:
                graph[e.external_id] = Edges(e.members or frozenset(),
                                             e.member_groups or frozenset())
                by_name[_key(e.external_id)] = e.external_id
                if e.name:
                    by_name[_key(e.name)] = e.external_id
    except (Fatal, Retriable) as exc:
        problem = f"listing {source.name}'s groups failed: {exc}"
    roots = [by_name.get(_key(n)) for n in kf.member_of]
    missing = [n for n, r in zip(kf.member_of, roots, strict=True) if r is None]
    if missing and not problem:
        problem = (f"group {', '.join(repr(m) for m in missing)} is not among "
                   f"{source.name}'s groups (misspelt, deleted, or outside its groups base)")
    known = [r for r in roots if r is not None]
    members = frozenset().union(*closure(graph, known).members.values()) if known \
        else frozenset()
    named = ", ".join(kf.member_of)
    if problem:
        log.warning("member_of: %s; users not known to be members are held", problem)
        return replace(kf, members_in=members, member_proven=False,
                       member_why=f"membership of {named} unknown: {problem}; held, not "
                                  "taken out of scope",
                       member_digest="unproven")
    digest = hashlib.blake2b("\n".join(sorted(members)).encode(), digest_size=8).hexdigest()
    return replace(kf, members_in=members, member_proven=True,
                   member_why=f"not a member (direct or nested) of {named}",
                   member_digest=digest)
