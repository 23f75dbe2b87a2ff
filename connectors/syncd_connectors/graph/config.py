"""Configuration of a Microsoft Graph (Entra ID) connector (``[connectors.NAME] type = "graph"``).

This module must stay cheap to import: `syncd validate` and LDAP-only runs load it (through the
entry point) without ever touching msgraph-sdk or azure-identity, which cost ~0.35 s and
~450 MB. Nothing here imports them; the connector does, lazily, in `open()`.

Authentication (``auth``):

 - ``"client_secret"`` (default): app-only client credentials, azure-identity
   ``ClientSecretCredential`` with `tenant_id`, `client_id` and `client_secret` (a
   `syncd.secrets.Secret`: ``env:NAME`` / ``file:/path``).
 - ``"certificate"``: ``CertificateCredential`` with `certificate` (a PEM or PKCS#12 file holding
   the private key and certificate) and an optional `certificate_password` Secret.
 - ``"token"``: a static bearer `token` (Secret), and ``"none"``: no Authorization header.
   Both exist only for the local Graph fake the tests use, and are refused unless `endpoint`
   is a loopback address (127.0.0.1, ::1, localhost): a real tenant always gets a credential
   that renews its own tokens.

The app registration needs the application permissions ``User.ReadWrite.All`` and
``Group.ReadWrite.All`` (``User.Read.All`` + ``Group.Read.All`` for a source-only connector);
deleting users needs ``User.ReadWrite.All`` too. National clouds: set `endpoint` (e.g.
``https://graph.microsoft.us/v1.0``) and `authority_host` (``https://login.microsoftonline.us``);
the token scope is derived from the endpoint's host (``https://graph.microsoft.us/.default``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from syncd.connector import ConnectorConfig
from syncd.net import is_loopback as loopback_host
from syncd.secrets import Secret


def is_loopback(url: str) -> bool:
    return loopback_host(urlsplit(url).hostname or "")


def _https_url(value: str, what: str) -> str:
    """https with a host; plain http only towards this machine (the test fake)."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{what} must be an https:// URL with a host")
    if parts.scheme == "http" and not is_loopback(value):
        raise ValueError(f"{what} must use https (http is allowed only for 127.0.0.1/localhost)")
    if parts.query or parts.fragment:
        raise ValueError(f"{what} must not carry a query or fragment")
    return value.rstrip("/")


class GraphConfig(ConnectorConfig):
    """One Entra ID tenant through Microsoft Graph."""

    type: Literal["graph"] = "graph"
    auth: Literal["client_secret", "certificate", "token", "none"] = "client_secret"
    #: Directory (tenant) id or a verified domain name.
    tenant_id: str | None = None
    #: Application (client) id of the app registration.
    client_id: str | None = None
    client_secret: Secret | None = None
    #: Path to a PEM or PKCS#12 file with the private key and the certificate.
    certificate: str | None = None
    certificate_password: Secret | None = None
    #: Static bearer token, for ``auth = "token"`` against a loopback endpoint only.
    token: Secret | None = None
    #: Graph root including the version; national clouds use their own host.
    endpoint: str = "https://graph.microsoft.com/v1.0"
    #: Where tokens come from (azure-identity's authority host).
    authority_host: str = "https://login.microsoftonline.com"
    #: Objects per page of a delta round (``Prefer: odata.maxpagesize``; Graph caps at 999).
    page_size: int = Field(default=500, ge=1, le=999)
    #: Seconds for connect/read/write of one HTTP request (retries and their waits excluded).
    timeout: float = Field(default=60.0, gt=0)
    #: Parallel requests while applying (the engine's pool) and the HTTP connection pool size.
    #: Graph throttles per app and tenant; a handful is the sweet spot.
    concurrency: int = Field(default=4, ge=1, le=64)
    #: Retries of one request on 429/503/504 by msgraph's RetryHandler (Retry-After honoured);
    #: after that the change fails as `Retriable` and is deferred to the next run.
    max_retries: int = Field(default=5, ge=0, le=10)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        value = _https_url(value, "endpoint")
        if not urlsplit(value).path.strip("/"):
            raise ValueError("endpoint must include the API version, e.g. .../v1.0")
        return value

    @field_validator("authority_host")
    @classmethod
    def _authority(cls, value: str) -> str:
        return _https_url(value, "authority_host")

    @model_validator(mode="after")
    def _credentials(self) -> GraphConfig:
        if self.auth in ("token", "none"):
            if not is_loopback(self.endpoint):
                raise ValueError(f'auth = "{self.auth}" is only allowed for a loopback '
                                 f"endpoint (a local test fake); use client_secret or "
                                 f"certificate for a real tenant")
            if (self.auth == "token") != (self.token is not None):
                raise ValueError('token is required for auth = "token" and only used by it')
            return self
        if not self.tenant_id or not self.client_id:
            raise ValueError(f'auth = "{self.auth}" needs tenant_id and client_id')
        if self.auth == "client_secret":
            if self.client_secret is None:
                raise ValueError('auth = "client_secret" needs client_secret (e.g. "env:NAME")')
            if self.certificate is not None:
                raise ValueError('certificate is set but auth = "client_secret": set '
                                 'auth = "certificate" or remove it')
        else:
            if self.certificate is None:
                raise ValueError('auth = "certificate" needs certificate (a file path)')
            if not Path(self.certificate).is_file():
                raise ValueError(f"certificate file {self.certificate} does not exist")
        return self

    @property
    def scope(self) -> str:
        """The app-only token scope for this endpoint's cloud."""
        parts = urlsplit(self.endpoint)
        return f"{parts.scheme}://{parts.netloc}/.default"
