"""The write side of the LDAP connector: a directory as a target or a two-way side.

Why apart from the reads: reads stream and are tuned (`ldap.base`, `wire/`); writes are per
object and need other guarantees (per-object errors, idempotent replays), on connections of
their own, one per apply thread, never the read path's socket.

What belongs here:

- `session`: `WriteSession`, the write connections, one operation and what its result code
  means, where a kind's entries live and anchor -> DN lookups;
- `disable`: `Disabling`, deactivating, re-enabling and deleting entries;
- `writer`: `LdapWriter`, what each write does (create, update, set_members).

May import: the ground modules (`ldap.config`, `ldap.values`, `ldap.dn`, `ldap.tls`) and
`wire/` (a created entry is read back and decoded as a read would); never `base`, `feeds/`
or `connector`.
"""
