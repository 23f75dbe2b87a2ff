"""Configuration of the LDAP connector (``[connectors.NAME]`` with ``type = "ldap"``).

Everything that can be checked without a server is checked here, at config load, so a typo
in a URL or a filter is exit 2 with the key named, not a failed run at 3 a.m.: the URL
scheme, base DNs, attribute names and the syntax of search filters (RFC 4515).
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from ldap3.core.exceptions import LDAPInvalidDnError
from ldap3.utils.dn import parse_dn
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from syncd.checks import CAFile
from syncd.connector import ConnectorConfig
from syncd.secrets import Secret

#: An attribute description: a name or OID, optionally with options (``cn;lang-en``).
_ATTR = r"(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+)(?:;[A-Za-z0-9-]+)*"
ATTRIBUTE_RE = re.compile(rf"^{_ATTR}$")
#: The left side of a filter item: an attribute, or an extensible match (``cn:dn:2.5.13.5``).
_ITEM_LEFT_RE = re.compile(rf"^(?:{_ATTR})?(?::dn)?(?::(?:{_ATTR}))?:?$")
_HEX = set("0123456789abcdefABCDEF")


def check_attribute(name: str) -> str:
    if not ATTRIBUTE_RE.match(name):
        raise ValueError(f"{name!r} is not a valid LDAP attribute name")
    return name


def check_filter(text: str) -> str:
    """Check RFC 4515 syntax; raise ValueError saying what is wrong and where.

    ldap3's own parser only says "invalid filter", which does not help an admin find a
    missing parenthesis in a long filter.
    """
    pos = _parse_filter(text, 0)
    if pos != len(text):
        raise ValueError(
            f"unexpected text after the filter at position {pos}: {text[pos:]!r} "
            "(combine several filters with (&...) or (|...))"
        )
    return text


def _parse_filter(text: str, pos: int) -> int:
    if pos >= len(text) or text[pos] != "(":
        raise ValueError(f"expected '(' at position {pos} in {text!r}")
    pos += 1
    if pos < len(text) and text[pos] in "&|":
        pos += 1
        start = pos
        while pos < len(text) and text[pos] == "(":
            pos = _parse_filter(text, pos)
        if pos == start:
            raise ValueError(f"'{text[start - 1]}' needs at least one (filter) at position {pos}")
    elif pos < len(text) and text[pos] == "!":
        pos = _parse_filter(text, pos + 1)
    else:
        pos = _parse_item(text, pos)
    if pos >= len(text):
        raise ValueError(f"unbalanced parentheses: missing ')' at the end of {text!r}")
    if text[pos] != ")":
        raise ValueError(f"expected ')' at position {pos} in {text!r}, found {text[pos]!r}")
    return pos + 1


def _parse_item(text: str, pos: int) -> int:
    start = pos
    while pos < len(text) and text[pos] not in "=()":
        pos += 1
    if pos >= len(text) or text[pos] != "=":
        raise ValueError(f"expected attribute=value at position {start} in {text!r}")
    left = text[start:pos]
    if left and left[-1] in "~<>":
        left = left[:-1]
    if not left or not _ITEM_LEFT_RE.match(left):
        raise ValueError(f"invalid attribute {left!r} at position {start} in {text!r}")
    pos += 1
    while pos < len(text) and text[pos] != ")":
        if text[pos] == "(":
            raise ValueError(
                f"unescaped '(' in a value at position {pos} in {text!r} (write it as \\28)"
            )
        if text[pos] == "\\":
            esc = text[pos + 1 : pos + 3]
            if len(esc) != 2 or not set(esc) <= _HEX:
                raise ValueError(
                    f"invalid escape at position {pos} in {text!r}: use \\XX with two hex digits"
                )
            pos += 3
        else:
            pos += 1
    return pos


def _check_dn(value: str) -> str:
    try:
        parse_dn(value)
    except LDAPInvalidDnError as exc:
        raise ValueError(f"{value!r} is not a valid DN: {exc}") from None
    return value


class DisableSpec(BaseModel):
    """How `deactivate` disables an entry (``users.write.disable = {method = ...}``).

    ``attribute`` replaces `attribute` with `value` (None removes it), or, with `bit`, ORs
    that bit into the attribute's integer value (AD: ``userAccountControl``, bit 2).
    ``move`` moves the entry under `ou` (usually outside the search base, so it leaves the
    flow's scope); ``delete`` deletes it. Groups accept only ``move`` and ``delete``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["delete", "move", "attribute"]
    ou: str | None = None
    attribute: str | None = None
    value: str | None = None
    bit: int | None = Field(default=None, ge=1)

    @field_validator("ou")
    @classmethod
    def _ou(cls, value: str | None) -> str | None:
        return None if value is None else _check_dn(value)

    @field_validator("attribute")
    @classmethod
    def _attr(cls, value: str | None) -> str | None:
        return None if value is None else check_attribute(value)

    @model_validator(mode="after")
    def _complete(self) -> DisableSpec:
        if self.method == "move" and not self.ou:
            raise ValueError('method = "move" needs ou = "ou=disabled,..."')
        if self.method == "attribute" and not self.attribute:
            raise ValueError('method = "attribute" needs attribute = "..."')
        if self.bit is not None and self.value is not None:
            raise ValueError("set either value or bit, not both")
        return self


class WriteSpec(BaseModel):
    """How entries of one kind are written (``[connectors.NAME.users.write]``).

    Unset fields take per-kind defaults (see `syncd_connectors.ldap.write.session`): users
    ``uid=`` under the search base as inetOrgPerson, groups ``cn=`` as groupOfNames with the
    bind DN as the placeholder member that groupOfNames requires.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Parent of new entries; default: the search base.
    create_base: str | None = None
    #: Naming attribute of new entries; default ``uid`` (users), ``cn`` (groups).
    rdn_attribute: str | None = None
    #: objectClass values of new entries; default inetOrgPerson/organizationalPerson/
    #: person/top (users), groupOfNames/top (groups).
    object_classes: tuple[str, ...] | None = None
    #: Member kept in an otherwise empty groupOfNames (``member`` is a MUST there);
    #: default: the bind DN.
    placeholder_member: str | None = None
    #: How `deactivate` works; default for users: remove ``userPassword`` (AD, i.e.
    #: anchor objectGUID: set bit 2 of ``userAccountControl``); groups: none (Rejected).
    disable: DisableSpec | None = None

    @field_validator("create_base", "placeholder_member")
    @classmethod
    def _dn(cls, value: str | None) -> str | None:
        return None if value is None else _check_dn(value)

    @field_validator("rdn_attribute")
    @classmethod
    def _rdn(cls, value: str | None) -> str | None:
        return None if value is None else check_attribute(value)


class SearchSpec(BaseModel):
    """Where to look for one kind of entry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base: str
    filter: str = "(objectClass=*)"
    scope: Literal["sub", "one"] = "sub"
    #: Write-back settings for this kind (LDAP as a target).
    write: WriteSpec = WriteSpec()

    @field_validator("base")
    @classmethod
    def _base_is_dn(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("base must be a DN such as ou=people,dc=example,dc=org")
        try:
            parse_dn(value)
        except LDAPInvalidDnError as exc:
            raise ValueError(f"{value!r} is not a valid DN: {exc}") from None
        return value

    @field_validator("filter")
    @classmethod
    def _filter_syntax(cls, value: str) -> str:
        value = value.strip()
        try:
            return check_filter(value)
        except ValueError as exc:
            raise ValueError(f"invalid LDAP filter: {exc}") from None


class LdapConfig(ConnectorConfig):
    """An LDAP directory (OpenLDAP, 389-ds, Active Directory) read as a source."""

    type: Literal["ldap"]
    url: str
    bind_dn: str | None = None
    bind_password: Secret | None = None
    start_tls: bool = False
    #: Verify the server certificate and its name. Only turn off for a lab, never silently.
    tls_verify: bool = True
    ca_file: CAFile | None = None  # must exist and hold a PEM certificate
    users: SearchSpec
    groups: SearchSpec | None = None
    #: The stable id: entryUUID (RFC 4530), objectGUID (AD, binary, rendered as a UUID),
    #: nsUniqueId (389-ds). Never the DN: DNs change on rename.
    anchor: str = "entryUUID"
    member_attribute: str = "member"
    #: Extra attributes to treat as binary (base64) besides the well-known ones.
    binary_attributes: tuple[str, ...] = ()
    page_size: int = Field(default=500, ge=1, le=100_000)
    #: Incremental reads: ``auto`` picks syncrepl (RFC 4533: OpenLDAP syncprov, 389-ds
    #: content sync where its feed can serve, see `syncd_connectors.ldap.feeds.ds389`),
    #: dirsync (Active Directory) or watermark (``modifyTimestamp>=``, no deletes) from the
    #: root DSE; ``none`` always reads fully and returns no cursor.
    incremental: Literal["auto", "syncrepl", "watermark", "dirsync", "none"] = "auto"
    #: Watermark reads start this many seconds before the previous read began, to cover
    #: clock skew between us and the server and second-granular timestamps (duplicates are
    #: harmless: upserts are idempotent).
    watermark_overlap: float = Field(default=60, ge=0)
    #: ``lean``: our own decoder of search results (~10x faster than ldap3's) and our own
    #: add (with the Post-Read control where offered: `write.create`); ``stock``: ldap3's
    #: for both, kept as a fallback should a server trip the lean path.
    decoder: Literal["lean", "stock"] = "lean"
    timeout: float = Field(default=30, gt=0)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme.lower() not in ("ldap", "ldaps"):
            got = f"{parts.scheme}://" if parts.scheme else value
            raise ValueError(f"url must start with ldap:// or ldaps:// (got {got!r})")
        if not parts.hostname:
            raise ValueError("url needs a host, e.g. ldaps://ldap.example.org")
        try:
            parts.port  # noqa: B018 - raises on a non-numeric port
        except ValueError:
            raise ValueError(f"url has an invalid port: {value!r}") from None
        if parts.path not in ("", "/"):
            raise ValueError("url must not have a path: put the base DN in users.base")
        return value

    @field_validator("bind_dn")
    @classmethod
    def _bind_dn(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_dn(value)
            except LDAPInvalidDnError as exc:
                raise ValueError(f"{value!r} is not a valid DN: {exc}") from None
        return value

    @field_validator("anchor", "member_attribute")
    @classmethod
    def _attribute(cls, value: str) -> str:
        return check_attribute(value)

    @field_validator("binary_attributes")
    @classmethod
    def _binary(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(check_attribute(v) for v in value)

    @model_validator(mode="after")
    def _consistent(self) -> LdapConfig:
        if self.start_tls and self.scheme == "ldaps":
            raise ValueError("start_tls is for ldap:// URLs; ldaps:// is already encrypted")
        if self.bind_password is not None and self.bind_dn is None:
            raise ValueError("bind_password is set but bind_dn is not")
        if self.bind_dn is not None and self.bind_password is None:
            raise ValueError("bind_dn is set but bind_password is not (anonymous: omit both)")
        if self.incremental == "dirsync" and self.anchor.lower() != "objectguid":
            raise ValueError("incremental = dirsync needs anchor = objectGUID")
        return self

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme.lower()
