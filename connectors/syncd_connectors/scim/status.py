"""HTTP statuses and scim2 exceptions -> the syncd error tree, in one place.

The mapping is policy (see `syncd.errors`): 409 is a `Conflict` (the apply step adopts),
404 and other 4xx are `Rejected` (skip this object), 429/5xx are `Retriable`. The status
is kept on the error as ``.status`` because callers decide on it (a DELETE's 404 is success).

Only the HTTP status decides, never a ``status`` inside the body (a 400 whose body claims
404 is not "already gone"). Detail taken from a response body is capped at `DETAIL_CAP`
characters: error messages end up in logs and the journal, not whole pages.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from syncd.errors import Conflict, ConnectorError, Rejected, Retriable
from syncd_connectors.scim.http import HttpStatus

#: Characters of a server's error text kept in a message.
DETAIL_CAP = 500
URN_ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


def cap(text: str) -> str:
    """At most `DETAIL_CAP` characters of server-provided text, marked when cut."""
    return text if len(text) <= DETAIL_CAP else text[:DETAIL_CAP] + "…"


def error_for(status: int, detail: str, what: str, connector: str) -> ConnectorError:
    """The error for a failed operation with this HTTP status (whole request or bulk op)."""
    err: ConnectorError
    if status == 409:
        err = Conflict(f"{what}: already exists ({detail})", connector=connector)
    elif status == 404:
        err = Rejected(f"{what}: gone (404)", connector=connector)
    elif status == 429 or status >= 500:
        err = Retriable(f"{what}: HTTP {status} {detail}".rstrip(), connector=connector)
    else:
        err = Rejected(f"{what}: HTTP {status} {detail}".rstrip(), connector=connector)
    setattr(err, "status", status)  # noqa: B010 - an attribute the error tree does not declare
    return err


def detail_of(resp: httpx.Response) -> str:
    """``scimType: detail`` of a SCIM Error body, or a bit of whatever the body is."""
    try:
        doc = resp.json()
    except ValueError:
        return cap(resp.text)
    if not isinstance(doc, dict):
        return ""
    detail = str(doc.get("detail") or "")
    scim_type = str(doc.get("scimType") or "")
    return cap(f"{scim_type}: {detail}" if scim_type else detail)


def is_scim_error(resp: httpx.Response) -> bool:
    """Is the body a SCIM Error (RFC 7644 §3.12)? A 404 from a proxy in front is not."""
    try:
        doc = resp.json()
    except ValueError:
        return False
    return isinstance(doc, dict) and URN_ERROR in (doc.get("schemas") or [])


def checked_json(
    resp: httpx.Response, what: str, connector: str, ok: tuple[int, ...] = (200,)
) -> Any:
    """The JSON object a response with an expected status carries, else the translated
    error (`Rejected` for a body that is not a JSON object: every SCIM answer is one)."""
    if resp.status_code not in ok:
        raise error_for(resp.status_code, detail_of(resp), what, connector)
    try:
        doc = resp.json()
    except ValueError:
        raise Rejected(f"{what}: response is not JSON", connector=connector) from None
    if not isinstance(doc, dict):
        raise Rejected(
            f"{what}: response is a JSON {type(doc).__name__}, not an object", connector=connector
        )
    return doc


@contextmanager
def scim_errors(what: str, connector: str) -> Iterator[None]:
    """Translate scim2-client/models errors (raised around client calls: only code that
    uses them anyway comes here, so importing them costs nothing more)."""
    from pydantic import ValidationError
    from scim2_client.errors import SCIMClientException
    from scim2_models import SCIMException

    try:
        yield
    except HttpStatus as exc:
        raise error_for(exc.status, detail_of(exc.response), what, connector) from None
    except SCIMException as exc:
        status = int(getattr(exc, "status", 400) or 400)
        scim_type = getattr(exc, "scim_type", "") or ""
        detail = f"{scim_type}: {exc.detail}" if scim_type else str(exc.detail)
        raise error_for(status, cap(detail), what, connector) from None
    except ValidationError as exc:
        errors = exc.errors()
        msg = f"{errors[0]['loc']}: {errors[0]['msg']}" if errors else str(exc)
        raise Rejected(f"{what}: invalid payload {msg}", connector=connector) from None
    except SCIMClientException as exc:
        raise Rejected(
            f"{what}: unexpected response: {cap(str(exc))}", connector=connector
        ) from None
