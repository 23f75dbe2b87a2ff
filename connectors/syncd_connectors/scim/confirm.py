"""`confirm_gone` for SCIM: a direct ``GET {endpoint}/{id}`` per anchor proves absence.

Why: a listing is no proof that something is gone (DESIGN principle 10; `listing` explains
how ``startIndex`` paging misses objects). Only these answers count:

 - ``404`` carrying a SCIM Error body: gone. A 404 that is not a SCIM Error (an HTML page
   from a reverse proxy in front of the server) proves nothing.
 - ``200``: present. That includes a *soft-deleted* user on a server whose DELETE only
   deactivates (django-scim2-server: GET still answers 200 with ``active: false``, and the
   listing still returns it): it is still there, its deactivation reaches the flow through
   a mapped ``active``, not as a disappearance.
 - anything else (5xx after retries, 401/403, a timeout, a dead target, a body too large):
   not confirmed, so left out; the engine holds the deprovisioning.

Lookups run `concurrency` at a time (the connector's HTTP pool size).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

from syncd.errors import ConnectorError
from syncd_connectors.scim.http import ScimHttp
from syncd_connectors.scim.status import is_scim_error

log = logging.getLogger("syncd.connectors.scim")


def confirm_gone(
    http: ScimHttp, endpoint: str, external_ids: Sequence[str], *, concurrency: int,
    connector: str,
) -> set[str]:  # fmt: skip
    """Of `external_ids`, those a direct lookup proves absent now (rules above)."""
    ids = [i for i in dict.fromkeys(external_ids) if i]

    def one(rid: str) -> tuple[str, bool | None, str]:
        try:
            resp = http.request("GET", f"{endpoint}/{quote(rid, safe='')}")
        except ConnectorError as exc:
            return rid, None, str(exc)
        if resp.status_code == 404:
            if is_scim_error(resp):
                return rid, True, ""
            return rid, None, "HTTP 404 without a SCIM error body"
        if resp.status_code == 200:
            return rid, False, ""
        return rid, None, f"HTTP {resp.status_code}"

    if not ids:
        return set()
    workers = max(1, min(concurrency, len(ids)))
    with ThreadPoolExecutor(workers, thread_name_prefix="scim-confirm") as pool:
        results = list(pool.map(one, ids))
    unknown = [(rid, why) for rid, gone, why in results if gone is None]
    if unknown:
        log.warning("%s: could not confirm %d of %d %s ids gone (first: %s: %s); they are "
                    "held, not deprovisioned", connector, len(unknown), len(ids), endpoint,
                    unknown[0][0], unknown[0][1])  # fmt: skip
    return {rid for rid, gone, _ in results if gone}
