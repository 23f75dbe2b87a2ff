"""Decided before a cycle reads: which stored cursor may be used (the fingerprint of what
it was taken for), and the flow as its target sees it."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import datetime

from syncd.config.flows import Flow
from syncd.connector import Connector
from syncd.cycle.preserve import check_target
from syncd.cycle.result import Options
from syncd.mapping.attributes import Mapping
from syncd.model import Kind
from syncd.state.records import Cursor


def fingerprint(flow: Flow, kind: Kind) -> str:
    """What a stored cursor was taken *for*: change the mapping, scope or match keys and
    entries the feed will never send again may now map differently -> read everything."""
    kf = flow.kind(kind)
    text = repr((flow.source, flow.target, flow.mode, kf))
    if kf is not None and kf.nested != "direct":
        text += repr(kf.nested)
    if kf is not None and kf.member_of:
        # who the groups hold is part of what the read was for: when it changes, users that
        # did not change enter or leave the scope, and only a full read sees them
        text += repr((kf.member_of, kf.member_digest))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def use_cursor(flow: Flow, stored: Cursor, kind: Kind, opts: Options, now: datetime
                ) -> str | None:
    if opts.full or stored.value is None or stored.fingerprint != fingerprint(flow, kind):
        return None
    if flow.full_reconcile is not None and (
            stored.full_at is None
            or (now - stored.full_at).total_seconds() >= flow.full_reconcile):
        return None
    return stored.value


def for_target(flow: Flow, target: Connector) -> Flow:
    """LDAP attribute names are case-insensitive and its entries come back lower-cased:
    lower-case the flow's canonical names once, so every comparison downstream agrees.
    A flow the target cannot serve (nested groups preserved) is refused here."""
    check_target(flow, target)
    if not getattr(target.capabilities, "attribute_names_case_insensitive", False):
        return flow
    kinds = []
    for kf in flow.kinds:
        mapping = Mapping(tuple(replace(r, path=r.path.lower()) for r in kf.mapping.rules))
        kinds.append(replace(
            kf, mapping=mapping, match=tuple(m.lower() for m in kf.match),
            authority={k.lower(): v for k, v in kf.authority.items()},
            merge={k.lower(): v for k, v in kf.merge.items()}))
    return replace(flow, kinds=tuple(kinds))
