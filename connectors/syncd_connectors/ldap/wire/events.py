"""What a search yields, whichever decoder read it (`lean.py` or `stock.py`).

Why a module of its own: everything above the wire speaks these events (the paged reads, the
change feeds, the writer's read-back), and both `decode.py` (which turns a `SearchEntry` into
a row) and `reply.py` (which produces them and, with a `decode.Plan`, rows) need them. Kept
below both, so neither of those two has to import the other both ways.

Control values are always raw BER bytes (`Controls`: OID -> value or None).
"""

from __future__ import annotations

from dataclasses import dataclass

Controls = dict[str, bytes | None]


class Interrupted(Exception):
    """The connection timed out, was reset or closed by the server mid-search."""


class Failed(Exception):
    """The library refused the operation (e.g. an invalid filter): not transient."""


@dataclass(slots=True)
class SearchEntry:
    dn: str
    #: Lower-cased attribute names -> raw values.
    attrs: dict[str, list[bytes]]
    controls: Controls | None = None


@dataclass(slots=True)
class SearchRef:
    uris: list[str]


@dataclass(slots=True)
class SearchIntermediate:
    name: str | None
    value: bytes | None


@dataclass(slots=True)
class SearchDone:
    code: int
    matched: str
    message: str
    controls: Controls


Event = SearchEntry | SearchRef | SearchIntermediate | SearchDone


@dataclass(slots=True)
class OpDone:
    """The LDAPResult of an operation other than a search (the lean add's AddResponse)."""

    code: int
    matched: str
    message: str
    controls: Controls
