"""What the store's mixins share: the tables a store creates, the bulk upsert, the indexes.

The tables are `syncd.state.schema` (SQLAlchemy Core, rendered from the SQLModel declarations
in `syncd.state.declarations`, which a run never imports: issue 17, start-up)."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Engine, Table

from syncd.state import schema

#: What opening a store creates (and completes with missing indexes). The received
#: directory's tables are created by `syncd.state.inbox` when a ``scim_inbox`` is served.
STORE_TABLES: tuple[Table, ...] = (
    schema.link, schema.cursor, schema.pending, schema.run, schema.change, schema.conflict,
    schema.reference, schema.fact, schema.group_edge)


class Rows:
    """What the store's mixins share: the engine and the one bulk-write primitive (an
    executemany ``insert ... on conflict do update``, the same on SQLite and PostgreSQL)."""

    engine: Engine | None
    dialect: str

    def _upsert(self, table: Any, keys: list[str], rows: list[dict[str, Any]]) -> None:
        assert self.engine is not None
        # The PostgreSQL dialect module is imported only by a store on PostgreSQL.
        name = "postgresql" if self.dialect.startswith("postgres") else "sqlite"
        stmt = importlib.import_module(f"sqlalchemy.dialects.{name}").insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=keys,
            set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys})
        with self.engine.begin() as conn:
            conn.execute(stmt, rows)


def create_missing_indexes(engine: Engine, tables: Iterable[Table] = STORE_TABLES) -> list[str]:
    """Create the declared indexes a store lacks; their names. `create_all` creates a table
    with its indexes but never adds an index to a table that exists, so a store made by an
    older syncd would otherwise query a million journal rows without them. The catalog is
    read first (no lock on the tables when nothing is missing, as on every open but the
    first); ``CREATE INDEX IF NOT EXISTS`` keeps two processes opening at once harmless."""
    from sqlalchemy import text
    from sqlalchemy.schema import CreateIndex

    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            q = "SELECT name FROM sqlite_master WHERE type = 'index'"
        else:
            q = "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
        have = {r[0] for r in conn.execute(text(q))}
    missing = [ix for t in tables for ix in sorted(t.indexes, key=lambda ix: str(ix.name))
               if ix.name not in have]
    if missing:
        with engine.begin() as conn:
            for ix in missing:
                conn.execute(CreateIndex(ix, if_not_exists=True))
    return [str(ix.name) for ix in missing]
