"""Plumbing of the LDAP connector: connection, searches, entry decoding, member resolution.

Kept apart from `connector.py` (which decides *what* to read: full, syncrepl, watermark,
DirSync) so each file stays readable. Everything here is shared by every kind of read.

Errors: anything that makes the read untrustworthy as a whole is `Fatal` (unreachable, bind
failed, base missing, an undecodable reply); a timeout or dropped connection mid-read is
`Retriable`; a listing cut short by the server (size limit, referral) is reported to the
caller, which marks the read ``complete=False``. Messages name the connector, URL and DNs,
never the password.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import math
import ssl
from collections.abc import Iterable, Iterator, Sequence
from typing import ClassVar, NoReturn

import ldap3
from ldap3.core.exceptions import LDAPException, LDAPStartTLSError

from connectors.ldap.config import ATTRIBUTE_RE, LdapConfig, SearchSpec
from connectors.ldap.members import DnMap
from connectors.ldap.values import BINARY_ATTRIBUTES, anchor_string, decode_values, normalize_dn
from connectors.ldap.wire import (
    PAGED_RESULTS,
    Event,
    Failed,
    Interrupted,
    Malformed,
    RequestControl,
    SearchDone,
    SearchEntry,
    SearchRef,
    lean_search,
    paged_control,
    sequence,
    stock_search,
)
from syncd.connector import Capabilities, ConnectorConfig
from syncd.errors import ConfigError, Fatal, Retriable
from syncd.model import Entry, Kind

log = logging.getLogger("syncd.connectors.ldap")

# Result codes (RFC 4511) that decide what a failed search means.
_TIME_LIMIT, _SIZE_LIMIT, _REFERRAL, _ADMIN_LIMIT = 3, 4, 10, 11
_NO_SUCH_OBJECT, _INVALID_CREDENTIALS, _BUSY, _UNAVAILABLE = 32, 49, 51, 52
TRANSIENT = {_TIME_LIMIT, _BUSY, _UNAVAILABLE}
CUT_SHORT = {_SIZE_LIMIT, _ADMIN_LIMIT, _REFERRAL}

#: What `_entries` does with an attribute (bit flags; exactly _KEPT = plain text, kept).
_KEPT, _BINARY, _ANCHOR, _MEMBER = 1, 2, 4, 8


class LdapBase:
    """Connection handling and decoding shared by every read (see the module docstring)."""

    config_model: ClassVar[type[ConnectorConfig]] = LdapConfig

    def __init__(self, name: str, config: LdapConfig) -> None:
        self.name = name
        self.config = config
        self._conn: ldap3.Connection | None = None
        self._binary = BINARY_ATTRIBUTES | {a.lower() for a in config.binary_attributes}
        self._anchor = config.anchor.lower()
        self._member = config.member_attribute.lower()
        self._dn_map = DnMap(config.users.base, config.users.scope)
        self._root: dict[str, list[str]] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, url={self.config.url!r})"

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
        self._dn_map.clear()
        self._root = None
        if conn is not None:
            with contextlib.suppress(LDAPException, OSError):
                conn.unbind()

    def _fatal(self, what: str, conn: ldap3.Connection | None = None) -> NoReturn:
        if conn is not None:
            with contextlib.suppress(LDAPException, OSError):
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

    def _drop(self) -> None:
        """Forget a connection that failed (or was abandoned) mid-operation; the next call
        reconnects. The DN map survives: it describes the directory, not the connection."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(LDAPException, OSError):
                conn.unbind()

    # ---- searching -------------------------------------------------------------------------

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

    def _search(
        self,
        base: str,
        filter_: str,
        scope: str,
        attributes: Sequence[str],
        controls: Sequence[RequestControl] = (),
    ) -> Iterator[Event]:
        """One search through the configured decoder, with errors mapped to ours. A lean
        search abandoned before its end leaves replies on the socket: drop the connection."""
        conn = self._connection()
        lean = self.config.decoder == "lean"
        run = lean_search if lean else stock_search
        finished = False
        try:
            for event in run(conn, base, filter_, scope, attributes, controls):
                if isinstance(event, SearchDone):
                    finished = True
                yield event
        except Interrupted as exc:
            raise Retriable(
                self._msg(f"read of {base} interrupted: {exc}"), connector=self.name
            ) from None
        except Malformed as exc:
            raise Fatal(
                self._msg(
                    f"read of {base}: undecodable reply ({exc}); "
                    'set decoder = "stock" and report this server'
                ),
                connector=self.name,
            ) from None
        except Failed as exc:
            raise Fatal(self._msg(f"read of {base} failed: {exc}"), connector=self.name) from None
        finally:
            if not finished and (lean or (self._conn is not None and self._conn.closed)):
                self._drop()

    def _check(self, done: SearchDone, base: str, count: int) -> bool:
        """Raise for a failed search; return True when the server cut the listing short."""
        code = done.code
        if code == 0:
            return False
        if code == _NO_SUCH_OBJECT:
            raise Fatal(
                self._msg(f"search base {base} does not exist (noSuchObject)"),
                connector=self.name,
            )
        if code in TRANSIENT:
            raise Retriable(self._msg(f"read of {base}: result {code} {done.message}"))
        if code in CUT_SHORT:
            log.warning(
                "%s",
                self._msg(
                    f"read of {base} cut short by the server (result {code} {done.message}) "
                    f"after a page of {count}: marking it incomplete"
                ),
            )
            return True
        raise Fatal(
            self._msg(f"read of {base} failed: result {code} {done.message}"),
            connector=self.name,
        )

    def _paged(
        self, base: str, filter_: str, scope: str, attributes: list[str]
    ) -> Iterator[tuple[list[SearchEntry], bool, bool]]:
        """Yield ``(entries, is_last_page, cut_short)`` per page of a paged search."""
        cookie: bytes | None = None
        while True:
            entries: list[SearchEntry] = []
            referrals = False
            done: SearchDone | None = None
            control = [paged_control(self.config.page_size, cookie)]
            for event in self._search(base, filter_, scope, attributes, control):
                if isinstance(event, SearchEntry):
                    entries.append(event)
                elif isinstance(event, SearchRef):
                    referrals = True
                elif isinstance(event, SearchDone):
                    done = event
            assert done is not None
            if self._check(done, base, len(entries)):
                yield entries, True, True
                return
            value = done.controls.get(PAGED_RESULTS)
            cookie = None
            if value is not None:
                parts = sequence(value)
                if len(parts) != 2 or parts[1][0] != 0x04:
                    raise Fatal(self._msg("invalid paged results control"), connector=self.name)
                cookie = parts[1][1] or None
            yield entries, not cookie, referrals
            if not cookie:
                return

    def _root_dse(self) -> dict[str, list[str]]:
        """The root DSE's supported controls and capabilities (lower-cased names)."""
        if self._root is None:
            attrs = ["supportedControl", "supportedCapabilities", "namingContexts", "currentTime"]
            root: dict[str, list[str]] = {}
            for event in self._search("", "(objectClass=*)", "base", attrs):
                if isinstance(event, SearchEntry):
                    for name, values in event.attrs.items():
                        root[name.lower()] = [v.decode("utf-8", "replace") for v in values]
            self._root = root
        return self._root

    # ---- decoding --------------------------------------------------------------------------

    def _action(self, lname: str, kind: Kind, keep: set[str] | None) -> int:
        """What to do with attribute `lname` (bit flags), computed once per name and read."""
        act = 0
        if keep is None or lname in keep:
            act |= _KEPT
            if lname in self._binary or lname.endswith(";binary"):
                act |= _BINARY
        if lname == self._anchor:
            act |= _ANCHOR
        if kind == "group" and lname == self._member:
            act |= _MEMBER
        return act

    def _entries(
        self, kind: Kind, items: Iterable[SearchEntry], keep: set[str] | None
    ) -> tuple[list[Entry], bool]:
        """Entries of one page, and False when one had no anchor (the read is incomplete).

        The hot path of a 100k read: what to do with each attribute name is decided once per
        page (`_action`), plain kept text attributes (the vast majority) take the first branch,
        and single values are decoded without a generator."""
        acts: dict[str, int] = {}
        out: list[tuple[str, str, dict[str, tuple[str, ...]], list[bytes]]] = []
        whole = True
        anchor_name = self._anchor
        for item in items:
            raw: dict[str, tuple[str, ...]] = {}
            anchor: str | None = None
            member_dns: list[bytes] = []
            for lname, values in item.attrs.items():
                act = acts.get(lname)
                if act is None:
                    act = acts[lname] = self._action(lname, kind, keep)
                if act == _KEPT:
                    try:
                        if len(values) == 1:
                            raw[lname] = (values[0].decode("utf-8"),)
                        elif values:
                            raw[lname] = tuple([v.decode("utf-8") for v in values])
                    except UnicodeDecodeError:
                        raw[lname] = _b64(values)
                    continue
                if act & _ANCHOR and values:
                    anchor = anchor_string(anchor_name, values[0])
                if act & _MEMBER:
                    member_dns = values
                if act & _KEPT and values:
                    raw[lname] = decode_values(values, binary=bool(act & _BINARY))
            if anchor is None:
                log.warning(
                    "%s",
                    self._msg(
                        f"{item.dn} has no {self.config.anchor}: skipped, read marked incomplete"
                    ),
                )
                whole = False
                continue
            out.append((item.dn, anchor, raw, member_dns))
        if kind == "user":
            add = self._dn_map.add
            for dn, anchor, _raw, _m in out:
                add(normalize_dn(dn), anchor)
            return [Entry("user", a, raw=r, name=dn) for dn, a, r, _m in out], whole
        resolved = self._dn_map.resolve((_texts(m) for *_x, m in out), self._member_search)
        entries = [
            Entry("group", a, raw=r, members=members, name=dn)
            for (dn, a, r, _m), members in zip(out, resolved, strict=True)
        ]
        return entries, whole

    def _member_search(self, filter_: str) -> Iterator[tuple[str, str]]:
        """Users (DN, anchor) matching `filter_` within the users base, scope and filter.

        Not paged: slapd keeps one paged search per connection, and this runs between two
        pages of the groups listing. A chunk is at most `members.CHUNK` DNs, so the reply
        stays under server size limits."""
        users = self.config.users
        combined = f"(&{users.filter}{filter_})"
        found: list[tuple[str, str]] = []
        for event in self._search(users.base, combined, users.scope, [self.config.anchor]):
            if isinstance(event, SearchEntry):
                for name, values in event.attrs.items():
                    if name.lower() == self._anchor and values:
                        found.append((event.dn, anchor_string(self._anchor, values[0])))
            elif isinstance(event, SearchDone) and self._check(event, users.base, len(found)):
                raise Retriable(self._msg("member lookup cut short by the server"))
        return iter(found)


def _b64(values: Sequence[bytes]) -> tuple[str, ...]:
    return tuple(base64.b64encode(v).decode("ascii") for v in values)


def _texts(values: Iterable[bytes]) -> list[str]:
    out = []
    for v in values:
        try:
            out.append(v.decode("utf-8"))
        except UnicodeDecodeError:
            continue
    return out
