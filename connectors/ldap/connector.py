"""The LDAP connector: an LDAP directory as a *source* of users and groups.

Reads are simple-paged searches (RFC 2696) yielded one `Batch` per page, so a 100k-entry
directory never sits in memory as raw responses; only the attributes the flow maps are asked
for (plus the anchor, plus the member attribute for groups), because ldap3's decoding is the
bottleneck and cost grows with every attribute.

Identity: `Entry.external_id` is the configured anchor (entryUUID; AD's binary objectGUID is
rendered as its canonical UUID string), never the DN, which changes on rename.

Groups: member DNs are resolved to user anchors through a DN -> anchor map remembered while
reading users in this session (DNs compared case-insensitively after normalisation). A member
DN not in the map is looked up with a base-scope search (with the users filter) only when it
lies within the users base and scope; once a complete users read has been seen, the map is
authoritative and unknown DNs are dropped without a lookup. Members that are not users in
scope (including nested groups) are ignored: nested groups are **not** flattened.

Errors: anything that makes the read untrustworthy as a whole is `Fatal` (unreachable, bind
failed, base missing); a timeout or dropped connection mid-read is `Retriable`; a listing cut
short by the server (size limit, referral) ends with a batch marked ``complete=False`` so no
deprovisioning follows. Messages name the connector, URL and DNs, never the password.

This version is read-only: write methods raise `Rejected`. Incremental reads (syncrepl,
DirSync) come later: `cursor` is ignored and every read is full.
"""

from __future__ import annotations

import contextlib
import logging
import math
import ssl
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, NoReturn

import ldap3
from ldap3.core.exceptions import (
    LDAPCommunicationError,
    LDAPException,
    LDAPResponseTimeoutError,
    LDAPStartTLSError,
)
from ldap3.utils.conv import escape_filter_chars

from connectors.ldap.config import ATTRIBUTE_RE, LdapConfig, SearchSpec
from connectors.ldap.values import (
    BINARY_ATTRIBUTES,
    anchor_string,
    decode_values,
    normalize_dn,
    one_level_below,
    texts,
)
from syncd.connector import Capabilities, ConnectorConfig
from syncd.errors import ConfigError, Fatal, Rejected, Retriable
from syncd.model import Attrs, Batch, Entry, Kind, Value

log = logging.getLogger("syncd.connectors.ldap")

PAGED_RESULTS = "1.2.840.113556.1.4.319"

# Result codes (RFC 4511) that decide what a failed search means.
_TIME_LIMIT, _SIZE_LIMIT, _REFERRAL, _ADMIN_LIMIT = 3, 4, 10, 11
_NO_SUCH_OBJECT, _INVALID_CREDENTIALS, _BUSY, _UNAVAILABLE = 32, 49, 51, 52
_TRANSIENT = {_TIME_LIMIT, _BUSY, _UNAVAILABLE}
_CUT_SHORT = {_SIZE_LIMIT, _ADMIN_LIMIT, _REFERRAL}


