"""The LDAP connector: an LDAP directory as a source, a target or a two-way side.

The folder shows the architecture. Lowest first; a module imports only from its own layer or
lower ones, and no module imports one that imports it back (not even lazily in a function):

1. the ground, at this level: `config` (the ``[connectors.NAME]`` table), `dn` and `values`
   (pure rules for DNs and attribute values), `tls` (verified TLS, warnings) and `members`
   (member DNs -> user anchors). They import no subpackage.
2. `wire/`: the search fast path, from a request on ldap3's socket to decoded rows and
   events; our own lean BER decoder (~10x ldap3) and ldap3's stock one behind one API.
3. `base`: the read side's connections, searches (through `wire/`) and entries.
4. `feeds/`: the change feeds (syncrepl, watermark, DirSync, 389-ds, the CSN check) and the
   cursors they hand out, built on `base`.
   `write/`: the write side (its own connections, writes, deactivation), beside `feeds/`:
   neither imports the other; it uses `wire/` only to decode what it reads back.
5. `connector`: `LdapConnector`, which composes the reads of `feeds/` and the writer of
   `write/`; the only module syncd loads (the ``syncd.connectors`` entry point ``ldap``).

Of syncd, every module imports only the plugin API (`syncd.model`, `syncd.errors`,
`syncd.connector`, ...), as every connector does.
"""
