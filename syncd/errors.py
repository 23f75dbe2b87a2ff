"""The error tree: errors decide control flow, so each class means exactly one policy.

::

    SyncdError
    ├── ConfigError        invalid config or mapping; exit 2, nothing touched
    ├── SafetyRefused      the plan crosses a safety threshold; exit 3, nothing applied
    ├── StoreLocked        another run holds the state store
    ├── StoreError         the state store cannot be opened or written (corrupt, unwritable,
    │                      disk full, database down); exit 1, the run's writes roll back
    └── ConnectorError     raised by connectors
        ├── Fatal          the flow cannot go on (auth failed, target down, source read failed):
        │                  abort the flow, forbid deprovisioning, keep cursors where they were
        ├── Retriable      transient (429/503, timeout, reset): retried with backoff, then the
        │   │              change is deferred to the next run; cursors do not advance
        │   └── Unreachable the peer could not be reached at all (connection refused, reset,
        │                  TLS or DNS failure): a few in a row and apply declares the target
        │                  down, stops submitting and aborts the flow fast
        └── Rejected       this one object is unacceptable (400, schema violation): skip it,
            │              record why, continue with the rest
            ├── Conflict   the target already holds an object with this identity (SCIM 409):
            │              the apply step tries to adopt it instead of creating a duplicate
            └── Collision  ... and that object is linked to another source entry: never
                           adopted, updated or deprovisioned for this one; held and shown

Messages never contain secrets: connectors build them from status codes, server error
details and object names, never from request headers or bind credentials — and because a
server's error details can echo a credential back, every `ConnectorError` message passes
through `syncd.redact` (configured secret values and credential shapes masked, length capped).
"""

from __future__ import annotations

from syncd.redact import redact


class SyncdError(Exception):
    """Base of every error syncd raises on purpose."""


class ConfigError(SyncdError):
    """Invalid configuration. `where` is ``file: key.path`` so the admin can jump to it."""

    def __init__(self, message: str, where: str = "") -> None:
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class SafetyRefused(SyncdError):
    """The plan was refused by a safety check; `reasons` says which and why."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__("; ".join(reasons))


class StoreLocked(SyncdError):
    """Another syncd process is running the flow against the same state store; `holder`
    names it when the store can tell (PostgreSQL: ``syncd daemon HOST:PID``)."""

    def __init__(self, message: str, holder: str | None = None) -> None:
        super().__init__(message)
        self.holder = holder


class StoreError(SyncdError):
    """The state store cannot be opened or used. The message names the store (path, or URL
    with the password masked) and the reason, never the password."""


class ConnectorError(SyncdError):
    """Raised by a connector; `connector` names it for logs."""

    def __init__(self, message: str, *, connector: str = "") -> None:
        self.connector = connector
        super().__init__(redact(message))


class Fatal(ConnectorError):
    """The flow cannot continue."""


class Retriable(ConnectorError):
    """Try again later; `retry_after` (seconds) comes from the server when it said so."""

    def __init__(
        self, message: str, *, connector: str = "", retry_after: float | None = None
    ) -> None:
        super().__init__(message, connector=connector)
        self.retry_after = retry_after


class Unreachable(Retriable):
    """No answer from the peer at all (refused, reset, timed out connecting): after a few in
    a row the apply session takes the target for down instead of retrying every change."""


class Rejected(ConnectorError):
    """This object was refused; the rest of the plan proceeds."""


class Conflict(Rejected):
    """An object with this identity already exists on the target."""


class Collision(Rejected):
    """The object this entry would become is owned (linked) by another source entry."""