class LdapConnector:
    """Reads users and groups from an LDAP directory (see the module docstring)."""

    config_model: ClassVar[type[ConnectorConfig]] = LdapConfig

    def __init__(self, name: str, config: LdapConfig) -> None:
        self.name = name
        self.config = config
        self._conn: ldap3.Connection | None = None
        self._binary = BINARY_ATTRIBUTES | {a.lower() for a in config.binary_attributes}
        self._anchor = config.anchor.lower()
        self._member = config.member_attribute.lower()
        self._users_base = normalize_dn(config.users.base)
        # DN (normalised) -> user anchor, or None for "known not to be a user in scope".
        self._dn_anchor: dict[str, str | None] = {}
        self._users_complete = False

    def __repr__(self) -> str:
        return f"LdapConnector({self.name!r}, url={self.config.url!r})"

    # ---- lifecycle -------------------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(read=True, write=False, patch=False)

    def build_tls(self) -> ldap3.Tls | None:
        """TLS settings, verifying by default: ldap3's own default ``Tls()`` validates
        nothing, so we always pass ``CERT_REQUIRED`` (ldap3 then checks the host name too)
        unless the admin explicitly set ``tls_verify = false``."""
        if self.config.scheme != "ldaps" and not self.config.start_tls:
            return None
        return ldap3.Tls(
            validate=ssl.CERT_REQUIRED if self.config.tls_verify else ssl.CERT_NONE,
            ca_certs_file=self.config.ca_file,
        )

    def open(self) -> None:
        """Connect, optionally StartTLS, bind. Any failure is Fatal: nothing can be read."""
        self.close()
        cfg = self.config
        try:
            server = ldap3.Server(
                cfg.url,
                use_ssl=cfg.scheme == "ldaps",
                tls=self.build_tls(),
                connect_timeout=cfg.timeout,
                get_info=ldap3.NONE,  # the schema read costs a round trip and megabytes on AD
            )
        except LDAPException as exc:  # e.g. ca_file missing
            self._fatal(f"TLS settings rejected: {exc} (ca_file={cfg.ca_file})")
        conn = ldap3.Connection(
            server,
            user=cfg.bind_dn,
            password=cfg.bind_password.get_secret_value() if cfg.bind_password else None,
            authentication=ldap3.SIMPLE if cfg.bind_dn else ldap3.ANONYMOUS,
            # ldap3 packs this into a struct timeval: it must be an int.
            receive_timeout=max(1, math.ceil(cfg.timeout)),
            raise_exceptions=False,
            auto_referrals=False,
            read_only=True,
        )
        try:
            conn.open()
            if cfg.start_tls:
                conn.start_tls()
            bound = conn.bind()
        except LDAPStartTLSError as exc:
            self._fatal(f"StartTLS failed: {exc}", conn)
        except LDAPException as exc:
            self._fatal(f"cannot connect: {exc}", conn)
        if not bound:
            code = conn.result.get("result")
            desc = conn.result.get("description", "")
            who = cfg.bind_dn or "anonymous"
            if code == _INVALID_CREDENTIALS:
                self._fatal(f"bind failed as {who}: invalid credentials", conn)
            self._fatal(f"bind failed as {who}: {desc} {conn.result.get('message', '')}", conn)
        self._conn = conn

    def close(self) -> None:
        conn, self._conn = self._conn, None
        self._dn_anchor.clear()
        self._users_complete = False
        if conn is not None:
            with contextlib.suppress(LDAPException):
                conn.unbind()

    def _fatal(self, what: str, conn: ldap3.Connection | None = None) -> NoReturn:
        if conn is not None:
            with contextlib.suppress(LDAPException):
                conn.unbind()
        raise Fatal(self._msg(what), connector=self.name)

    def _msg(self, what: str) -> str:
        text = f"ldap connector {self.name} ({self.config.url}): {what}".strip()
        pw = self.config.bind_password.get_secret_value() if self.config.bind_password else ""
        return text.replace(pw, "********") if pw else text  # defence in depth

    def _connection(self) -> ldap3.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = None
            self.open()
        assert self._conn is not None
        return self._conn

    # ---- reading ---------------------------------------------------------------------------

    def _spec(self, kind: Kind) -> SearchSpec:
        if kind == "user":
            return self.config.users
        if self.config.groups is None:
            raise Fatal(self._msg("no [groups] search is configured"), connector=self.name)
        return self.config.groups

    def _request(self, kind: Kind, attributes: Sequence[str] | None) -> list[str]:
        wanted = ["*"] if attributes is None else list(attributes)
        for name in wanted:
            if name != "*" and not ATTRIBUTE_RE.match(name):
                raise ConfigError(f"{name!r} is not a valid LDAP attribute name")
        extra = [self.config.anchor]
        if kind == "group":
            extra.append(self.config.member_attribute)
        have = {a.lower() for a in wanted}
        return wanted + [a for a in extra if a.lower() not in have]

    def read(
        self, kind: Kind, cursor: str | None = None, attributes: Sequence[str] | None = None
    ) -> Iterator[Batch]:
        """Full read, one Batch per server page. `cursor` is ignored (no incremental yet)."""
        spec = self._spec(kind)
        request = self._request(kind, attributes)
        keep = None if attributes is None else {a.lower() for a in attributes}
        complete = True
        users_map: dict[str, str | None] = {}
        for items, last, cut_short in self._paged(spec.base, spec.filter, spec.scope, request):
            entries = []
            for item in items:
                entry = self._entry(kind, item, keep)
                if entry is None:
                    complete = False
                    continue
                entries.append(entry)
                if kind == "user":
                    users_map[normalize_dn(item["dn"])] = entry.external_id
            complete = complete and not cut_short
            if kind == "user":
                self._dn_anchor.update(users_map)
                users_map.clear()
            if last:
                if kind == "user" and complete:
                    self._users_complete = True
                yield Batch(kind, tuple(entries), cursor=None, complete=complete, full=True)
                return
            yield Batch(kind, tuple(entries), cursor=None, complete=True, full=True)

    def _paged(
        self, base: str, filter_: str, scope: str, attributes: list[str]
    ) -> Iterator[tuple[list[dict[str, Any]], bool, bool]]:
        """Yield ``(entries, is_last_page, cut_short)`` per page of a paged search."""
        conn = self._connection()
        cookie: bytes | None = None
        while True:
            try:
                conn.search(
                    base,
                    filter_,
                    search_scope=ldap3.SUBTREE if scope == "sub" else ldap3.LEVEL,
                    dereference_aliases=ldap3.DEREF_NEVER,
                    attributes=attributes,
                    paged_size=self.config.page_size,
                    paged_cookie=cookie,
                )
            except (LDAPCommunicationError, LDAPResponseTimeoutError) as exc:
                self._drop()
                raise Retriable(
                    self._msg(f"read of {base} interrupted: {exc}"), connector=self.name
                ) from None
            except LDAPException as exc:
                self._drop()
                raise Fatal(
                    self._msg(f"read of {base} failed: {exc}"), connector=self.name
                ) from None
            result = conn.result
            code = result.get("result")
            response = conn.response or []
            entries = [r for r in response if r.get("type") == "searchResEntry"]
            referrals = any(r.get("type") == "searchResRef" for r in response)
            if code == _NO_SUCH_OBJECT:
                raise Fatal(
                    self._msg(f"search base {base} does not exist (noSuchObject)"),
                    connector=self.name,
                )
            if code in _TRANSIENT:
                raise Retriable(
                    self._msg(f"read of {base}: {result.get('description')}"), connector=self.name
                )
            if code in _CUT_SHORT:
                log.warning(
                    "%s",
                    self._msg(
                        f"read of {base} cut short by the server ({result.get('description')}) "
                        f"after a page of {len(entries)}: marking it incomplete"
                    ),
                )
                yield entries, True, True
                return
            if code != 0:
                raise Fatal(
                    self._msg(
                        f"read of {base} failed: {result.get('description')} "
                        f"{result.get('message', '')}"
                    ),
                    connector=self.name,
                )
            control = (result.get("controls") or {}).get(PAGED_RESULTS) or {}
            cookie = (control.get("value") or {}).get("cookie") or None
            yield entries, not cookie, referrals
            if not cookie:
                return

    def _drop(self) -> None:
        """Forget a connection that failed mid-operation; the next call reconnects."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(LDAPException, OSError):
                conn.unbind()

    def _entry(self, kind: Kind, item: Mapping[str, Any], keep: set[str] | None) -> Entry | None:
        dn: str = item["dn"]
        raw: dict[str, tuple[str, ...]] = {}
        anchor: str | None = None
        member_dns: Iterable[bytes] = ()
        for name, values in item["raw_attributes"].items():
            lname = name.lower()
            if lname == self._anchor:
                if values:
                    anchor = self._anchor_string(values[0])
                if keep is not None and lname not in keep:
                    continue
            if kind == "group" and lname == self._member:
                member_dns = values
                if keep is not None and lname not in keep:
                    continue
            if not values:
                continue
            raw[lname] = self._decode(lname, values)
        if anchor is None:
            log.warning(
                "%s",
                self._msg(f"{dn} has no {self.config.anchor}: skipped, read marked incomplete"),
            )
            return None
        members = None
        if kind == "group":
            members = self._resolve_members(texts(member_dns))
        return Entry(kind, anchor, raw=raw, members=members, name=dn)

    def _anchor_string(self, value: bytes) -> str:
        return anchor_string(self._anchor, value)

    def _decode(self, lname: str, values: Sequence[bytes]) -> tuple[str, ...]:
        return decode_values(values, binary=lname in self._binary or lname.endswith(";binary"))

    # ---- group members ---------------------------------------------------------------------

    def _resolve_members(self, dns: Iterable[str]) -> frozenset[str]:
        out = set()
        for dn in dns:
            anchor = self._member_anchor(normalize_dn(dn))
            if anchor is not None:
                out.add(anchor)
        return frozenset(out)

    def _member_anchor(self, ndn: str) -> str | None:
        if ndn in self._dn_anchor:
            return self._dn_anchor[ndn]
        if self._users_complete or not self._in_users_scope(ndn):
            return None
        anchor = self._lookup_user(ndn)
        self._dn_anchor[ndn] = anchor
        return anchor

    def _in_users_scope(self, ndn: str) -> bool:
        suffix = "," + self._users_base
        if not ndn.endswith(suffix):
            return False
        return self.config.users.scope == "sub" or one_level_below(ndn, self._users_base)

    def _lookup_user(self, ndn: str) -> str | None:
        """Anchor of one member DN via a base-scope search with the users filter."""
        conn = self._connection()
        try:
            conn.search(
                ndn,
                self.config.users.filter,
                search_scope=ldap3.BASE,
                dereference_aliases=ldap3.DEREF_NEVER,
                attributes=[self.config.anchor],
            )
        except (LDAPCommunicationError, LDAPResponseTimeoutError) as exc:
            self._drop()
            raise Retriable(
                self._msg(f"lookup of member {ndn} interrupted: {exc}"), connector=self.name
            ) from None
        code = conn.result.get("result")
        if code in _TRANSIENT:
            raise Retriable(
                self._msg(f"lookup of member {ndn}: {conn.result.get('description')}"),
                connector=self.name,
            )
        for item in conn.response or []:
            if item.get("type") == "searchResEntry":
                values = item["raw_attributes"].get(self.config.anchor) or []
                if values:
                    return self._anchor_string(values[0])
        return None

    # ---- find ------------------------------------------------------------------------------

    def find(self, kind: Kind, attribute: str, value: str) -> list[Entry]:
        """Entries of `kind` whose LDAP `attribute` equals `value`, within the configured
        base and filter. The value is always escaped (RFC 4515): ``*)(`` matches literally."""
        if not ATTRIBUTE_RE.match(attribute):
            raise ConfigError(f"{attribute!r} is not a valid LDAP attribute name")
        spec = self._spec(kind)
        filter_ = f"(&{spec.filter}({attribute}={escape_filter_chars(value)}))"
        out: list[Entry] = []
        for items, _last, cut_short in self._paged(
            spec.base, filter_, spec.scope, self._request(kind, None)
        ):
            if cut_short:
                raise Fatal(
                    self._msg(f"find {attribute}={value!r} was cut short by the server"),
                    connector=self.name,
                )
            out.extend(e for e in (self._entry(kind, i, None) for i in items) if e is not None)
        return out

    # ---- writing (not in this version) -----------------------------------------------------

    def _read_only(self) -> NoReturn:
        raise Rejected(
            f"ldap connector {self.name} is read-only in this version", connector=self.name
        )

    def create(self, kind: Kind, attrs: Attrs) -> Entry:
        self._read_only()

    def update(self, kind: Kind, external_id: str, changes: Mapping[str, Value]) -> None:
        self._read_only()

    def set_members(self, external_id: str, add: Sequence[str], remove: Sequence[str]) -> None:
        self._read_only()

    def deactivate(self, kind: Kind, external_id: str) -> None:
        self._read_only()

    def delete(self, kind: Kind, external_id: str) -> None:
        self._read_only()
