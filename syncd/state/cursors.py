"""Cursors: where each flow's reads of each connector stand. Saved only after a flow applied
cleanly, with the fingerprint of what the read was taken for (mapping, scope, match keys)
and when the last full read was (for `full_reconcile`). A mixin of `Store`."""

from __future__ import annotations

from sqlalchemy import and_, func, select

from syncd.model import Kind
from syncd.state import schema
from syncd.state.records import Cursor, aware, now
from syncd.state.tables import Rows


class CursorsMixin(Rows):
    def cursor(self, flow: str, connector: str, kind: Kind) -> Cursor:
        if self.engine is None:
            return Cursor(None, None)
        t = schema.cursor
        q = select(t.c.value, t.c.full_at, t.c.fingerprint).where(and_(
            t.c.flow == flow, t.c.connector == connector, t.c.kind == kind))
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        if row is None:
            return Cursor(None, None)
        return Cursor(row.value, aware(row.full_at), row.fingerprint)

    def save_cursor(self, flow: str, connector: str, kind: Kind, value: str | None,
                    *, full: bool, fingerprint: str | None = None) -> None:
        previous = self.cursor(flow, connector, kind)
        ts = now()
        self._upsert(schema.cursor, ["flow", "connector", "kind"], [{
            "flow": flow, "connector": connector, "kind": kind, "value": value,
            "full_at": ts if full else previous.full_at, "updated_at": ts,
            "fingerprint": fingerprint if full else previous.fingerprint}])

    def cursor_age(self, flow: str) -> float | None:
        """Seconds since the flow's oldest cursor moved (None: no cursor yet)."""
        if self.engine is None:
            return None
        t = schema.cursor
        with self.engine.connect() as conn:
            oldest = conn.execute(select(func.min(t.c.updated_at)).where(
                t.c.flow == flow)).scalar()
        oldest = aware(oldest)
        return None if oldest is None else (now() - oldest).total_seconds()
