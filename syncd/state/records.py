"""The store's records as plain values: links, cursors, pending retries; the backoff rule and
the cap on stored error texts. No database here, so the pure planner can use `Link`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from syncd.model import Attrs, Kind, Value
from syncd.redact import redact

MAX_ATTEMPTS = 5
BACKOFF_BASE = 60.0  # seconds: 1 min, 2, 4, 8 … capped
BACKOFF_CAP = 6 * 3600.0
#: Longest error text the store keeps (pending rows, journal changes, runs): a peer that
#: answers with a megabyte of HTML must not bloat the store or `syncd status`.
MAX_ERROR_CHARS = 2000


def cap_error(error: str | None, limit: int = MAX_ERROR_CHARS) -> str | None:
    """`error` without secrets (`syncd.redact`: the store is one of its choke points), cut
    to `limit` characters, saying that it was cut and how long it was."""
    if error is None:
        return None
    error = redact(error, limit=None)
    if len(error) <= limit:
        return error
    mark = f" … [truncated, {len(error)} characters]"
    return error[:max(0, limit - len(mark))] + mark


def now() -> datetime:
    return datetime.now(UTC)


def aware(ts: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    return ts.replace(tzinfo=UTC) if ts is not None and ts.tzinfo is None else ts


def backoff(attempts: int, retry_after: float | None = None) -> float:
    delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempts - 1))
    return max(delay, retry_after or 0.0)


@dataclass(frozen=True)
class Pending:
    flow: str
    kind: Kind
    source_id: str
    name: str
    op: str
    attempts: int
    next_at: datetime
    error_class: str
    error: str
    quarantined: bool
    #: The mapped source values when the change failed (for incremental retries).
    attrs: dict[str, Value] | None
    members: frozenset[str] | None
    item_digest: str | None


@dataclass(frozen=True)
class Cursor:
    value: str | None
    full_at: datetime | None
    fingerprint: str | None = None




@dataclass(frozen=True, slots=True)
class Link:
    """A source ref paired with a target ref, plus the last agreed values (the base)."""

    flow: str
    kind: Kind
    source_id: str
    target_id: str
    base: Attrs
    digest: str
    members: frozenset[str] | None = None
    status: str = "active"
    origin: str = "created"
    status_at: datetime | None = None



@dataclass(frozen=True, slots=True)
class RefRow:
    """One value of an entry's reference attribute as the store remembers it (`ReferenceRow`):
    what the source names (`value`), which object that is (`ref_source_id`, None while the
    name resolves to nothing) and the target id written for it (`target_id`, None: pending)."""

    kind: Kind
    source_id: str
    path: str
    value: str
    ref_kind: Kind
    ref_source_id: str | None = None
    target_id: str | None = None
