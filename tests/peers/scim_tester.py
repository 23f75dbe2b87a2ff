"""scim2-tester (the python-scim compliance checker) against a SCIM server over HTTP.

scim2-client 0.13's network engine speaks ``httpx2``; this is the same engine over the
``httpx`` the project already has (`HttpxTesterClient`), and `failures` keeps the checks
that did not pass, leaving out what the server's ServiceProviderConfig declares unsupported
(scim2-tester reports those as SKIPPED).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, cast

import httpx
from scim2_client.client import BaseSyncSCIMClient, RawResponse
from scim2_client.errors import RequestNetworkException
from scim2_tester import Status, check_server

BAD = (Status.ERROR, Status.CRITICAL)


class HttpxTesterClient(BaseSyncSCIMClient):
    def __init__(self, client: httpx.Client, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client = client

    def _stays_under_base_url(self, endpoint: str) -> bool:
        base = self.client.base_url
        try:
            url = self.client.build_request("GET", endpoint).url
        except httpx.InvalidURL:
            return False
        return ((url.scheme, url.host, url.port) == (base.scheme, base.host, base.port)
                and url.raw_path.startswith(base.raw_path.rstrip(b"/")))

    def _parse_json(self, response: RawResponse) -> Any:
        return cast(httpx.Response, response).json()

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.client.request(method, url, **kwargs)
        except httpx.RequestError as exc:
            raise RequestNetworkException() from exc


def run_checks(base_url: str, token: str) -> tuple[Counter[str], list[str]]:
    """Every scim2-tester check; (count per status, "title: reason" of each failure)."""
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"},
                      timeout=30) as http:
        client = HttpxTesterClient(http)
        client.discover()
        results = check_server(client)
    counts = Counter(r.status.name for r in results)
    failures = [f"{r.status.name} {r.title}: {r.reason}" for r in results if r.status in BAD]
    return counts, failures
