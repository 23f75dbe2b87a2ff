"""The state store: what syncd remembers between cycles, in SQLite or PostgreSQL.

- `records`: plain values (links with their base, cursors, pending retries); no database;
- `declarations`: the tables as SQLModel declarations, rendered by
  ``scripts/gen_store_schema.py`` into `schema` (SQLAlchemy Core, with `types`), which is
  what the store imports: SQLModel and the ORM are never imported by a run (issue 17);
- `tables`: the tables a store creates, the bulk upsert, missing indexes;
- `store`: `Store` (links, the run journal, per-flow locks), with the mixins `cursors`,
  `retries` and `conflicts`;
- `opening`: URL and file checks before a query, errors an operator can act on.

May import only the plugin API (`syncd.model`, `syncd.errors`, `syncd.redact`): the store
knows nothing of flows, plans or connectors.
"""
