"""Write-back of the LDAP connector: an LDAP directory as a target or a two-way side.

Why a module of its own: reads are streaming and tuned (`base.py`, `wire.py`); writes are per
object and need other guarantees (per-object errors, idempotent replays). The writer keeps its
own connections, one per apply thread (an ldap3 connection carries one conversation at a time),
and never touches the read path's socket.

Names are LDAP attribute names, case-insensitive. Values: str, tuple (multi), bool -> TRUE/FALSE,
int -> decimal; None, ``""`` and ``()`` remove the attribute (LDAP has no empty values). Binary
attributes take the base64 the read side produces. ``active`` is the engine's status flag, never
written: False deactivates, True undoes a deactivation where that is possible (move back, clear
the bit, remove the disable value; a removed password stays removed).

- `update` is ONE modify of REPLACEs (after a modrdn when the naming attribute changes).
  Clearing is a REPLACE with no values, which RFC 4511 defines as "delete if present, ignore
  if absent": clearing an absent attribute cannot fail, with no pre-read and no swallowed
  error (a modify is atomic: ignoring noSuchAttribute would drop the other changes too).
- `set_members` computes one modify from the group's current values, so replays are no-ops; a
  concurrent change (attributeOrValueExists/noSuchAttribute) falls back to value-by-value
  changes that ignore both. groupOfNames needs a member: a placeholder (default: the bind DN)
  fills an empty group and leaves once real members exist.
- `deactivate` default for users: remove ``userPassword`` -- stock inetOrgPerson has no lock
  attribute (pwdAccountLockedTime needs the ppolicy overlay); the account can no longer bind
  and its password is gone. Anchor objectGUID (AD): set bit 2 of ``userAccountControl``.

Errors: a result about this one object (schema, syntax, naming, access rights) is `Rejected`
naming the DN and the server's message; busy/unavailable/timeLimit and a lost connection are
`Retriable`; authentication trouble and an unreachable server are `Fatal`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import logging
import math
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import ldap3
from ldap3.core.exceptions import (
    LDAPCommunicationError,
    LDAPException,
    LDAPInvalidDnError,
    LDAPResponseTimeoutError,
)
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn, parse_dn

from connectors.ldap.config import ATTRIBUTE_RE, DisableSpec, LdapConfig
from connectors.ldap.values import BINARY_ATTRIBUTES, anchor_string, decode_values, normalize_dn
from connectors.ldap.wire import SearchEntry
from syncd.errors import Conflict, Fatal, Rejected, Retriable
from syncd.model import Attrs, Entry, Kind, Value

log = logging.getLogger("syncd.connectors.ldap")

USER_CLASSES = ("inetOrgPerson", "organizationalPerson", "person", "top")
GROUP_CLASSES = ("groupOfNames", "top")
#: Classes whose member attribute is a MUST: an empty group needs a placeholder member.
_MUST_HAVE_MEMBER = frozenset({"groupofnames", "groupofuniquenames"})
#: Anchors per lookup search: ``(|(entryUUID=..)...)`` stays far below server limits.
CHUNK = 100

_NO_SUCH_ATTRIBUTE, _VALUE_EXISTS, _NO_SUCH_OBJECT = 16, 20, 32
_ALREADY_EXISTS, _OBJECT_CLASS_VIOLATION = 68, 65
_FATAL = {7, 8, 13, 48, 49}  # auth method, stronger auth, confidentiality, auth, credentials
_TRANSIENT = {3, 51, 52}  # timeLimitExceeded, busy, unavailable
_GENERALIZED = re.compile(r"^(\d{14})(?:[.,](\d+))?(Z|[+-]\d{4})$")
_STAMP = "modifytimestamp"
_HEX = re.compile(r"\\([0-9a-fA-F]{2})|\\(.)", re.S)


class _Stale(Exception):
    """The DN we used no longer names the entry (renamed or moved meanwhile): look it up."""


# ---- read-side helpers (used by the connector to fill Entry.attrs and Entry.modified) ----------


@functools.lru_cache(maxsize=4096)  # bulk loads and busy seconds repeat a stamp
def iso_timestamp(text: str) -> str | None:
    """GeneralizedTime (``20261127093000Z``, AD's ``...00.0Z``, ``...+0100``) as ISO-8601
    UTC in the format the SCIM connector uses, so the two-way ``newest`` rule compares like
    with like. None when the value is not a timestamp. On every entry of every read: the
    usual UTC form is sliced, not parsed (strptime costs ~40 us, 2 s per 50k entries)."""
    m = _GENERALIZED.match(text)
    if m is None:
        return None
    t, frac, zone = m.group(1), (m.group(2) or "")[:6].ljust(6, "0"), m.group(3)
    if zone == "Z" and "01" <= t[4:6] <= "12" and "01" <= t[6:8] <= "31" and t[8:] < "246060":
        return f"{t[0:4]}-{t[4:6]}-{t[6:8]}T{t[8:10]}:{t[10:12]}:{t[12:14]}.{frac}Z"
    try:
        dt = datetime.strptime(t, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        dt -= sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5]))
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + frac + "Z"


def entry_attrs(raw: Mapping[str, tuple[str, ...]]) -> dict[str, Value]:
    """The raw values as target attributes: one value -> str, several -> tuple."""
    return {k: v[0] if len(v) == 1 else v for k, v in raw.items()}


def with_timestamp(request: list[str]) -> list[str]:
    """The attributes to request plus modifyTimestamp (operational: ``*`` omits it)."""
    if any(a.lower() == "modifytimestamp" for a in request):
        return request
    return [*request, "modifyTimestamp"]


def target_view(entries: Sequence[Entry], items: Iterable[SearchEntry]) -> list[Entry]:
    """`entries`, just built from `items` by the read path, with `attrs` (so LDAP can be
    matched and diffed as a target) and `modified` (the items' modifyTimestamp, kept in raw
    or not) filled in. On the hot path of every read: the fresh entries, which nobody else
    holds yet, are completed in place instead of being built a second time (a frozen
    dataclass costs ~6 us to construct; ~2 us per entry remain)."""
    stamps: dict[str, bytes] = {}
    for item in items:
        values = item.attrs.get("modifyTimestamp")
        if values is None:  # servers may spell it otherwise
            values = next((v for k, v in item.attrs.items() if k.lower() == _STAMP), None)
        if values:
            stamps[item.dn] = values[0]
    for e in entries:
        object.__setattr__(e, "attrs", {k: v[0] if len(v) == 1 else v for k, v in e.raw.items()})
        stamp = stamps.get(e.name)
        if stamp is not None:
            object.__setattr__(e, "modified", iso_timestamp(stamp.decode("ascii", "replace")))
    return list(entries)


def _status(attrs: Attrs) -> tuple[dict[str, Value], bool | None]:
    """Split off ``active``: the engine's status flag (implicit for users), no LDAP attribute.
    False deactivates, True undoes a deactivation where it can; it is never written."""
    rest = {k: v for k, v in attrs.items() if k.lower() != "active"}
    active = next((v for k, v in attrs.items() if k.lower() == "active"), None)
    return rest, active if isinstance(active, bool) else None


# ---- DN helpers ------------------------------------------------------------------------------


def _unescape(value: str) -> str:
    """An RDN value as text: RFC 4514 escapes (``\\,`` and ``\\2C``) resolved."""
    out = bytearray()
    pos = 0
    for m in _HEX.finditer(value):
        out += value[pos : m.start()].encode()
        out += bytes([int(m.group(1), 16)]) if m.group(1) else m.group(2).encode()
        pos = m.end()
    out += value[pos:].encode()
    return out.decode("utf-8", "replace")


def _split_dn(dn: str) -> tuple[str, str, str, bool]:
    """(first RDN attribute, its unescaped value, parent DN, RDN is multi-valued)."""
    try:
        parts = parse_dn(dn)
    except LDAPInvalidDnError:
        raise Rejected(f"cannot parse DN {dn!r}") from None
    attr, value, sep = parts[0]
    parent = "".join(f"{a}={v}{s}" for a, v, s in parts[1:])
    return attr, _unescape(value), parent, sep == "+"


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


class LdapWriter:
    """Creates, changes and removes entries (see the module docstring)."""

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
        self._dns: dict[tuple[Kind, str], str] = {}
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
            raise Fatal(self._msg(f"cannot connect: {exc}"), connector=self.name) from None
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
            raise Retriable(self._msg(f"{what} {dn}: {exc}"), connector=self.name) from None
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
        if code == _NO_SUCH_OBJECT and stale:
            raise _Stale(dn)
        self._fail(what, dn, code)

    def _fail(self, what: str, dn: str, code: int) -> NoReturn:
        last: dict[str, Any] = getattr(self._local, "last", None) or {}
        desc = f"{last.get('description', '')} ({code}) {last.get('message', '')}".strip()
        text = self._msg(f"{what} {dn}: {desc}")
        if code == _ALREADY_EXISTS and what == "create":
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
        if code == _NO_SUCH_OBJECT:
            return []
        self._expect("search", base, code, stale=False)
        return [(r["dn"], r["raw_attributes"]) for r in holder if r.get("type") == "searchResEntry"]

    # ---- values and anchors ----------------------------------------------------------------

    def _values(self, attrs: Mapping[str, Value]) -> dict[str, list[str | bytes]]:
        out: dict[str, list[str | bytes]] = {}
        for name, value in attrs.items():
            if not ATTRIBUTE_RE.match(name):
                raise self._reject(f"{name!r} is not an LDAP attribute name")
            lname = name.lower()
            items = value if isinstance(value, tuple) else () if value is None else (value,)
            texts = [("TRUE" if v else "FALSE") if isinstance(v, bool) else str(v) for v in items]
            vals: list[str | bytes] = [t for t in texts if t != ""]
            if lname in self._binary or lname.endswith(";binary"):
                try:
                    vals = [base64.b64decode(str(v), validate=True) for v in vals]
                except binascii.Error:
                    raise self._reject(f"{name} needs base64 values") from None
            out[lname] = vals
        return out

    def _anchor_filter(self, anchor: str) -> str | None:
        if self._anchor == "objectguid":  # binary on the wire: escape every byte
            try:
                raw = uuid.UUID(anchor).bytes_le
            except ValueError:
                return None
            return "(objectGUID=" + "".join(f"\\{b:02x}" for b in raw) + ")"
        return f"({self.config.anchor}={escape_filter_chars(anchor)})"

    def _anchor_of(self, attrs: Mapping[str, list[bytes]]) -> str | None:
        for name, values in attrs.items():
            if name.lower() == self._anchor and values:
                return anchor_string(self._anchor, values[0])
        return None

    def dns(self, kind: Kind, anchors: Iterable[str]) -> dict[str, str]:
        """DNs of these anchors (unknown ones are left out): remembered ones, then bulk
        searches of the kind's bases, CHUNK anchors per search."""
        out: dict[str, str] = {}
        todo = []
        for a in dict.fromkeys(anchors):
            if (kind, a) in self._dns:
                out[a] = self._dns[(kind, a)]
            else:
                todo.append(a)
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
            except _Stale:
                self._dns.pop((kind, anchor), None)
                continue
            if moved is not None:
                self._dns[(kind, anchor)] = moved
            return True
        return False

    def _read_back(self, kind: Kind, dn: str) -> Entry:
        request = ["*", self.config.anchor, "modifyTimestamp"]
        found = self._search(dn, "(objectClass=*)", ldap3.BASE, request)
        anchor = self._anchor_of(found[0][1]) if found else None
        if not found or anchor is None:
            raise self._reject(f"created {dn} but cannot read its {self.config.anchor}")
        raw = {
            n.lower(): decode_values(v, binary=n.lower() in self._binary)
            for n, v in found[0][1].items()
            if v
        }
        stamp = raw.get("modifytimestamp")
        self._dns[(kind, anchor)] = found[0][0]
        return Entry(
            kind,
            anchor,
            raw=raw,
            attrs=entry_attrs(raw),
            name=found[0][0],
            members=frozenset() if kind == "group" else None,
            modified=iso_timestamp(stamp[0]) if stamp else None,
        )

    # ---- the connector's write methods -----------------------------------------------------

    def create(self, kind: Kind, attrs: Attrs) -> Entry:
        attrs, active = _status(attrs)
        ks = self.settings(kind)
        values = {k: v for k, v in self._values(attrs).items() if v}
        if kind == "group" and self._member in values:
            raise self._reject(f"set group members with set_members, not {self._member}")
        vals = values.get(ks.rdn.lower())
        if not vals or not isinstance(vals[0], str):
            raise self._reject(f"cannot create a {kind} without {ks.rdn} (the RDN)")
        dn = f"{ks.rdn}={escape_rdn(vals[0])},{ks.create_base}"
        classes = [str(c) for c in values.pop("objectclass", [])] or list(ks.object_classes)
        if kind == "group" and ks.placeholder and _MUST_HAVE_MEMBER & {c.lower() for c in classes}:
            values[self._member] = [ks.placeholder]
        code = self._run("create", dn, lambda c: c.add(dn, classes, values))
        self._expect("create", dn, code, stale=False)
        entry = self._read_back(kind, dn)
        if active is False:
            self.deactivate(kind, entry.external_id)
        return entry

    def update(self, kind: Kind, external_id: str, changes: Mapping[str, Value]) -> None:
        changes, active = _status(changes)
        values = self._values(changes)
        if values and not self._locate(
            kind, external_id, lambda dn: self._update_at(kind, external_id, dn, dict(values))
        ):
            raise self._reject(f"{kind} {external_id} is gone")
        if active is False:
            self.deactivate(kind, external_id)
        elif active and (d := self.settings(kind).disable) and d.method != "delete":
            create_base = self.settings(kind).create_base
            self._locate(kind, external_id, lambda dn: self._enable_at(dn, d, create_base))

    def _update_at(
        self, kind: Kind, anchor: str, dn: str, values: dict[str, list[str | bytes]]
    ) -> None:
        attr, current, parent, multi = _split_dn(dn)
        new = values.get(attr.lower())
        if new is not None and not multi:
            if not new:
                raise self._reject(f"update {dn}: cannot remove {attr}, the RDN")
            if new[0] != current and isinstance(new[0], str):
                rdn = f"{attr}={escape_rdn(new[0])}"
                code = self._run("rename", dn, lambda c: c.modify_dn(dn, rdn, delete_old_dn=True))
                self._expect("rename", dn, code)
                dn = self._dns[(kind, anchor)] = f"{rdn},{parent}"
            if len(new) == 1:
                del values[attr.lower()]
        if values:
            changes = {n: [(ldap3.MODIFY_REPLACE, v)] for n, v in values.items()}
            self._expect("update", dn, self._modify("update", dn, changes))

    def set_members(self, group_id: str, add: Sequence[str], remove: Sequence[str]) -> None:
        found = self.dns("user", [*add, *remove])
        add_dns = [found[a] for a in add if a in found]
        remove_dns = [found[a] for a in remove if a in found and a not in add]
        ks = self.settings("group")
        if not self._locate(
            "group", group_id, lambda dn: self._members_at(dn, add_dns, remove_dns, ks.placeholder)
        ):
            raise self._reject(f"group {group_id} is gone")
        missing = [a for a in add if a not in found]
        if missing:  # the rest is applied; a later run retries these
            raise self._reject(f"members not found as users: {', '.join(missing[:10])}")

    def _members_at(self, dn: str, add: list[str], remove: list[str], holder: str | None) -> None:
        got = self._search(dn, "(objectClass=*)", ldap3.BASE, [self._member, "objectClass"])
        if not got:
            raise _Stale(dn)
        values = {
            n.lower(): [v.decode("utf-8", "replace") for v in vs] for n, vs in got[0][1].items()
        }
        stored = {normalize_dn(v): v for v in values.get(self._member, [])}
        if not _MUST_HAVE_MEMBER & {c.lower() for c in values.get("objectclass", [])}:
            holder = None  # only classes that demand a member get a placeholder
        to_add = {normalize_dn(d): d for d in add if normalize_dn(d) not in stored}
        to_del = {
            normalize_dn(d): stored[normalize_dn(d)]
            for d in remove
            if normalize_dn(d) in stored and normalize_dn(d) not in to_add
        }
        final = (set(stored) | set(to_add)) - set(to_del)
        if holder:
            nh = normalize_dn(holder)
            if final - {nh} and nh in stored and nh not in {normalize_dn(d) for d in add}:
                to_del[nh] = stored[nh]
            elif not final:
                to_add[nh] = holder
        pairs = ((ldap3.MODIFY_ADD, to_add), (ldap3.MODIFY_DELETE, to_del))
        ops = [(op, list(v.values())) for op, v in pairs if v]
        if not ops:
            return
        code = self._modify("set members of", dn, {self._member: ops})
        if self._expect("set members of", dn, code, ok=(_VALUE_EXISTS, _NO_SUCH_ATTRIBUTE)):
            self._members_one_by_one(dn, list(to_add.values()), list(to_del.values()), holder)

    def _members_one_by_one(
        self, dn: str, add: list[str], remove: list[str], holder: str | None
    ) -> None:
        """Fallback when the computed modify met a changed group: each value on its own,
        idempotent; the last member is swapped for the placeholder."""
        what = "set members of"
        add_op, del_op = ldap3.MODIFY_ADD, ldap3.MODIFY_DELETE
        for value in add:
            code = self._modify(what, dn, {self._member: [(add_op, [value])]})
            self._expect(what, dn, code, ok=(_VALUE_EXISTS,))
        for value in remove:
            code = self._modify(what, dn, {self._member: [(del_op, [value])]})
            if code == _OBJECT_CLASS_VIOLATION and holder:  # the last one: swap in the holder
                swap = [(add_op, [holder]), (del_op, [value])]
                code = self._modify(what, dn, {self._member: swap})
            self._expect(what, dn, code, ok=(_NO_SUCH_ATTRIBUTE,))

    def deactivate(self, kind: Kind, external_id: str) -> None:
        d = self.settings(kind).disable
        if d is None or (kind == "group" and d.method == "attribute"):
            how = '{method = "delete"} or {method = "move", ou = ...}'
            raise self._reject(f"{kind}s cannot be deactivated: set {kind}s.write.disable = {how}")
        if d.method == "delete":
            self.delete(kind, external_id)
        elif not self._locate(kind, external_id, lambda dn: self._disable_at(dn, d)):
            log.info("%s", self._msg(f"deactivate {kind} {external_id}: already gone"))

    def _disable_at(self, dn: str, d: DisableSpec) -> str | None:
        if d.method == "move":
            assert d.ou is not None
            attr, value, parent, _multi = _split_dn(dn)
            if normalize_dn(parent) == normalize_dn(d.ou):
                return None  # moved already
            rdn = f"{attr}={escape_rdn(value)}"
            ou = d.ou
            code = self._run("move", dn, lambda c: c.modify_dn(dn, rdn, new_superior=ou))
            self._expect("move", dn, code)
            return f"{rdn},{ou}"
        assert d.attribute is not None
        vals = [d.value] if d.value is not None else []
        if d.bit is not None:
            got = self._search(dn, "(objectClass=*)", ldap3.BASE, [d.attribute])
            cur = [v for _n, vs in (got[0][1].items() if got else ()) for v in vs]
            try:
                vals = [str(int(cur[0] if cur else b"0") | d.bit)]
            except ValueError:
                raise self._reject(f"deactivate {dn}: {d.attribute} is no number") from None
        code = self._modify("deactivate", dn, {d.attribute: [(ldap3.MODIFY_REPLACE, vals)]})
        self._expect("deactivate", dn, code)
        return None

    def _enable_at(self, dn: str, d: DisableSpec, create_base: str) -> str | None:
        """Undo `_disable_at` where it can be undone (not a removed password)."""
        attr, value, parent, _multi = _split_dn(dn)
        if d.method == "move" and d.ou and normalize_dn(parent) == normalize_dn(d.ou):
            rdn = f"{attr}={escape_rdn(value)}"
            code = self._run(
                "move back", dn, lambda c: c.modify_dn(dn, rdn, new_superior=create_base)
            )
            self._expect("move back", dn, code)
            return f"{rdn},{create_base}"
        if d.method == "attribute" and d.attribute and d.bit is not None:
            got = self._search(dn, "(objectClass=*)", ldap3.BASE, [d.attribute])
            cur = [v for _n, vs in (got[0][1].items() if got else ()) for v in vs]
            if cur and cur[0].isdigit() and int(cur[0]) & d.bit:
                new = [str(int(cur[0]) & ~d.bit)]
                code = self._modify("enable", dn, {d.attribute: [(ldap3.MODIFY_REPLACE, new)]})
                self._expect("enable", dn, code)
        elif d.method == "attribute" and d.attribute and d.value is not None:
            code = self._modify("enable", dn, {d.attribute: [(ldap3.MODIFY_DELETE, [d.value])]})
            self._expect("enable", dn, code, ok=(_NO_SUCH_ATTRIBUTE,))
        return None

    def delete(self, kind: Kind, external_id: str) -> None:
        def drop(dn: str) -> None:
            self._expect("delete", dn, self._run("delete", dn, lambda c: c.delete(dn)))

        self._locate(kind, external_id, drop)  # gone already: success
        self._dns.pop((kind, external_id), None)
