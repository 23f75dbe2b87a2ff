"""Graph's answers as syncd errors: what the engine retries, defers, holds or reports.

Why a module of its own: one table for every request of the connector (reads, writes,
membership, `confirm_gone`), which decides whether the engine retries, defers to the next
run, takes the target for down or fails one object; and it must never put a header or token
in a message.

Errors: 401/403 -> `Fatal` (never with a header or token in the message); 429/5xx and
timeouts -> `Retriable`; no answer at all (refused, reset, connect timeout) -> `Unreachable`
(a few in a row and the engine takes the target for down); 404 on update -> `Rejected`, on
delete -> success (gone is what we wanted); a duplicate userPrincipalName (Graph answers
400) -> `Conflict`, so the engine adopts the existing user; other 4xx -> `Rejected` with the
OData code and message.

Throttling: when the SDK's retries run out, or the server asks for 3 minutes or more (the
RetryHandler does not wait that long), the change fails as `Retriable` carrying the server's
Retry-After and is deferred to the next run.
"""

from __future__ import annotations

import time

from syncd.errors import Conflict, ConnectorError, Fatal, Rejected, Retriable, Unreachable
from syncd_connectors.graph import delta
from syncd_connectors.graph.config import GraphConfig

#: Statuses the RetryHandler retries; reported as http_<status> in `stats`.
THROTTLED = frozenset({429, 503, 504})


class _Gone(Retriable):  # (run errors show the class name: kept as it was, `reads` uses it)
    """The delta token expired (410 / syncStateNotFound). At the start of an incremental round
    the connector falls back to a full round; in the middle of one it is an ordinary
    Retriable: the engine keeps its cursor and the next run starts over."""


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        import email.utils

        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


def odata_error(exc: BaseException) -> tuple[str, str]:
    """(code, message) of an ODataError; ("", "") for anything else."""
    main = getattr(exc, "error", None)
    code = str(getattr(main, "code", "") or "")
    message = str(getattr(main, "message", "") or getattr(exc, "message", "") or "")
    return code, message


def translate(
    exc: BaseException, what: str, config: GraphConfig, name: str, opening: bool
) -> ConnectorError:
    """An SDK, HTTP or credential error as a syncd error, without secrets."""
    import httpx

    status = getattr(exc, "response_status_code", None)
    if status is None:
        if isinstance(exc, httpx.TransportError):
            text = f"{what}: {type(exc).__name__} talking to {config.endpoint}"
            if opening:
                return Fatal(text, connector=name)
            if isinstance(exc, httpx.TimeoutException) and not isinstance(
                    exc, httpx.ConnectTimeout):
                return Retriable(text, connector=name)  # slow, not gone
            # refused, reset, connect timeout: no answer at all (a few: Graph is down)
            return Unreachable(text, connector=name)
        if type(exc).__module__.startswith("azure."):  # only the credential uses azure-core
            first = (str(exc).strip().splitlines() or [""])[0]
            return Fatal(f"{what}: could not get a token for {config.scope} from "
                         f"{config.authority_host}: {type(exc).__name__}: {first}",
                         connector=name)
        if isinstance(exc, ValueError):  # malformed JSON from the server
            return Retriable(f"{what}: unreadable answer ({type(exc).__name__})",
                             connector=name)
        return Fatal(f"{what}: {type(exc).__name__}: {exc}", connector=name)
    code, message = odata_error(exc)
    detail = f"HTTP {status}" + (f" {code}" if code else "") + (
        f": {message}" if message else "")
    headers = getattr(exc, "response_headers", None) or {}
    if status in (401, 403):
        return Fatal(f"{what}: not authorized ({detail}); check the app registration's "
                     f"Graph application permissions and admin consent", connector=name)
    if delta.is_resync(status, code):
        return _Gone(f"{what}: {detail}", connector=name)
    if status in THROTTLED or status >= 500:
        return Retriable(f"{what}: {detail}", connector=name,
                         retry_after=parse_retry_after(headers.get("Retry-After")
                                                       or headers.get("retry-after")))
    if status == 400 and delta.DUPLICATE in message.lower():
        err: Rejected = Conflict(f"{what}: {detail}", connector=name)
    else:
        err = Rejected(f"{what}: {detail}", connector=name)
    err.status = status  # type: ignore[attr-defined]
    return err
