"""The config file's shape: one pydantic model per table, strict (unknown keys are errors).

Values that point outside the file (a state URL, a cron expression, a listen address, a CA
bundle) are checked offline here, as validators, so every mistake names its key."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from syncd.checks import CAFile, ListenAddress
from syncd.config.durations import parse_duration
from syncd.net import is_loopback
from syncd.secrets import Secret, UnresolvedSecret

DEFAULT_STATE_FILE = "syncd-state.db"
#: How long the run journal keeps runs and their changes by default; "forever": no pruning.
DEFAULT_JOURNAL_KEEP = "90d"
KEEP_FOREVER = "forever"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _state_url(v: str) -> str:
    from syncd.state.opening import check_state_url

    return check_state_url(v)


def _cron(v: str) -> str:
    from syncd.config.crontab import check_cron

    return check_cron(v)


def journal_keep_seconds(v: str) -> float | None:
    """Seconds a ``journal_keep`` value keeps (None: forever); ValueError naming the forms."""
    if v.strip().lower() == KEEP_FOREVER:
        return None
    try:
        seconds = parse_duration(v)
    except ValueError:
        if v.strip().replace(".", "", 1).isdigit():
            raise ValueError(f"{v!r} has no unit: give a duration such as \"90d\", or "
                             f"\"{KEEP_FOREVER}\" to never prune") from None
        raise ValueError(f"{v!r} is neither a duration (e.g. \"90d\", \"12w\") nor "
                         f"\"{KEEP_FOREVER}\"") from None
    if seconds <= 0:
        raise ValueError(f"{v!r} would keep no history: give a duration such as \"90d\", "
                         f"or \"{KEEP_FOREVER}\" to never prune")
    return seconds


def _journal_keep(v: str) -> str:
    journal_keep_seconds(v)
    return v


class StateModel(_Strict):
    url: Annotated[str, AfterValidator(_state_url)] | None = None
    #: The database password as a secret reference, for a server URL without one.
    password: Secret | None = None
    #: Runs (and their journaled changes) older than this are pruned by the daemon, daily;
    #: each flow's last run is always kept. "forever" keeps everything.
    journal_keep: Annotated[str, AfterValidator(_journal_keep)] = DEFAULT_JOURNAL_KEEP

    @model_validator(mode="after")
    def _password_use(self) -> StateModel:
        from syncd.state.opening import check_password_use

        check_password_use(self.url, self.password)
        return self


def _duration(v: str | None) -> str | None:
    if v is not None:
        parse_duration(v)
    return v


Duration = Annotated[str, AfterValidator(_duration)]


class SafetyModel(_Strict):
    """Thresholds on every destructive effect, per flow. Deprovisioning: Entra Connect
    defaults to 500, Okta to 20%; a mapped ``active`` going true -> false counts as one."""

    max_deprovision: int = Field(default=500, ge=0)
    max_deprovision_percent: float = Field(default=20.0, ge=0, le=100)
    #: The percentage rule only bites above this many deprovisions, so that removing 2 of 5
    #: users in a small directory is not refused.
    percent_floor: int = Field(default=5, ge=0)
    #: Group member removals in one run, over all groups (a `member_attribute` typo removes
    #: every membership at once).
    max_member_removals: int = Field(default=500, ge=0)
    #: Share of one group's members removed in one run, once more than `member_floor` go.
    max_member_removal_percent: float = Field(default=50.0, ge=0, le=100)
    member_floor: int = Field(default=5, ge=0)
    #: Share of the linked objects of a kind whose same attribute is rewritten (a value
    #: replaced or cleared, not a first value) in one run, once more than `rewrite_floor`
    #: change: a bad mapping that rewrites every user's email is refused, not applied.
    max_rewrite_percent: float = Field(default=50.0, ge=0, le=100)
    rewrite_floor: int = Field(default=10, ge=0)
    #: Deprovisions are also counted over this window (the journal's applied deprovisions
    #: and deletes plus this plan's), so a flood split across many small runs -- SCIM
    #: requests, each triggering a run -- meets the same `max_deprovision` and
    #: `max_deprovision_percent`. None: per run only (default; "1h" for flows from a
    #: `scim_inbox`). Runs let through with --allow-deletes do not count.
    window: Duration | None = None




class ScheduleModel(_Strict):
    """When the daemon runs a flow: every `interval`, or on a 5-field `cron` expression."""

    interval: Duration | None = None
    cron: Annotated[str, AfterValidator(_cron)] | None = None
    jitter: Duration | None = None

    @model_validator(mode="after")
    def _one_of(self) -> ScheduleModel:
        if (self.interval is None) == (self.cron is None):
            raise ValueError("give exactly one of interval (e.g. \"5m\") or cron")
        return self


class MetricsModel(_Strict):
    listen: ListenAddress | None = None  # "127.0.0.1:9464"


#: What ``[alerts] events`` may name; `syncd.daemon.alerts` derives them from each run.
AlertEvent = Literal["refused", "quarantined", "failed", "aborted", "recovered"]
ALERT_EVENTS: tuple[AlertEvent, ...] = ("refused", "quarantined", "failed", "aborted",
                                        "recovered")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class WebhookModel(_Strict):
    """One receiver of alerts: a JSON POST per event."""

    #: Declared before `url`, whose check reads it.
    allow_http: bool = False
    url: str
    #: Header values are secrets (``env:``/``file:``/literal): never logged or printed.
    headers: dict[str, Secret] = Field(default_factory=dict)
    tls_verify: bool = True
    ca_file: CAFile | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str, info: ValidationInfo) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an https:// URL with a host")
        try:
            parts.port  # noqa: B018 (raises on a port that is not a number)
        except ValueError:
            raise ValueError(f"{value!r}: the port is not a number from 0 to 65535") from None
        if parts.fragment:
            raise ValueError("must not carry a #fragment")
        if (parts.scheme == "http" and not is_loopback(parts.hostname)
                and not info.data.get("allow_http")):
            raise ValueError(f"http:// to {parts.hostname} sends the alert and its headers in "
                             "clear text: use https://, or set allow_http = true (plain http "
                             "is allowed without it only to 127.0.0.1, ::1 or localhost)")
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name, secret in value.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not an HTTP header name")
            if not isinstance(secret, UnresolvedSecret) and any(
                    ch in secret.get_secret_value() for ch in "\r\n\0"):
                raise ValueError(f"the value of header {name} holds a line break")
        return value


class AlertsModel(_Strict):
    """``[alerts]``: who is told when a flow needs attention (`syncd.daemon.alerts`)."""

    webhooks: list[WebhookModel] = Field(default_factory=list)
    #: A program and its arguments, run per event with the event as JSON on stdin (no shell).
    command: list[str] | None = None
    command_timeout: Duration = "10s"
    events: list[AlertEvent] = Field(default_factory=lambda: list(ALERT_EVENTS))
    #: Only these flows (None: every flow).
    flows: list[str] | None = None

    @field_validator("command")
    @classmethod
    def _command(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value or not value[0]:
            raise ValueError('give the program and its arguments, e.g. '
                             '["/usr/local/bin/notify", "--flag"]')
        prog = Path(value[0])
        if not prog.is_absolute():
            raise ValueError(f"{value[0]!r}: give the program's absolute path (it runs "
                             "without a shell, and the service's PATH is not a shell's)")
        if not prog.is_file() or not os.access(prog, os.X_OK):
            raise ValueError(f"{value[0]}: not an executable file")
        return value

    @field_validator("command_timeout")
    @classmethod
    def _timeout(cls, value: str) -> str:
        if parse_duration(value) <= 0:
            raise ValueError(f"{value!r}: give a duration above zero, e.g. \"10s\"")
        return value

    @model_validator(mode="after")
    def _somewhere(self) -> AlertsModel:
        if self.model_fields_set and not self.webhooks and self.command is None:
            raise ValueError("[alerts] sends nowhere: add webhooks = [...] and/or command = "
                             "[...]")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.webhooks) or self.command is not None


#: Signature algorithms a JWT may use: asymmetric only (a public key set can verify nothing
#: else; ``none`` and HMAC would let anyone holding the JWKS forge tokens).
JwtAlgorithm = Literal["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
                       "ES512", "EdDSA"]


class OAuthModel(_Strict):
    """``[serve.oauth]``: OAuth 2 access tokens (JWTs) accepted next to the bearer tokens,
    verified offline against a key set in a file (no network fetch)."""

    #: The ``iss`` claim, e.g. ``https://sts.windows.net/<tenant id>/`` for Entra ID.
    issuer: str
    #: Accepted ``aud`` claims, e.g. ``8adf8e6e-67b2-4cf2-a259-e3dc5476c621`` (Entra ID's
    #: provisioning service for a non-gallery app).
    audience: list[str] = Field(min_length=1)
    #: A JWKS document (RFC 7517) on disk, re-read when it changes.
    jwks_file: str
    algorithms: list[JwtAlgorithm] = Field(default_factory=lambda: ["RS256"],  # type: ignore[arg-type]
                                           min_length=1)
    #: Clock skew allowed on ``exp``/``nbf``/``iat``.
    leeway: Duration = "60s"

    @field_validator("audience", mode="before")
    @classmethod
    def _one_or_more(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("jwks_file")
    @classmethod
    def _jwks(cls, v: str) -> str:
        if not Path(v).is_file():
            raise ValueError(f"{v}: no such file")
        return v


def _credential(path: str | None) -> str | None:
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if path is None or Path(path).is_absolute() or not creds:
        return path
    return str(Path(creds) / path)


class ServeModel(_Strict):
    """``[serve]``: the SCIM 2.0 service provider of ``syncd serve`` (`syncd.daemon.inbound`),
    which SCIM clients (Entra ID, Okta) provision into."""

    listen: ListenAddress = "127.0.0.1:8443"
    #: Bearer tokens a client may present (``env:``/``file:``/systemd credentials).
    tokens: list[Secret] = Field(default_factory=list)
    #: OAuth 2 JWTs accepted too (at least one of tokens and oauth is needed).
    oauth: OAuthModel | None = None
    #: The ``scim_inbox`` connector whose directory the clients write.
    directory: str
    #: TLS served natively when both are given; else plain HTTP (behind a reverse proxy).
    #: Relative paths resolve in ``$CREDENTIALS_DIRECTORY`` when systemd set it
    #: (``LoadCredential=scim-tls-key:…``, as ``file:`` secrets do).
    tls_cert: str | None = None
    tls_key: str | None = None
    #: Trust ``X-Forwarded-Proto/Host/Prefix`` (a reverse proxy in front sets them).
    behind_proxy: bool = False
    #: Largest request body, in bytes (413 beyond).
    max_body: int = Field(default=1_048_576, ge=1024)
    #: Requests per second per client address (429 beyond, with Retry-After); 0: no limit.
    rate_limit: float = Field(default=200.0, ge=0)
    #: Worker threads serving requests.
    threads: int = Field(default=8, ge=1, le=256)
    #: Tombstones of deleted resources are pruned once every flow reading the directory has
    #: read past them and they are older than this (`syncd.daemon.receiving`).
    tombstones_keep: Duration = "30d"

    @field_validator("tls_cert", "tls_key")
    @classmethod
    def _credential_path(cls, v: str | None) -> str | None:
        return _credential(v)

    @model_validator(mode="after")
    def _tls(self) -> ServeModel:
        if not self.tokens and self.oauth is None:
            raise ValueError("no way to authenticate: give tokens = [...] and/or [serve.oauth]")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("give both tls_cert and tls_key (TLS served natively), or "
                             "neither (plain HTTP, e.g. behind a reverse proxy)")
        for path in (self.tls_cert, self.tls_key):
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{path}: no such file")
        host = self.listen.rpartition(":")[0]
        if self.tls_cert is None and not is_loopback(host) and not self.behind_proxy:
            raise ValueError("plain HTTP on a non-loopback address would send the bearer "
                                 "tokens in clear: give tls_cert and tls_key, or set "
                                 "behind_proxy = true when a TLS proxy is in front")
        return self


Authority = Literal["source", "target", "newest", "manual"]


class KindModel(_Strict):
    mapping: dict[str, Any] = Field(default_factory=dict)
    scope: list[dict[str, Any]] = Field(default_factory=list)
    match: list[str] | None = None
    deprovision: Literal["disable", "delete", "ignore"] | None = None
    #: two_way: per-attribute authority overrides, and merge rules for multi-valued
    #: attributes (and "members" for groups)
    authority: dict[str, Authority] = Field(default_factory=dict)
    merge: dict[str, Literal["union", "replace"]] = Field(default_factory=dict)
    #: groups: what a group that is a member of a group means (`syncd.plan.nesting`).
    nested: Literal["direct", "flatten", "preserve"] | None = None
    #: users: only members (direct or nested) of these source groups (`syncd.cycle.membership`)
    member_of: list[str] = Field(default_factory=list)


class FlowModel(_Strict):
    source: str
    target: str
    mode: Literal["push", "two_way"] = "push"
    deprovision: Literal["disable", "delete", "ignore"] = "disable"
    #: After `disable`, hard-delete once the object has been disabled this long (None: never).
    delete_after: Duration | None = None
    #: Force a full read of the source when the last one is older than this.
    full_reconcile: Duration | None = "24h"
    schedule: ScheduleModel | None = None
    match: list[str] = Field(default_factory=lambda: ["userName"])
    # two_way only: default authority for conflicts, the `newest` tie-breaker, which side
    # may create on the other, and what a deleted target object means for its source.
    authority: Authority = "source"
    tie_breaker: Literal["source", "target"] = "source"
    create: Literal["both", "source", "none"] = "source"
    reverse_deprovision: Literal["recreate", "disable", "delete"] = "recreate"
    users: KindModel | None = None
    groups: KindModel | None = None
    safety: SafetyModel = Field(default_factory=SafetyModel)


class FileModel(_Strict):
    state: StateModel = Field(default_factory=StateModel)
    connectors: dict[str, dict[str, Any]] = Field(default_factory=dict)
    flows: dict[str, FlowModel] = Field(default_factory=dict)
    metrics: MetricsModel = Field(default_factory=MetricsModel)
    alerts: AlertsModel = Field(default_factory=AlertsModel)
    serve: ServeModel | None = None



