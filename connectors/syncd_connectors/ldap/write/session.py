"""The LDAP writer's plumbing: per-thread connections, one operation and what its result
means, where a kind's entries live, and anchor -> DN resolution.

Why apart from `writer.py`: this is the machinery every write method shares (and `disable.py`
too); `writer.py` keeps what each write *does*. Connections: one per apply thread (an ldap3
connection carries one conversation at a time), never the read path's.

Errors: a result about this one object (schema, syntax, naming, access rights) is `Rejected`
naming the DN and the server's message; busy/unavailable/timeLimit and a timeout are
`Retriable`; a connection reset or closed mid-operation is `Unreachable` (no answer at all:
a few in a row and the engine takes the target for down); authentication trouble, a failed
certificate check and a server that refuses connections are `Fatal`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import ldap3
from ldap3.core.exceptions import LDAPCommunicationError, LDAPException, LDAPResponseTimeoutError

from syncd.errors import Conflict, Fatal, Rejected, Retriable, Unreachable
from syncd.model import Kind
from syncd.spill import SpillMap
from syncd_connectors.ldap.config import DisableSpec, LdapConfig
from syncd_connectors.ldap.tls import certificate_problem
from syncd_connectors.ldap.values import (
    BINARY_ATTRIBUTES,
    anchor_filter,
    anchor_string,
    normalize_dn,
)

log = logging.getLogger("syncd.connectors.ldap")

USER_CLASSES = ("inetOrgPerson", "organizationalPerson", "person", "top")
GROUP_CLASSES = ("groupOfNames", "top")
#: Anchors per lookup search: ``(|(entryUUID=..)...)`` stays far below server limits.
CHUNK = 100

NO_SUCH_ATTRIBUTE, VALUE_EXISTS, NO_SUCH_OBJECT = 16, 20, 32
ALREADY_EXISTS, OBJECT_CLASS_VIOLATION = 68, 65
_FATAL = {7, 8, 13, 48, 49}  # auth method, stronger auth, confidentiality, auth, credentials
_TRANSIENT = {3, 51, 52}  # timeLimitExceeded, busy, unavailable


class Stale(Exception):
    """The DN we used no longer names the entry (renamed or moved meanwhile): look it up."""


@dataclass(frozen=True)
class KindWrite:
    """The write settings of one kind with the defaults applied."""

    create_base: str
    rdn: str
    object_classes: tuple[str, ...]
    placeholder: str | None
    disable: DisableSpec | None
    #: Where entries of this kind may live: search base, create base, disable OU.
    bases: tuple[str, ...]


class DnCache:
    """(kind, anchor) -> DN of the entries written or looked up in this session: a group's
    members are written by DN. Past 100k entries per kind on disk (`syncd.spill`): the DNs
    of a million created users were ~200 MB."""

    def __init__(self) -> None:
        self._kinds: dict[Kind, SpillMap[str]] = {}

    def _of(self, kind: Kind) -> SpillMap[str]:
        found = self._kinds.get(kind)
        if found is None:
            found = self._kinds[kind] = SpillMap[str]()
        return found

    def __setitem__(self, key: tuple[Kind, str], dn: str) -> None:
        """Best effort: a cache that cannot record (its file's disk is full) must not fail
        the write that was done; the DN is looked up again when a group needs it."""
        try:
            self._of(key[0])[key[1]] = dn
        except sqlite3.Error as exc:
            log.warning("could not remember the DN of %s %s (%s): it will be looked up",
                        key[0], key[1], exc)

    def pop(self, key: tuple[Kind, str], default: None = None) -> str | None:
        return self._of(key[0]).pop(key[1], default)

    def get_many(self, kind: Kind, anchors: Iterable[str]) -> dict[str, str]:
        """The DNs known for these anchors (unknown ones are left out)."""
        found = self._of(kind).get_many(anchors)
        return {a: dn for a, dn in found.items() if dn is not None}

    def clear(self) -> None:
        for m in self._kinds.values():
            m.clear()


class WriteSession:
    """Connections, operations and DN lookups of the writer (see the module docstring)."""

    def __init__(
        self, name: str, config: LdapConfig, build_tls: Callable[[], ldap3.Tls | None]
    ) -> None:
        self.name = name
        self.config = config
        self._build_tls = build_tls
        self._anchor = config.anchor.lower()
        self._member = config.member_attribute.lower()
        self._binary = BINARY_ATTRIBUTES | {a.lower() for a in config.binary_attributes}
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[ldap3.Connection] = []
        #: (kind, anchor) -> DN, as last seen; a stale one is looked up again.
        self._dns = DnCache()
        self._settings: dict[Kind, KindWrite] = {}

    def settings(self, kind: Kind) -> KindWrite:
        if kind not in self._settings:
            self._settings[kind] = self._resolve(kind)
        return self._settings[kind]

    def _resolve(self, kind: Kind) -> KindWrite:
        spec = self.config.users if kind == "user" else self.config.groups
        if spec is None:
            raise Fatal(self._msg("no [groups] search is configured"), connector=self.name)
        w = spec.write
        disable = w.disable
        if disable is None and kind == "user":
            ad = self._anchor == "objectguid"
            disable = DisableSpec(
                method="attribute",
                attribute="userAccountControl" if ad else "userPassword",
                bit=2 if ad else None,
            )
        create_base = w.create_base or spec.base
        bases: list[str] = []
        for b in (spec.base, create_base, disable.ou if disable else None):
            if b and not any(
                normalize_dn(b) == normalize_dn(x)
                or normalize_dn(b).endswith("," + normalize_dn(x))
                for x in bases
            ):
                bases.append(b)
        return KindWrite(
            create_base=create_base,
            rdn=w.rdn_attribute or ("uid" if kind == "user" else "cn"),
            object_classes=w.object_classes or (USER_CLASSES if kind == "user" else GROUP_CLASSES),
            placeholder=w.placeholder_member or self.config.bind_dn,
            disable=disable,
            bases=tuple(bases),
        )

    # ---- connections -----------------------------------------------------------------------

    def _msg(self, what: str) -> str:
        text = f"ldap connector {self.name} ({self.config.url}): {what}"
        pw = self.config.bind_password.get_secret_value() if self.config.bind_password else ""
        return text.replace(pw, "********") if pw else text

    def _reject(self, what: str) -> Rejected:
        return Rejected(self._msg(what), connector=self.name)

    def _conn(self) -> ldap3.Connection:
        conn: ldap3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and not conn.closed:
            return conn
        cfg = self.config
        try:
            server = ldap3.Server(
                cfg.url,
                use_ssl=cfg.scheme == "ldaps",
                tls=self._build_tls(),
                connect_timeout=cfg.timeout,
                get_info=ldap3.NONE,
            )
            conn = ldap3.Connection(
                server,
                user=cfg.bind_dn,
                password=cfg.bind_password.get_secret_value() if cfg.bind_password else None,
                authentication=ldap3.SIMPLE if cfg.bind_dn else ldap3.ANONYMOUS,
                receive_timeout=max(1, math.ceil(cfg.timeout)),
                raise_exceptions=False,
                auto_referrals=False,
                check_names=False,  # our DNs are escaped already
            )
            conn.open()
            if cfg.start_tls:
                conn.start_tls()
            bound = conn.bind()
        except LDAPException as exc:
            what = certificate_problem(exc, cfg) or f"cannot connect: {exc}"
            raise Fatal(self._msg(what), connector=self.name) from None
        if not bound:
            who = cfg.bind_dn or "anonymous"
            desc = f"{conn.result.get('description', '')} {conn.result.get('message', '')}"
            with contextlib.suppress(LDAPException, OSError):
                conn.unbind()
            raise Fatal(self._msg(f"bind failed as {who}: {desc.strip()}"), connector=self.name)
        self._local.conn = conn
        with self._lock:
            self._conns.append(conn)
        return conn

    def _drop(self) -> None:
        conn, self._local.conn = getattr(self._local, "conn", None), None
        if conn is not None:
            with self._lock, contextlib.suppress(ValueError):
                self._conns.remove(conn)
            with contextlib.suppress(LDAPException, OSError):
                conn.unbind()

    def close(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(LDAPException, OSError):
                conn.unbind()
        self._dns.clear()

    # ---- one operation ---------------------------------------------------------------------

    def _run(self, what: str, dn: str, call: Callable[[ldap3.Connection], object]) -> int:
        """Run one operation; return its result code (errors are the caller's to judge)."""
        conn = self._conn()
        try:
            call(conn)
        except (LDAPCommunicationError, LDAPResponseTimeoutError) as exc:
            self._drop()
            text = self._msg(f"{what} {dn}: {exc}")
            if isinstance(exc, LDAPResponseTimeoutError) or "timed out" in str(exc):
                raise Retriable(text, connector=self.name) from None  # slow, not gone
            # reset or closed under us: no answer at all (a few in a row: the target is down)
            raise Unreachable(text, connector=self.name) from None
        except LDAPException as exc:
            raise self._reject(f"{what} {dn}: {exc}") from None
        last: dict[str, Any] = conn.result or {}
        self._local.last = last
        code = last.get("result")
        if code is None:
            self._drop()
            raise Retriable(self._msg(f"{what} {dn}: no answer"), connector=self.name)
        return int(code)

    def _modify(self, what: str, dn: str, changes: dict[str, Any]) -> int:
        return self._run(what, dn, lambda c: c.modify(dn, changes))

    def _expect(
        self, what: str, dn: str, code: int, ok: Iterable[int] = (), stale: bool = True
    ) -> int:
        if code == 0 or code in ok:
            return code
        if code == NO_SUCH_OBJECT and stale:
            raise Stale(dn)
        self._fail(what, dn, code)

    def _fail(self, what: str, dn: str, code: int) -> NoReturn:
        last: dict[str, Any] = getattr(self._local, "last", None) or {}
        desc = f"{last.get('description', '')} ({code}) {last.get('message', '')}".strip()
        text = self._msg(f"{what} {dn}: {desc}")
        if code == ALREADY_EXISTS and what == "create":
            raise Conflict(text, connector=self.name)
        if code in _FATAL:
            raise Fatal(text, connector=self.name)
        if code in _TRANSIENT:
            raise Retriable(text, connector=self.name)
        raise Rejected(text, connector=self.name)

    def _search(
        self, base: str, filter_: str, scope: str, attrs: list[str]
    ) -> list[tuple[str, dict[str, list[bytes]]]]:
        holder: list[Any] = []

        def call(c: ldap3.Connection) -> None:
            c.search(base, filter_, scope, ldap3.DEREF_NEVER, attrs)
            holder.extend(c.response or [])

        code = self._run("search", base, call)
        if code == NO_SUCH_OBJECT:
            return []
        self._expect("search", base, code, stale=False)
        return [(r["dn"], r["raw_attributes"]) for r in holder if r.get("type") == "searchResEntry"]

    # ---- anchors -> DNs ----------------------------------------------------------------

    def _anchor_filter(self, anchor: str) -> str | None:
        return anchor_filter(self.config.anchor, anchor)

    def _anchor_of(self, attrs: Mapping[str, list[bytes]]) -> str | None:
        for name, values in attrs.items():
            if name.lower() == self._anchor and values:
                return anchor_string(self._anchor, values[0])
        return None

    def dns(self, kind: Kind, anchors: Iterable[str]) -> dict[str, str]:
        """DNs of these anchors (unknown ones are left out): remembered ones, then bulk
        searches of the kind's bases, CHUNK anchors per search."""
        out = self._dns.get_many(kind, anchors)
        todo = [a for a in dict.fromkeys(anchors) if a not in out]
        for base in self.settings(kind).bases if todo else ():
            for i in range(0, len(todo), CHUNK):
                items = [f for f in map(self._anchor_filter, todo[i : i + CHUNK]) if f]
                if not items:
                    continue
                for dn, attrs in self._search(
                    base, f"(|{''.join(items)})", ldap3.SUBTREE, [self.config.anchor]
                ):
                    anchor = self._anchor_of(attrs)
                    if anchor is not None and anchor in todo:
                        out[anchor] = self._dns[(kind, anchor)] = dn
            todo = [a for a in todo if a not in out]
            if not todo:
                break
        return out

    def _locate(self, kind: Kind, anchor: str, op: Callable[[str], str | None]) -> bool:
        """Run `op(dn)` on the entry; a stale DN is looked up once more. False: gone.
        `op` returns the entry's new DN when it moved it."""
        for _attempt in range(2):
            dn = self.dns(kind, [anchor]).get(anchor)
            if dn is None:
                return False
            try:
                moved = op(dn)
            except Stale:
                self._dns.pop((kind, anchor), None)
                continue
            if moved is not None:
                self._dns[(kind, anchor)] = moved
            return True
        return False
