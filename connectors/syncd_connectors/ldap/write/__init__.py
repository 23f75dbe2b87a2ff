"""The write side of the LDAP connector: a directory as a target or a two-way side.

Why apart from the reads: reads stream and are tuned (`ldap.base`, `wire/`); writes are per
object and need other guarantees (per-object errors, idempotent replays), on connections of
their own, one per apply thread, never the read path's socket.

What belongs here:

- `session`: `WriteSession`, the write connections, one operation and what its result code
  means, where a kind's entries live and anchor -> DN lookups;
- `create`: `Creating`, adding an entry and getting it back (Post-Read control, or a
  read-back);
- `disable`: `Disabling`, deactivating, re-enabling and deleting entries;
- `writer`: `LdapWriter`, what each write does (create, update, set_members).

May import: the ground modules (`ldap.config`, `ldap.values`, `ldap.dn`, `ldap.tls`) and
`wire/` (the lean add; a created entry is decoded as a read would); never `base`, `feeds/`
or `connector`.
"""
