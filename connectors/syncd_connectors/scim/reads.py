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

A listing is checked page by page (`syncd_connectors.scim.listing`): a page that is not a valid
ListResponse ends the read with `Fatal` (naming connector, endpoint and what was wrong), and
a walk that cannot vouch for having seen everything ends with ``complete=False`` on its last
batch and a warning, so nothing is deprovisioned because of it. A read never raises
`Rejected` (that means "skip one object"; a broken listing is no object).
"""

from __future__ import annotations

import email.utils
import logging
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from syncd.errors import Fatal, Rejected
from syncd.model import Batch, Entry, Kind, Value
from syncd_connectors.scim.http import ScimHttp
from syncd_connectors.scim.listing import Malformed, Walk, page_of
from syncd_connectors.scim.schemas import ENTERPRISE_PREFIX, URN_ENTERPRISE
from syncd_connectors.scim.status import checked_json

log = logging.getLogger("syncd.connectors.scim")

CURSOR_PREFIX = "lastmodified:"
_ENTERPRISE_URN = URN_ENTERPRISE.lower()
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

    Every attribute the server's schemas declare is there, extensions under their URN path
    (``urn:ietf:params:scim:schemas:extension:acme:2.0:user:costcenter``); the enterprise
    extension's under both ``enterprise.department`` and its URN path. Booleans become
    ``"true"``/``"false"`` (the LDAP spelling is upper case; mappings that need it use a
    transform), integers and decimals their text. ``id`` is added so a flow can map the
    SCIM id (an anchor) too.
    """
    raw: dict[str, tuple[str, ...]] = {"id": (resource_id,)}
    for name, value in attrs.items():
        if value is None:
            continue
        if isinstance(value, bool):
            values: tuple[str, ...] = ("true" if value else "false",)
        elif isinstance(value, tuple):
            values = tuple(str(v) for v in value)
        else:
            values = (str(value),)
        low = name.lower()
        raw[low] = values
        if low.startswith(ENTERPRISE_PREFIX):
            raw[f"{_ENTERPRISE_URN}:{low[len(ENTERPRISE_PREFIX):]}"] = values
    return raw


# --- the listing -----------------------------------------------------------------------


class FilterRefused(Exception):
    """The server refused the lastModified filter on the first page of an incremental read."""


#: A filter date no object has: probes whether the server filters on meta.lastModified.
_PROBE_SINCE = datetime(2999, 1, 1, tzinfo=UTC)


def supports_incremental(http: ScimHttp, endpoint: str, connector: str) -> bool:
    """Does the server filter this endpoint on meta.lastModified? (400 = no; any other answer
    that is no valid listing: no as well, full reads are always correct)."""
    params = {"filter": since_filter(_PROBE_SINCE), "count": "1"}
    try:
        resp = http.request("GET", endpoint, params=params)
        if resp.status_code == 400:
            return False
        page_of(checked_json(resp, f"probe filters of {endpoint}", connector), 1)
    except (Rejected, Malformed) as exc:
        log.info("%s: no incremental reads of %s: %s", connector, endpoint, exc)
        return False
    return True


#: A window at least this share of the directory is listed whole and kept client-side.
WIDE = 0.5


def directory_size(http: ScimHttp, endpoint: str, connector: str) -> int | None:
    """How many objects the endpoint holds (an unfiltered ``count=0``), None if unknown."""
    try:
        resp = http.request("GET", endpoint, params={"count": 0})
        return page_of(checked_json(resp, f"count {endpoint}", connector), 0).total
    except (Rejected, Malformed):
        return None


def _since(e: Entry, since: datetime) -> bool:
    """Would ``meta.lastModified ge since`` have listed it? (No timestamp: kept, so that a
    client-side filter never drops what the server's might have listed.)"""
    t = parse_time(e.modified)
    return t is None or t >= since


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
    server refuses the filter (the caller falls back to a full read).

    A *wide* window -- more than one page, and at least `WIDE` of the directory (the read
    after syncd created or updated most of it: a two-way flow's catch-up after an initial
    sync) -- is listed unfiltered and filtered here, with the same ``ge`` rule. Why: a
    server may evaluate the filter over every stored object for each page (scim2-server
    does: at 20,000 users a filtered page of 1000 cost it 1.28 s of CPU, an unfiltered one
    0.54 s, in-process), and such a window is most of the directory anyway. What is
    returned, the cursor and the completeness rules are the same either way; the first
    filtered page is then not used.
    """
    start = 1
    newest: datetime | None = None
    began: datetime | None = None
    walk = Walk()
    server_filter = since_filter(since) if since is not None else None
    while True:
        params: dict[str, Any] = {"startIndex": start, "count": page_size}
        if server_filter:
            params["filter"] = server_filter
        where = f"GET {endpoint}?startIndex={start}"
        try:
            resp = http.request("GET", endpoint, params=params)
            if server_filter and start == 1 and resp.status_code == 400:
                raise FilterRefused
            page = page_of(checked_json(resp, f"list {kind}s", connector), page_size)
        except Malformed as exc:
            raise Fatal(f"{connector}: malformed listing from {where}: {exc}",
                        connector=connector) from None
        except Rejected as exc:  # a 4xx, a body too large or not JSON: no page to read
            raise Fatal(f"{connector}: listing {where} failed: {exc}",
                        connector=connector) from None
        began = began or server_date(resp.headers.get("Date"))
        if server_filter and start == 1 and page.total > len(page.resources) > 0:
            size = directory_size(http, endpoint, connector)
            if size is not None and page.total >= WIDE * size:
                log.info("%s: %d of %d %ss changed since the cursor: listed whole, the "
                         "window kept here", connector, page.total, size, kind)
                server_filter = None
                continue
        entries = []
        for r in walk.take(page):
            try:
                e = entry(r)
            except Rejected as exc:  # one unreadable object: skip it, but vouch for nothing
                walk.unreadable(str(exc))
                continue
            if since is None or server_filter or _since(e, since):
                entries.append(e)
        for e in entries:
            t = parse_time(e.modified)
            if t is not None and (newest is None or t > newest):
                newest = t
        start += len(page.resources)
        last = not page.resources or start > page.total
        if last:
            walk.finish()
            if not walk.complete:
                log.warning("%s: listing of %s is incomplete (a paged listing is no snapshot): "
                            "%s; nothing is deprovisioned because of it",
                            connector, endpoint, "; ".join(walk.reasons))
        cursor = next_cursor(newest, began, since, overlap) if last and incremental else None
        yield Batch(kind=kind, entries=tuple(entries), cursor=cursor, full=since is None,
                    complete=walk.complete)
        if last:
            return
