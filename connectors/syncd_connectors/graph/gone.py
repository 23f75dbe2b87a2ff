"""`confirm_gone` for the Graph connector: a direct ``GET /users/{id}`` (``/groups/{id}``).

Why apart from `connector.py`: the rule that decides deprovisioning deserves a module one can
read in a minute. Absence is not proof: a delta round that did not return a linked object is
no reason to deprovision it; the engine asks `confirm_gone` first. Only Graph's own answer
that the object does not exist -- HTTP 404 with the OData code ``Request_ResourceNotFound``
-- confirms it. Anything else (a 404 with another code, e.g. from a proxy or a wrong
endpoint path; throttling after the SDK's retries; 5xx; a broken connection; a timeout)
confirms nothing, so the object is held rather than deprovisioned on a guess. A soft-deleted
user (in ``/directory/deletedItems``) answers 404 and counts as gone, like a delta round's
``@removed``.

The request is built by the SDK's item request builder (``users.by_user_id(id)``, which
escapes the id into the path) with ``$select=id``, and sent through the connector's adapter
(middleware: retries honouring Retry-After, the throttling gate). The Graph connector has no
configured filter, so "in scope" is "exists".
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from syncd.model import Kind

NOT_FOUND = "request_resourcenotfound"


def proves_absence(exc: BaseException) -> bool:
    """Is `exc` Graph saying the object does not exist (404 ``Request_ResourceNotFound``)?"""
    if getattr(exc, "response_status_code", None) != 404:
        return False
    main = getattr(exc, "error", None)
    return str(getattr(main, "code", "") or "").lower() == NOT_FOUND


def item_request(client: Any, kind: Kind, object_id: str) -> Any:
    """``GET /users/{id}?$select=id`` (or ``/groups/...``) as the SDK builds it."""
    from kiota_abstractions.base_request_configuration import RequestConfiguration

    with warnings.catch_warnings():  # msgraph's builders warn about their own deprecations
        warnings.simplefilter("ignore", DeprecationWarning)
        if kind == "user":
            builder: Any = client.users.by_user_id(object_id)
            params: Any = builder.UserItemRequestBuilderGetQueryParameters(select=["id"])
        else:
            builder = client.groups.by_group_id(object_id)
            params = builder.GroupItemRequestBuilderGetQueryParameters(select=["id"])
    return builder.to_get_request_information(RequestConfiguration(query_parameters=params))


async def absent(
    client: Any,
    send: Callable[[Any], Awaitable[Any]],
    kind: Kind,
    ids: Sequence[str],
    concurrency: int,
) -> set[str]:
    """The ids of `ids` Graph answers 404 ``Request_ResourceNotFound`` for; `concurrency`
    lookups at a time. Never raises for one lookup: it then proves nothing."""
    gate = asyncio.Semaphore(concurrency)

    async def one(object_id: str) -> bool:
        async with gate:
            try:
                await send(item_request(client, kind, object_id))
            except Exception as exc:  # every failure but "does not exist" proves nothing
                return proves_absence(exc)
            return False

    found = await asyncio.gather(*(one(i) for i in ids))
    return {i for i, gone in zip(ids, found, strict=True) if gone}
