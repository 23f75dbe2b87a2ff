"""The change feeds of the LDAP connector: what an incremental read returns after a cursor,
and what cursor a full read hands out.

What belongs here:

- `cursor`: the cursor format (``MECH:FINGERPRINT:PAYLOAD``) and `BadCursor`;
- `controls`: the BER of the RFC 4533 content-sync and the DirSync controls;
- `ds389`: 389 Directory Server's own RFC 4533 (its cookies, changelog, deletes);
- `csn`: a syncrepl cookie checked against the entries after a slapd crash;
- `listing`: the paged listing every read ends in, and the batches a feed hands out;
- `syncrepl`, `watermark`, `dirsync`: one mechanism each, as mixins;
- `incremental`: `IncrementalReads`, which chooses the mechanism and composes the three.

The read classes form one chain on `ldap.base.LdapBase`: `Ds389Feed` -> `CsnGuard` ->
`Listings` -> the three mechanisms -> `IncrementalReads` (-> `connector.LdapConnector`).

May import: `ldap.base`, `wire/` and the ground modules (`ldap.config`, `ldap.values`, ...);
never `write/` or `connector`.
"""
