"""Reading a SCIM server as a *source*: raw attributes, change timestamps, cursors.

Incremental reads use ``filter=meta.lastModified ge "<ts>"``. Measured: scim2-server 0.8.3
filters on meta.lastModified (gt and ge, ``Z`` or ``+00:00``); django-scim2-server 1.1.0
answers 400 invalidFilter ("Unknown attribute: meta.lastModified"), so there only full
reads exist. Neither shows deletes that way: a full reconcile finds them.

The cursor is ``lastmodified:<ISO-8601 UTC>``. Why ``ge`` and not ``gt``: two objects can
share a timestamp and one of them may not have been listed yet; re-reading the newest ones
is harmless (the engine upserts). Why the cursor is not simply the newest timestamp seen:
a listing is paged, and an object on an already read page may change while later pages are
read, behind a newer object that is then seen. So the cursor is the *older* of the newest
timestamp seen and the server's clock when the listing began (the first page's ``Date``
header, 1 s resolution, rounded down) minus `skew` seconds; changes in between are read twice.
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.scim.http import ScimHttp
from connectors.scim.status import checked_json
from syncd.model import Batch, Entry, Kind, Value

CURSOR_PREFIX = "lastmodified:"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_time(value: Any) -> datetime | None:
    """An ISO-8601 timestamp as aware UTC; naive values are taken as UTC; None if bad."""
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def iso(dt: datetime) -> str:
    """Canonical text of a timestamp: UTC, microseconds, ``Z``."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def modified(resource: Mapping[str, Any]) -> str | None:
    """``meta.lastModified`` as canonical ISO-8601 UTC, when the server gave one."""
    dt = parse_time((resource.get("meta") or {}).get("lastModified"))
    return iso(dt) if dt else None


def parse_cursor(cursor: str | None) -> datetime | None:
    """The timestamp of a cursor this connector wrote; None for anything else."""
    if not cursor or not cursor.startswith(CURSOR_PREFIX):
        return None
    return parse_time(cursor[len(CURSOR_PREFIX) :])


def make_cursor(dt: datetime) -> str:
    return CURSOR_PREFIX + iso(dt)


def server_date(header: str | None) -> datetime | None:
    """The HTTP ``Date`` header as aware UTC (None when missing or bad)."""
    if not header:
        return None
    try:
        dt = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def next_cursor(
    newest: datetime | None, began: datetime | None, previous: datetime | None, skew: float
) -> str:
    """The cursor after a read (rules in the module docstring).

    `newest`: newest lastModified seen; `began`: server Date of the first page; `previous`:
    the cursor the read started from. With nothing known the next read starts at the epoch
    (it then reads everything, which is correct, only not cheap).
    """
    candidates = []
    if newest is not None:
        candidates.append(newest)
    if began is not None:
        candidates.append(began - timedelta(seconds=skew))
    at = min(candidates) if candidates else EPOCH
    if previous is not None:
        at = max(at, previous)  # never move backwards past what a previous read covered
    return make_cursor(at)


def since_filter(since: datetime) -> str:
    return f'meta.lastModified ge "{iso(since)}"'


def raw_attributes(attrs: Mapping[str, Value], resource_id: str) -> dict[str, tuple[str, ...]]:
    """`Entry.raw` of a SCIM entry: lower-cased canonical paths -> tuple of strings.

    Booleans become ``"true"``/``"false"`` (the LDAP spelling is upper case; mappings that
    need it use a transform). ``id`` is added so a flow can map the SCIM id (an anchor) too.
    """
    raw: dict[str, tuple[str, ...]] = {"id": (resource_id,)}
    for name, value in attrs.items():
        if value is None:
            continue
        if isinstance(value, bool):
            raw[name.lower()] = ("true" if value else "false",)
        elif isinstance(value, tuple):
            raw[name.lower()] = tuple(str(v) for v in value)
        else:
            raw[name.lower()] = (str(value),)
    return raw


# --- the listing -----------------------------------------------------------------------


class FilterRefused(Exception):
    """The server refused the lastModified filter on the first page of an incremental read."""


#: A filter date no object has: probes whether the server filters on meta.lastModified.
_PROBE_SINCE = datetime(2999, 1, 1, tzinfo=UTC)


def supports_incremental(http: ScimHttp, endpoint: str, connector: str) -> bool:
    """Does the server filter this endpoint on meta.lastModified? (400 = no)."""
    params = {"filter": since_filter(_PROBE_SINCE), "count": "1"}
    resp = http.request("GET", endpoint, params=params)
    if resp.status_code == 400:
        return False
    checked_json(resp, f"probe filters of {endpoint}", connector)
    return True


def listing(
    http: ScimHttp,
    *,
    connector: str,
    kind: Kind,
    endpoint: str,
    page_size: int,
    entry: Callable[[dict[str, Any]], Entry],
    since: datetime | None,
    incremental: bool,
    overlap: float,
) -> Iterator[Batch]:
    """Pages (startIndex/count), filtered from `since` when given; the last page carries the
    next cursor when `incremental`. Raises `FilterRefused` before yielding anything when the
    server refuses the filter (the caller falls back to a full read)."""
    start = 1
    newest: datetime | None = None
    began: datetime | None = None
    while True:
        params: dict[str, Any] = {"startIndex": start, "count": page_size}
        if since is not None:
            params["filter"] = since_filter(since)
        resp = http.request("GET", endpoint, params=params)
        if since is not None and start == 1 and resp.status_code == 400:
            raise FilterRefused
        doc = checked_json(resp, f"list {kind}s", connector)
        began = began or server_date(resp.headers.get("Date"))
        entries = tuple(entry(r) for r in doc.get("Resources") or [])
        for e in entries:
            t = parse_time(e.modified)
            if t is not None and (newest is None or t > newest):
                newest = t
        start += len(entries)
        last = not entries or start > int(doc.get("totalResults") or 0)
        cursor = next_cursor(newest, began, since, overlap) if last and incremental else None
        yield Batch(kind=kind, entries=entries, cursor=cursor, full=since is None)
        if last:
            return
