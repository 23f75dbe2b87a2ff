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
