"""Nested groups on LDAP: member values that name groups -> `Entry.member_groups`.

The connector reports a group's *direct* member groups (the anchors of the groups within the
configured groups base, scope and filter that its member values name); flattening is the
engine's (`syncd.plan.nesting`), per flow, so that a flow without nesting costs nothing more
and an incremental cycle can recompute the groups containing a changed one from the graph it
remembers.

Resolution mirrors users' (`members.DnMap`, a second map of the groups' DNs): groups read in
this session answer, the rest cost one search of the groups base per `members.CHUNK` DNs. A
member value is tried as a group only when it named no user, so a directory that keeps users
and groups under one base does not look its users up among the groups. ``uniqueMember``
values (groupOfUniqueNames) name a group with or without the optional UID suffix
(``cn=x,ou=groups,dc=...#'0101'B``, as 389-ds keeps them): the suffix is not part of the
name.

Active Directory: ``member`` values naming groups are handled the same way. The matching rule
``LDAP_MATCHING_RULE_IN_CHAIN`` (1.2.840.113556.1.4.1941) answers "the transitive members of
*one* group" per search; the engine needs the direct edges anyway (to recompute ancestors
incrementally and to name cycles, which IN_CHAIN silently absorbs), and a full read already
has them in the groups listing, so it is not cheaper here and is not used.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from syncd_connectors.ldap.config import SearchSpec
from syncd_connectors.ldap.dn import is_dn
from syncd_connectors.ldap.members import DnMap, Searcher


class NestedGroups:
    """DN -> anchor of the groups in the configured groups search (see module docstring)."""

    def __init__(self, spec: SearchSpec, unique: bool) -> None:
        self.groups = DnMap(spec.base, spec.scope, unique)

    def clear(self) -> None:
        self.groups.clear()

    def read(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Groups read (DN key, anchor): their DNs resolve without a search."""
        self.groups.add_many(pairs)

    def member_groups(self, values: Sequence[list[str]], users: DnMap, user_search: Searcher,
                      group_search: Searcher) -> list[dict[str, str]]:
        """For each group's member values: the values that name a group -> its anchor.

        `users` has already resolved these values (`DnMap.resolve`), so asking it again
        costs no search; only the values naming no user are tried as groups. Whether a
        value is a DN at all is asked of those only: parsing every member value of every
        group was ~4 % of an initial sync's CPU, and a value that names a user is a DN
        (`DnMap.anchors` looks up no value that is not)."""
        flat = [v for vs in values for v in vs]
        if not flat:
            return [{} for _ in values]
        as_user = users.anchors(flat, user_search, members=True)
        rest = [v for v in dict.fromkeys(flat) if as_user.get(v) is None and is_dn(v)]
        as_group = self.groups.anchors(rest, group_search, members=True) if rest else {}
        return [{v: a for v in vs if (a := as_group.get(v)) is not None} for vs in values]
