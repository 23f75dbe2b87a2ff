"""The Microsoft Graph connector (Entra ID): users and groups through the real msgraph-sdk.

`connector` is the contract's face; `client` runs the SDK on an event loop thread of its
own, with the throttling gate; `reads` (delta queries: `delta`) and `writes`; `errors` turns
Graph's answers into syncd's errors; `gone` confirms absences by direct lookups. msgraph
is imported only when a Graph connector opens. Imports only syncd's plugin API.
"""
