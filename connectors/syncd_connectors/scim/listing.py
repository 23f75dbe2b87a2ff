"""SCIM ListResponses, read defensively: the shape of one page, the completeness of a walk.

Why: a listing decides what exists. A lookup answered ``200`` without ``Resources`` once read
as "no match" and created every group twice, and a paged listing silently missed objects
(below). So a page is used only when its shape is exactly what RFC 7644 §3.4.2 says, and a
paged walk says when it cannot vouch for having seen everything.

Shape (`page_of`): the body is an object; ``totalResults`` is a non-negative integer;
``Resources`` is a list (it may be absent only when ``totalResults`` is 0) of objects that
each have an ``id``, and no more of them than the ``count`` asked for. Anything else is
`Malformed`, naming what was wrong; the caller turns it into its error class.

Completeness (`Walk`): ``startIndex`` paging is not a snapshot. An object deleted while the
pages are read shifts every later one a position down, so one of them crosses a page
boundary unseen (DESIGN principle 10: absence is not proof). A walk is *incomplete* when
``totalResults`` changed between pages, when an id came twice, when it ended with another
number of distinct ids than announced, or when a listed object could not be read (it is
skipped: one bad object must not stop the flow). Deletes and additions that cancel out
between two pages stay invisible to any client; that is why deprovisioning also needs
`confirm_gone`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class Malformed(Exception):
    """A ListResponse that is not one; the message says what was wrong."""


@dataclass(frozen=True)
class Page:
    total: int
    resources: tuple[dict[str, Any], ...]


def _count(value: Any) -> int | None:
    """A non-negative integer from JSON (an integral number or a string of digits)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def resource_id(resource: Mapping[str, Any]) -> str | None:
    """The ``id`` of a resource as text; None when missing or not a scalar."""
    rid = resource.get("id")
    if isinstance(rid, bool) or not isinstance(rid, str | int) or rid == "":
        return None
    return str(rid)


def page_of(doc: Any, count: int | None = None) -> Page:
    """The validated content of one ListResponse body (rules in the module docstring)."""
    if not isinstance(doc, dict):
        raise Malformed(f"the body is a JSON {type(doc).__name__}, not an object")
    if "totalResults" not in doc:
        raise Malformed("no totalResults")
    total = _count(doc["totalResults"])
    if total is None:
        shown = str(doc["totalResults"])[:50]
        raise Malformed(f"totalResults is not a non-negative integer: {shown!r}")
    if "Resources" not in doc:
        if total:
            raise Malformed(f"no Resources although totalResults is {total}")
        return Page(0, ())
    resources = doc["Resources"]
    if not isinstance(resources, list):
        raise Malformed(f"Resources is a JSON {type(resources).__name__}, not a list")
    if count is not None and len(resources) > count:
        raise Malformed(f"{len(resources)} Resources, more than the count={count} asked for")
    for n, r in enumerate(resources, 1):
        if not isinstance(r, dict):
            raise Malformed(f"resource #{n} is a JSON {type(r).__name__}, not an object")
        if resource_id(r) is None:
            raise Malformed(f"resource #{n} has no id")
    return Page(total, tuple(resources))


@dataclass
class Walk:
    """Completeness of one paged listing, page by page (rules in the module docstring)."""

    first_total: int | None = None
    last_total: int = 0
    seen: set[str] = field(default_factory=set)
    reasons: list[str] = field(default_factory=list)

    def take(self, page: Page) -> list[dict[str, Any]]:
        """The page's resources not seen before on this walk (a repeat is noted, not kept)."""
        if self.first_total is None:
            self.first_total = page.total
        elif page.total != self.last_total:
            self._note(f"totalResults changed from {self.last_total} to {page.total} while paging")
        self.last_total = page.total
        fresh: list[dict[str, Any]] = []
        for r in page.resources:
            rid = str(resource_id(r))
            if rid in self.seen:
                self._note(f"id {rid[:80]!r} was listed twice")
                continue
            self.seen.add(rid)
            fresh.append(r)
        return fresh

    def unreadable(self, why: str) -> None:
        """A listed object could not be read (and is not returned): the walk is incomplete."""
        self._note(f"unreadable resource: {why[:200]}")

    def finish(self) -> None:
        """Called after the last page: the distinct ids must match the announced total."""
        if len(self.seen) != self.last_total:
            self._note(f"{len(self.seen)} distinct ids listed, {self.last_total} announced")

    @property
    def complete(self) -> bool:
        return not self.reasons

    def _note(self, reason: str) -> None:
        if reason not in self.reasons and len(self.reasons) < 5:
            self.reasons.append(reason)
