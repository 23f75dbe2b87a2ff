"""The SCIM 2.0 connector (RFC 7643/7644): a target (and a source) over HTTP.

`connector` is the contract's face; `session` holds the client, what discovery found
(`discovery`: /ServiceProviderConfig, /Schemas, /ResourceTypes) and resources <-> entries;
`writes`, `bulk` and `members` are the write side (adaptive member PATCH chunks, /Bulk);
`reads` and `listing` the paged reads (a listing that shifts is known incomplete);
`paths` maps canonical attributes to SCIM paths; `http`, `status` and `transport` are the
wire. Imports only syncd's plugin API.
"""
