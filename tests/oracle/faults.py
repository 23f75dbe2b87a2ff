"""Faults the oracles weave into their sequences that no peer produces on request."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from syncd.cycle.apply import Applier

#: Kills that happened in this process (for the closing figures).
KILLS = [0]


class Killed(BaseException):
    """The process died (kill -9): a BaseException, so no ``except Exception`` in the engine
    handles it, as nothing handles a real kill."""


@contextlib.contextmanager
def killed_between_apply_and_journal() -> Iterator[list[bool]]:
    """The first time this run would record what it applied (links, journal, in one
    transaction), it dies instead: the target holds the writes, the store does not.
    Yields a one-item list that says whether the kill happened (nothing to apply: no kill)."""
    fired = [False]
    original = Applier._flush

    def flush(self: Applier, outcomes: list[Any]) -> None:
        if outcomes and not fired[0]:
            fired[0] = True
            KILLS[0] += 1
            raise Killed
        original(self, outcomes)

    Applier._flush = flush  # type: ignore[method-assign]
    try:
        yield fired
    finally:
        Applier._flush = original  # type: ignore[method-assign]


class MemberWrites:
    """Records every member syncd adds to a group of an in-memory directory (either side)
    that names no user of that directory when it is written: a dangling member, such as a
    user the source deleted written back into a source group, or an id the target deleted
    written into a target group. Real directories reject these or keep them for good
    (LDAP without referential integrity, SCIM servers that do not check members)."""

    def __init__(self) -> None:
        self.dangling: list[tuple[str, str, str]] = []  # directory, group, member
        self._original: Any = None

    def install(self) -> None:
        from syncd.testing import MemoryConnector

        original = self._original = MemoryConnector.set_members
        seen = self.dangling

        def set_members(conn: MemoryConnector, external_id: str, add: Any,
                        remove: Any) -> None:
            users = conn.dir.objects["user"]
            seen.extend((conn.config.directory, external_id, m) for m in add
                        if m not in users)
            original(conn, external_id, add, remove)

        MemoryConnector.set_members = set_members  # type: ignore[method-assign]

    def uninstall(self) -> None:
        from syncd.testing import MemoryConnector

        if self._original is not None:
            MemoryConnector.set_members = self._original  # type: ignore[method-assign]
            self._original = None
