"""The state store: what syncd remembers between cycles, in SQLite or PostgreSQL.

- `records`: plain values (links with their base, cursors, pending retries); no database;
- `tables`: the SQLModel tables and the bulk upsert;
- `store`: `Store` (links, the run journal, per-flow locks), with the mixins `cursors`,
  `retries` and `conflicts`;
- `opening`: URL and file checks before a query, errors an operator can act on.

May import only the plugin API (`syncd.model`, `syncd.errors`, `syncd.redact`): the store
knows nothing of flows, plans or connectors.
"""
