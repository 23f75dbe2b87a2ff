"""Plumbing of the LDAP connector: connection, searches, entry decoding, member resolution.

Kept apart from `connector.py` and `feeds/` (which decide *what* to read: full, syncrepl,
watermark, DirSync) so each file stays readable. Everything here is shared by every kind of
read.

Threads: the engine may call `find` (and reads) from several apply threads at once, and an
LDAP connection carries one search conversation at a time (the lean decoder reads replies
straight off the socket). So each thread gets a read connection of its own, opened on first
use and all closed by `close`; the DN map is shared (it describes the directory) and guards
its own updates.

Errors: anything that makes the read untrustworthy as a whole is `Fatal` (unreachable, bind
failed, base missing, an undecodable reply); a timeout or dropped connection mid-read is
`Retriable`; a listing cut short by the server (size limit, referral) is reported to the
caller, which marks the read ``complete=False``. Messages name the connector, URL and DNs,
never the password.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import ClassVar, NoReturn

import ldap3
from ldap3.core.exceptions import LDAPException, LDAPStartTLSError

from syncd.connector import Capabilities, ConnectorConfig
from syncd.errors import ConfigError, Fatal, Retriable
from syncd.model import Entry, Kind
from syncd_connectors.ldap.config import ATTRIBUTE_RE, LdapConfig, SearchSpec
from syncd_connectors.ldap.dn import dn_key
from syncd_connectors.ldap.members import DnMap
from syncd_connectors.ldap.nesting import NestedGroups
from syncd_connectors.ldap.tls import build_tls, certificate_problem, tls_warnings
from syncd_connectors.ldap.values import BINARY_ATTRIBUTES, anchor_string, is_password_attribute
from syncd_connectors.ldap.wire.decode import ENTRY_DEFAULTS, Plan, Row, make_entry
from syncd_connectors.ldap.wire.events import SearchDone, SearchEntry
from syncd_connectors.ldap.wire.paging import PagedSearch

log = logging.getLogger("syncd.connectors.ldap")

_INVALID_CREDENTIALS = 49  # RFC 4511 result code (search results: paging.py)
#: Unresolved member values named in one warning (the rest are counted).
_SHOWN = 5


class LdapBase(PagedSearch):
    """Connection handling and decoding shared by every read (see the module docstring)."""

    config_model: ClassVar[type[ConnectorConfig]] = LdapConfig

    def __init__(self, name: str, config: LdapConfig) -> None:
        self.name = name
        self.config = config
        #: This thread's read connection (see the module docstring).
        self._local = threading.local()
        self._conns_lock = threading.Lock()
        self._conns: list[ldap3.Connection] = []
        self._binary = BINARY_ATTRIBUTES | {a.lower() for a in config.binary_attributes}
        self._anchor = config.anchor.lower()
        self._member = config.member_attribute.lower()
        unique = self._member == "uniquemember"
        self._dn_map = DnMap(config.users.base, config.users.scope, unique)
        #: Member values naming groups -> `Entry.member_groups` (`nesting`).
        self._nested = NestedGroups(config.groups, unique) if config.groups else None
        self._root: dict[str, list[str]] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, url={self.config.url!r})"

    # ---- lifecycle -------------------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(read=True, write=False, patch=False)

    def build_tls(self) -> ldap3.Tls | None:
        """TLS settings, verifying unless ``tls_verify = false`` (`tls.build_tls`)."""
        return build_tls(self.config)

    def open(self) -> None:
        """Connect, optionally StartTLS, bind. Any failure is Fatal: nothing can be read.
        Unsafe TLS settings are logged at every open (`tls.tls_warnings`): never silent."""
        for warning in tls_warnings(self.config):
            log.warning("%s", self._msg(warning))
        self.close()
        self._local.conn = self._connect()

    def _connect(self) -> ldap3.Connection:
        """A new bound read connection, registered so `close` can end it."""
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
        except LDAPException as exc:
            problem = certificate_problem(exc, cfg)
            if problem is not None:
                self._fatal(problem, conn)
            if isinstance(exc, LDAPStartTLSError):
                self._fatal(f"StartTLS failed: {exc}", conn)
            self._fatal(f"cannot connect: {exc}", conn)
        if not bound:
            code = conn.result.get("result")
            desc = conn.result.get("description", "")
            who = cfg.bind_dn or "anonymous"
            if code == _INVALID_CREDENTIALS:
                self._fatal(f"bind failed as {who}: invalid credentials", conn)
            self._fatal(f"bind failed as {who}: {desc} {conn.result.get('message', '')}", conn)
        with self._conns_lock:
            self._conns.append(conn)
        return conn

    def close(self) -> None:
        """Close every thread's read connection and forget what was learnt of the directory."""
        with self._conns_lock:
            conns, self._conns = self._conns, []
        self._local = threading.local()
        self._dn_map.clear()
        if self._nested is not None:
            self._nested.clear()
        self._root = None
        for conn in conns:
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
        """This thread's read connection, (re)connected when needed."""
        conn: ldap3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            if conn is not None:
                self._drop(conn)
            conn = self._local.conn = self._connect()
        return conn

    def _reset(self) -> None:
        """Drop this thread's read connection, if any (the next call reconnects)."""
        conn: ldap3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            self._drop(conn)

    def _drop(self, conn: ldap3.Connection) -> None:
        """End a connection that failed (or was abandoned) mid-operation; its thread
        reconnects on its next call. Takes the connection, not "this thread's": an abandoned
        read may be finalised on another thread. The DN map survives: it describes the
        directory, not the connection."""
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        with self._conns_lock, contextlib.suppress(ValueError):
            self._conns.remove(conn)
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
        # Passwords and their hashes are never asked for (and dropped by `wire.decode.Plan` when
        # ``*`` or a careless server sends them): nothing syncd reads may show or store them.
        wanted = [a for a in wanted if not is_password_attribute(a)]
        # modifyTimestamp (operational: ``*`` omits it) feeds `Entry.modified`, which the
        # two-way ``newest`` rule compares; a source cannot know whether its flow is two-way.
        extra = [self.config.anchor, "modifyTimestamp"]
        if kind == "group":
            extra.append(self.config.member_attribute)
        have = {a.lower() for a in wanted}
        return wanted + [a for a in extra if a.lower() not in have]

    def _plan(self, kind: Kind, keep: set[str] | None) -> Plan:
        return Plan(kind, keep, frozenset(self._binary), self._anchor, self._member)

    def _root_dse(self) -> dict[str, list[str]]:
        """The root DSE's supported controls and capabilities (lower-cased names)."""
        if self._root is None:
            attrs = ["supportedControl", "supportedCapabilities", "namingContexts", "currentTime",
                     "vendorName"]
            root: dict[str, list[str]] = {}
            for event in self._search("", "(objectClass=*)", "base", attrs):
                if isinstance(event, SearchEntry):
                    for name, values in event.attrs.items():
                        root[name.lower()] = [v.decode("utf-8", "replace") for v in values]
            self._root = root
        return self._root

    # ---- decoding (decode.py does the per-attribute work) -------------------------------------

    def _entries(self, kind: Kind, rows: Iterable[Row]) -> tuple[list[Entry], bool]:
        """Entries of one page of rows, and False when one had no anchor (the read is then
        incomplete). Users feed the DN map as they go; groups' member DNs are resolved to
        user anchors for the whole page at once (bulk lookups)."""
        entries: list[Entry] = []
        whole = True
        if kind == "user":  # the hot loop of a 100k read: make_entry and the DN fast path inlined
            pairs: list[tuple[str, str]] = []
            new, blank, append, add = object.__new__, ENTRY_DEFAULTS, entries.append, pairs.append
            key = dn_key
            for dn, anchor, raw, attrs, _m, modified in rows:
                if anchor is None:
                    whole = self._no_anchor(dn)
                    continue
                add((key(dn), anchor))
                entry = new(Entry)
                d = entry.__dict__
                d.update(blank)
                d["external_id"] = anchor
                d["raw"] = raw
                d["attrs"] = attrs
                d["name"] = dn
                d["modified"] = modified
                append(entry)
            self._dn_map.add_many(pairs)
            return entries, whole
        groups: list[Row] = []
        for row in rows:
            if row[1] is None:
                whole = self._no_anchor(row[0])
            else:
                groups.append(row)
        values = [_texts(row[4] or ()) for row in groups]
        resolved = self._dn_map.resolve(values, self._member_search)
        nested = self._member_groups(groups, values)
        for (dn, anchor, raw, attrs, _m, modified), members, subs in zip(
                groups, resolved, nested, strict=True):
            assert anchor is not None
            unresolved = [v for v in members.unresolved if v not in subs]
            if unresolved:
                self._unresolved(dn, unresolved)
            entry = make_entry("group", anchor, raw, attrs, dn, modified, members.anchors)
            entry.__dict__["member_groups"] = frozenset(subs.values())
            entries.append(entry)
        return entries, whole

    def _member_groups(self, groups: list[Row], values: list[list[str]]
                       ) -> list[dict[str, str]]:
        """Per group: its member values that name groups -> their anchors (`nesting`)."""
        spec = self.config.groups
        if self._nested is None or spec is None:
            return [{} for _ in groups]
        self._nested.read((dn_key(row[0]), row[1]) for row in groups if row[1] is not None)

        def search(filter_: str) -> Iterator[tuple[str, str]]:
            return self._anchor_search(spec, filter_)

        return self._nested.member_groups(values, self._dn_map, self._member_search, search)

    def _unresolved(self, group: str, values: Sequence[str]) -> None:
        """One WARNING per group and read for member values within the users' base and
        scope that name no user (a typo, a deleted user, a user the users filter leaves
        out) or that are no DN at all: the group is synced without them. Values outside
        the users' scope (the placeholder member of an empty groupOfNames) are ignored by
        design; values naming groups are nested groups (`Entry.member_groups`)."""
        shown = ", ".join(repr(v) for v in values[:_SHOWN])
        more = f" and {len(values) - _SHOWN} more" if len(values) > _SHOWN else ""
        log.warning(
            "%s",
            self._msg(
                f"group {group}: {len(values)} {self.config.member_attribute} value(s) name "
                f"no user in scope (or are no DN) and are left out: {shown}{more}"
            ),
        )

    def _no_anchor(self, dn: str) -> bool:
        """Log an entry without anchor (skipped); False: the read is incomplete."""
        log.warning(
            "%s", self._msg(f"{dn} has no {self.config.anchor}: skipped, read marked incomplete")
        )
        return False

    def _member_search(self, filter_: str) -> Iterator[tuple[str, str]]:
        """Users (DN, anchor) matching `filter_` within the users base, scope and filter.

        Not paged: slapd keeps one paged search per connection, and this runs between two
        pages of the groups listing. A chunk is at most `members.CHUNK` DNs, so the reply
        stays under server size limits."""
        return self._anchor_search(self.config.users, filter_)

    def _anchor_search(self, spec: SearchSpec, filter_: str) -> Iterator[tuple[str, str]]:
        """(DN, anchor) of the entries matching `filter_` within `spec`'s base, scope and
        filter (see `_member_search`)."""
        combined = f"(&{spec.filter}{filter_})"
        found: list[tuple[str, str]] = []
        for event in self._search(spec.base, combined, spec.scope, [self.config.anchor]):
            if isinstance(event, SearchEntry):
                for name, values in event.attrs.items():
                    if name.lower() == self._anchor and values:
                        found.append((event.dn, anchor_string(self._anchor, values[0])))
            elif isinstance(event, SearchDone) and self._check(event, spec.base, len(found)):
                raise Retriable(self._msg("member lookup cut short by the server"))
        return iter(found)


def _texts(values: Iterable[bytes]) -> list[str]:
    out = []
    for v in values:
        try:
            out.append(v.decode("utf-8"))
        except UnicodeDecodeError:
            continue
    return out
