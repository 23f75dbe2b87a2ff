"""scim2-client on the connector's HTTP layer, with the scim2-models classes of one server.

Why apart and imported only when used: scim2-client and scim2-models cost ~0.5 s to import
and building the classes from a server's /Schemas more; only a write that validates a body
or goes through scim2-client (PATCH, PUT, DELETE) needs them, so `ScimSession` builds this
on the first such write, from the documents discovery kept (`discovery.Documents`). A run
that writes nothing never pays for it.
"""

from __future__ import annotations

from typing import Any

import httpx
from scim2_client.client import BaseSyncSCIMClient
from scim2_models import ListResponse, ResourceType, Schema, ScimProvider, ServiceProviderConfig

from syncd.errors import Fatal
from syncd_connectors.scim.discovery import Documents
from syncd_connectors.scim.http import HttpStatus, ScimHttp


def build(http: ScimHttp, documents: Documents, name: str) -> HttpxScimClient:
    """A client whose provider is made of the server's own description; `Fatal` when that
    description is incoherent (scim2-models cannot build classes from it)."""
    client = HttpxScimClient(http)
    try:
        rts = ListResponse[ResourceType].model_validate(_listing(documents.resource_types))
        found = ListResponse[Schema].model_validate(_listing(documents.schemas))
        # The model forbids keys outside RFC 7643 there (``patch.maxOperations``).
        raw = documents.config
        if isinstance(raw.get("patch"), dict):
            raw = {**raw, "patch": {k: v for k, v in raw["patch"].items() if k == "supported"}}
        spc = ServiceProviderConfig.model_validate(raw)
        client.provider = ScimProvider.from_discovery(
            found.resources or [], rts.resources or [], config=spc
        )
    except Exception as exc:  # a server describing itself incoherently
        raise Fatal(f"SCIM discovery is incoherent: {str(exc)[:500]}", connector=name) from None
    return client


def _listing(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
            "totalResults": len(resources), "Resources": resources}


class HttpxScimClient(BaseSyncSCIMClient):
    """scim2-client's sync engine on httpx; every request goes through `ScimHttp.request`.

    scim2-client 0.13 ships its network engine for the ``httpx2`` fork only; this is the same
    ~15 lines for httpx (the project pins httpx 0.28).
    """

    def __init__(self, http: ScimHttp) -> None:
        super().__init__(check_response_content_type=False)
        self.client = http.client
        self._http = http

    @property
    def http(self) -> ScimHttp:
        """The retrying HTTP layer every request of this client goes through."""
        return self._http

    def _stays_under_base_url(self, endpoint: str) -> bool:
        base = self.client.base_url
        try:
            url = self.client.build_request("GET", endpoint).url
        except httpx.InvalidURL:
            return False
        same = (url.scheme, url.host, url.port) == (base.scheme, base.host, base.port)
        return same and url.raw_path.startswith(base.raw_path)

    def _parse_json(self, response: Any) -> Any:
        return response.json()

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """An HTTP error answer never reaches scim2-client: it would let the *body*'s
        ``status`` decide (a 400 whose body says 404 read as "already deleted")."""
        resp = self._http.request(method, url, **kwargs)
        if resp.status_code >= 400:
            raise HttpStatus(resp.status_code, resp)
        return resp
