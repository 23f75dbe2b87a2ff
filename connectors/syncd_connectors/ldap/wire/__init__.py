"""The wire-level fast path of every LDAP read, and of adds: requests out, replies decoded.

Why by hand: ldap3 decodes every response through generic ASN.1 machinery and looks up its
config ~86 times per entry; a 100k-user read spent most of its time there (PEERS.md: ldap3
~5k entries/s vs ldapsearch ~48k/s). ldap3 stays in charge of the connection (connect,
StartTLS, bind, timeouts); a lean search writes its request to ldap3's socket and decodes the
replies itself, ~10x faster. ``decoder = "stock"`` takes ldap3's path instead.

What belongs here, lowest first:

- `ber`: BER primitives (and `Malformed`); `events`: what a search yields, whichever decoder
  read it (`SearchEntry`, `SearchRef`, `SearchIntermediate`, `SearchDone`) and the errors
  both paths raise (`Interrupted`, `Failed`);
- `request`: the search requests and control values sent;
- `decode`: entries -> rows -> `Entry` values, the hot loop of a read (`Plan`, `Row`);
- `reply`: the lean decoder of LDAP messages (into events, or straight into rows);
- `lean`: the lean search over ldap3's socket; `stock`: the same search through ldap3;
- `writes`: the lean add and modify (the request, its response, a created entry from a
  Post-Read control), the hot path of an initial sync into a directory (`write.create`);
- `paging`: `PagedSearch`, one search or a paged read through either decoder, with the
  decoders' errors mapped to syncd's.

May import: the ground modules of the connector (`ldap.config`, `ldap.values`, `ldap.dn`),
`syncd.model` and `syncd.errors`; never `base`, `feeds/`, `write/` or `connector`.
"""
