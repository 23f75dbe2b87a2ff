"""ldap3's own search path behind the same events (`events.py`): the reference and the fallback.

Why keep it: the lean decoder is ours; ``decoder = "stock"`` is the way out should a server's
replies trip it, and the lean-vs-stock equality tests use this path as the reference.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import ldap3
from ldap3.core.exceptions import LDAPCommunicationError, LDAPException, LDAPResponseTimeoutError

from syncd_connectors.ldap.wire.ber import ber_int, ber_seq, tlv
from syncd_connectors.ldap.wire.decode import Plan
from syncd_connectors.ldap.wire.events import (
    Controls,
    Event,
    Failed,
    Interrupted,
    SearchDone,
    SearchEntry,
    SearchIntermediate,
    SearchRef,
)
from syncd_connectors.ldap.wire.request import DIRSYNC, PAGED_RESULTS, RequestControl, scope_of


def _stock_controls(raw: dict[str, Any] | None) -> Controls:
    """ldap3 pre-decodes a few controls; re-encode them so callers see raw BER only."""
    out: Controls = {}
    for oid, info in (raw or {}).items():
        value = info.get("value")
        if isinstance(value, dict) and oid == PAGED_RESULTS:
            value = ber_seq(ber_int(value["size"]), tlv(0x04, value["cookie"]))
        elif isinstance(value, dict) and oid == DIRSYNC:
            more = 1 if value["more_results"] else 0
            value = ber_seq(ber_int(more), ber_int(0), tlv(0x04, value["cookie"]))
        out[oid] = value
    return out


def stock_search(
    conn: ldap3.Connection,
    base: str,
    filter_: str,
    scope: str,
    attributes: Sequence[str],
    controls: Sequence[RequestControl] = (),
    plan: Plan | None = None,
) -> Iterator[Event]:
    """The same search through ldap3's own decoder (the reference and the fallback). The
    `plan` is ignored: entries always come back as `SearchEntry` events."""
    try:
        conn.search(
            base,
            filter_,
            search_scope=scope_of(scope),
            dereference_aliases=ldap3.DEREF_NEVER,
            attributes=list(attributes) or ["1.1"],
            controls=list(controls) or None,
        )
    except (LDAPCommunicationError, LDAPResponseTimeoutError) as exc:
        raise Interrupted(str(exc)) from None
    except LDAPException as exc:
        raise Failed(str(exc)) from None
    for item in conn.response or []:
        kind = item.get("type")
        if kind == "searchResEntry":
            yield SearchEntry(
                item["dn"],
                {k.lower(): list(v) for k, v in item["raw_attributes"].items()},
                _stock_controls(item.get("controls")) or None,
            )
        elif kind == "searchResRef":
            yield SearchRef(list(item.get("uri") or []))
        elif kind == "intermediateResponse":
            yield SearchIntermediate(item.get("responseName"), item.get("responseValue"))
    result = conn.result or {}
    if result.get("type") != "searchResDone":
        raise Interrupted(f"search ended without a result: {result.get('description')}")
    yield SearchDone(
        int(result.get("result", -1)),
        result.get("dn") or "",
        result.get("message") or "",
        _stock_controls(result.get("controls")),
    )
