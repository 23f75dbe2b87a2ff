"""What `syncd check` learned about each connector's server (a SCIM server's Bulk, PATCH,
ETag and soft delete; an LDAP server's feed), kept so that `syncd status` can show it without
connecting. A mixin of `Store`."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import OperationalError, ProgrammingError

from syncd.redact import redact
from syncd.state import schema
from syncd.state.records import aware, now
from syncd.state.tables import Rows


class FactsMixin(Rows):
    def save_facts(self, connector: str, facts: dict[str, Any]) -> None:
        shown = {k: redact(v, limit=None) if isinstance(v, str) else v
                 for k, v in facts.items()}  # redacted values: the JSON stays JSON
        text = json.dumps(shown, default=str, sort_keys=True)
        self._upsert(schema.fact, ["connector"], [{
            "connector": connector, "checked_at": now(), "facts": text}])

    def facts(self) -> dict[str, dict[str, Any]]:
        """Connector -> {"checked_at", "facts"}; empty for a store no check has seen (also
        one created before this table existed, opened read-only)."""
        if self.engine is None:
            return {}
        t = schema.fact
        try:
            with self.engine.connect() as conn:
                rows = list(conn.execute(select(t)))
        except (OperationalError, ProgrammingError):  # no such table yet
            return {}
        out = {}
        for r in rows:
            try:
                out[r.connector] = {"checked_at": aware(r.checked_at),
                                    "facts": json.loads(r.facts)}
            except ValueError:  # never let a stored finding break `status`
                continue
        return out
