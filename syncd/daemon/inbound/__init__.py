"""``syncd serve``: the SCIM 2.0 service provider that Entra ID, Okta or any SCIM client
provisions into. `app` (scim2-server behind syncd's edge: tokens, limits, dialects),
`storage` (the received directory, `syncd.state.inbox`, as scim2-server's storage),
`dialect` (the clients' PATCH flavours made RFC 7644), `server` (the HTTP server)."""
