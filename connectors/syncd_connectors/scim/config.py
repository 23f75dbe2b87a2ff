"""Configuration of a SCIM 2.0 target (``[connectors.NAME] type = "scim"``).

Validated once at config load; unknown keys are errors (inherited ``extra="forbid"``), and the
token is a `syncd.secrets.Secret` so it never shows up in a repr, a log or a validation error.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from syncd.checks import CAFile
from syncd.connector import ConnectorConfig
from syncd.secrets import Secret


class ScimConfig(ConnectorConfig):
    """One SCIM service provider."""

    type: Literal["scim"] = "scim"
    #: Base URL of the SCIM endpoints, whatever prefix the server uses
    #: (``https://idp.example.com/scim/v2``); ``/Users`` etc. are appended to it.
    url: str
    #: Static bearer token (``env:NAME`` / ``file:/path`` / literal). None = no Authorization.
    token: Secret | None = None
    tls_verify: bool = True
    #: PEM bundle to verify the server with instead of the system store.
    ca_file: CAFile | None = None  # must exist and hold a PEM certificate
    #: Seconds for connect/read/write of one HTTP request.
    timeout: float = Field(default=30.0, gt=0)
    #: Size of the engine's apply thread pool for this target; also the HTTP connection pool size.
    concurrency: int = Field(default=8, ge=1, le=256)
    #: Member values added by the first PATCH of a membership change (removals start at
    #: one); later PATCHes grow or shrink with the server's answers and its declared limits
    #: (`syncd_connectors.scim.members`). Not a cap: a change of any size is sent in one call.
    members_per_patch: int = Field(default=200, ge=1)
    #: Retries of one request on 429/503/5xx/timeouts before raising `Retriable`.
    max_retries: int = Field(default=5, ge=0, le=20)
    #: "auto": use /Bulk when the server offers it; "never": plain requests only.
    bulk: Literal["auto", "never"] = "auto"
    #: Entries per page of a listing, clipped to the server's ``filter.maxResults``. Unset:
    #: that ``maxResults`` itself, at most 1000 (200 when the server declares none) --
    #: fewer, larger pages, because some servers walk every stored object per filtered
    #: request (`syncd_connectors.scim.discovery.page_size`).
    page_size: int | None = Field(default=None, ge=1, le=1000)
    #: Seconds an incremental (meta.lastModified) read overlaps the previous one, for clock
    #: differences inside the server; objects changed in that window are read twice.
    incremental_overlap: float = Field(default=2.0, ge=0, le=3600)
    #: Largest response body read, in bytes (decoded); beyond it the request fails and the
    #: rest is not read, so one huge answer cannot exhaust memory.
    max_response_bytes: int = Field(default=64 * 1024 * 1024, ge=64 * 1024)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        """Only http(s) with a host; a trailing slash is dropped so joins are predictable."""
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.query or parts.fragment:
            raise ValueError("must not carry a query or fragment")
        return value.rstrip("/")
