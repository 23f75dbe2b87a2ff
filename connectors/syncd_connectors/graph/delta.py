"""Graph JSON <-> syncd values, delta rounds and OData details, all pure (no I/O, no msgraph).

Kept apart from the connector so the rules that decide correctness (what a delta page means,
how a cursor is validated, how a filter literal is escaped, what a create needs) are testable
without a server and readable in one place.

Delta semantics (https://learn.microsoft.com/graph/delta-query-overview):

 - A *round* is a chain of pages linked by ``@odata.nextLink``; its last page carries an
   ``@odata.deltaLink``, which is the cursor for the next round. The SDK's PageIterator follows
   nextLinks but drops the deltaLink, so the connector walks pages itself.
 - The first round lists every object; later rounds only objects that changed, each with all
   selected properties (a cleared one as ``null``), so a changed entry maps like a full one.
 - ``@removed: {"reason": "changed"}`` is a soft delete (restorable for 30 days from
   ``/directory/deletedItems``), ``"deleted"`` a permanent one. Both put the id in
   `Batch.deleted`: the engine deprovisions per the flow's policy (disable by default), and a
   restored user re-appears as an ordinary changed entry, which the engine re-enables.
 - Groups carry ``members@delta``: all members in the first round (a big group may appear in
   several objects of the round, each with a slice of its members and maybe no properties),
   then only added members and removed ones (marked ``@removed``). Each member names its
   ``@odata.type``: users become `Entry.members`, groups (``#microsoft.graph.group``, nested
   groups) `Entry.member_groups` -- or, in later rounds, ``member_groups_added`` /
   ``_removed`` -- which the engine flattens or keeps per flow (``nested``); devices,
   contacts and service principals are dropped.
 - A user's ``manager`` is a relationship: ``$select=manager`` tracks it, and it comes as a
   ``manager@delta`` annotation (a list holding the manager's id; an entry marked
   ``@removed`` when it was taken away). It becomes ``manager`` (the manager's object id) in
   `Entry.raw` and `Entry.attrs`; no annotation means no manager. Delta takes no ``$expand``;
   other reads (`find`) expand it (``$expand=manager($select=id)``). It is written through
   ``PUT``/``DELETE /users/{id}/manager/$ref`` (`writes.py`), never in a PATCH body.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from syncd.model import Entry, Kind, Value

CURSOR_PREFIX = "delta:"

#: Graph user properties syncd reads and writes by name (canonical keys on the target side).
USER_PROPERTIES = (
    "userPrincipalName", "displayName", "givenName", "surname", "mail", "jobTitle",
    "department", "employeeId", "accountEnabled", "mailNickname", "officeLocation",
    "mobilePhone", "companyName", "employeeType", "usageLocation", "city", "country",
    "state", "streetAddress", "postalCode", "preferredLanguage", "onPremisesImmutableId",
)  # fmt: skip
#: Readable only (never sent): listed so a source mapping's lower-cased names find them.
USER_READ_ONLY = ("id", "businessPhones", "createdDateTime", "userType")
#: User relationships syncd reads and writes as a reference (an object id), not a property.
MANAGER = "manager"
GROUP_PROPERTIES = ("displayName", "description", "mailNickname")
GROUP_READ_ONLY = ("id", "mail", "mailEnabled", "securityEnabled", "createdDateTime",
                   "groupTypes")
BOOLEAN = frozenset({"accountEnabled", "mailEnabled", "securityEnabled"})
#: Never selected nor kept (lower-case), whatever a mapping names or Graph sends: syncd
#: never reads passwords (`create_payload` only ever writes a random initial one).
SECRET_PROPERTIES = frozenset({"passwordprofile"})
#: syncd's engine manages enablement as the canonical ``active``; Graph calls it accountEnabled.
ACTIVE = "active"
#: Properties Graph filters only as an "advanced query" (ConsistencyLevel: eventual + $count).
ADVANCED_FILTER = frozenset({"employeeId", "department", "companyName", "employeeType",
                             "officeLocation", "mobilePhone", "city", "country", "state",
                             "postalCode", "onPremisesImmutableId"})
#: Graph reports this on a duplicate userPrincipalName (400, not 409).
DUPLICATE = "another object with the same value for property"
#: Error codes that mean "this delta token is no longer valid: start a new round".
RESYNC_CODES = frozenset({"syncstatenotfound", "resyncrequired", "syncstateinvalid",
                          "resync"})

_PROPS: dict[Kind, tuple[str, ...]] = {
    "user": USER_PROPERTIES + USER_READ_ONLY,
    "group": GROUP_PROPERTIES + GROUP_READ_ONLY,
}
_BY_LOWER: dict[Kind, dict[str, str]] = {k: {p.lower(): p for p in v} for k, v in _PROPS.items()}


def known_paths(kind: Kind) -> frozenset[str]:
    """Canonical attributes a flow may map *to* this connector, per kind."""
    if kind == "user":
        return frozenset(USER_PROPERTIES) | {ACTIVE, MANAGER}
    return frozenset(GROUP_PROPERTIES)


def graph_name(kind: Kind, name: str) -> str:
    """The Graph spelling of a (lower-cased) attribute; unknown names (extension attributes)
    pass through, and a dotted name selects its top-level property."""
    top = name.split(".", 1)[0]
    if kind == "user" and top.lower() == MANAGER:
        return MANAGER
    return _BY_LOWER[kind].get(top.lower(), top)


def select_for(kind: Kind, attributes: Sequence[str] | None) -> tuple[str, ...]:
    """``$select`` for a read: the requested attributes (all known when None), plus ``id``,
    plus ``members`` for groups (the engine needs memberships)."""
    names = ([*_PROPS[kind], *((MANAGER,) if kind == "user" else ())] if attributes is None
             else [graph_name(kind, a) for a in attributes])
    names = [n for n in names if n.lower() not in SECRET_PROPERTIES]
    out = ["id", *names] + (["members"] if kind == "group" else [])
    return tuple(dict.fromkeys(out))


def select_key(select: Iterable[str]) -> str:
    """A short fingerprint of a ``$select``: a delta token remembers the properties of the
    round that issued it, so a cursor is only reused for the same properties."""
    text = ",".join(sorted(s.lower() for s in select))
    return hashlib.blake2b(text.encode(), digest_size=4).hexdigest()


def make_cursor(delta_link: str, key: str) -> str:
    return f"{CURSOR_PREFIX}{key}:{delta_link}"


def parse_cursor(cursor: str, endpoint: str) -> tuple[str, str] | str:
    """``(select key, deltaLink)``, or why the cursor cannot be used (a string).

    The link must point at the configured endpoint: a state store copied between tenants or
    clouds must not send our token elsewhere.
    """
    if not cursor.startswith(CURSOR_PREFIX):
        return "not a Graph delta cursor"
    key, sep, url = cursor[len(CURSOR_PREFIX):].partition(":")
    if not sep or not url:
        return "malformed Graph delta cursor"
    want, got = urlsplit(endpoint), urlsplit(url)
    if (got.scheme, got.netloc.lower()) != (want.scheme, want.netloc.lower()):
        return "the cursor belongs to another endpoint"
    return key, url


def is_resync(status: int | None, code: str | None) -> bool:
    """An expired or unknown delta token: Graph answers 410 Gone (syncStateNotFound) or a
    400 with a resync code."""
    return status == 410 or (code or "").lower() in RESYNC_CODES


def raw_values(obj: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """Entry.raw: lower-cased property -> tuple of strings; booleans as "true"/"false",
    lists as several values, complex values flattened one level (``a.b``). Instance
    annotations (``@odata.*``, ``members@delta``) and nulls are left out.

    Hot at 20k users a round: plain strings take the first branch, names are lowered once.
    """
    out: dict[str, tuple[str, ...]] = {}
    lower = _LOWER
    for key, value in obj.items():
        name = lower.get(key)
        if name is None:
            lname = key.lower()
            name = lower[key] = "" if "@" in key or lname in SECRET_PROPERTIES else lname
        if not name:
            continue
        cls = type(value)
        if cls is str:
            if value:
                out[name] = (value,)
        elif cls is bool:
            out[name] = ("true",) if value else ("false",)
        elif cls is dict:
            for sub, v in value.items():
                vals = _strings(v)
                if vals:
                    out[f"{name}.{sub.lower()}"] = vals
        elif value is not None:
            vals = _strings(value)
            if vals:
                out[name] = vals
    return out


#: Property name -> lower-cased ("" for instance annotations); bounded by the schema.
_LOWER: dict[str, str] = {}


def _strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, bool):
        return ("true" if value else "false",)
    if isinstance(value, list):
        return tuple(s for v in value for s in _strings(v) if s)
    if isinstance(value, dict):
        return ()
    text = str(value)
    return (text,) if text else ()


def target_attrs(kind: Kind, obj: Mapping[str, Any]) -> dict[str, Value]:
    """Canonical attributes of an object read back from Graph (find, target listings):
    Graph property names, booleans as bool, plus ``active`` mirroring accountEnabled."""
    out: dict[str, Value] = {}
    if kind == "user":
        manager = manager_of(obj)
        if manager:
            out[MANAGER] = manager
    for name in known_paths(kind) - {ACTIVE, MANAGER}:
        value = obj.get(name)
        if value is None or value == "":
            continue
        out[name] = value if isinstance(value, bool) else str(value)
    if kind == "user" and isinstance(obj.get("accountEnabled"), bool):
        out[ACTIVE] = obj["accountEnabled"]
    return out


def label(obj: Mapping[str, Any]) -> str:
    return str(obj.get("userPrincipalName") or obj.get("displayName") or obj.get("id") or "")


_USER, _GROUP = "#microsoft.graph.user", "#microsoft.graph.group"


def member_changes(refs: Iterable[Mapping[str, Any]]
                   ) -> tuple[set[str], set[str], set[str], set[str]]:
    """(users added, users removed, groups added, groups removed) of a ``members@delta``
    list, by ``@odata.type`` (none: a user, as before types were sent); devices, contacts
    and service principals dropped."""
    out: dict[str, tuple[set[str], set[str]]] = {_USER: (set(), set()), _GROUP: (set(), set())}
    for ref in refs:
        sets = out.get(str(ref.get("@odata.type") or _USER).lower())
        if sets is None or not ref.get("id"):
            continue
        sets[1 if "@removed" in ref else 0].add(str(ref["id"]))
    return (*out[_USER], *out[_GROUP])


@dataclass
class _Group:
    obj: dict[str, Any] = field(default_factory=dict)
    added: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)
    groups_added: set[str] = field(default_factory=set)
    groups_removed: set[str] = field(default_factory=set)


class GroupRound:
    """Accumulates a round of group pages: one group may appear in several objects."""

    def __init__(self, full: bool) -> None:
        self.full = full
        self.groups: dict[str, _Group] = {}
        self.deleted: dict[str, None] = {}

    def add(self, items: Iterable[Mapping[str, Any]]) -> None:
        for item in items:
            gid = str(item.get("id") or "")
            if not gid:
                continue
            if "@removed" in item:
                self.groups.pop(gid, None)
                self.deleted[gid] = None
                continue
            self.deleted.pop(gid, None)
            g = self.groups.setdefault(gid, _Group())
            g.obj.update({k: v for k, v in item.items() if k != "members@delta"})
            added, removed, sub_added, sub_removed = member_changes(
                item.get("members@delta") or ())
            g.added = (g.added - removed) | added
            g.removed = (g.removed - added) | removed
            g.groups_added = (g.groups_added - sub_removed) | sub_added
            g.groups_removed = (g.groups_removed - sub_added) | sub_removed

    def entries(self, with_attrs: bool) -> list[Entry]:
        out: list[Entry] = []
        for gid, g in self.groups.items():
            attrs = target_attrs("group", g.obj) if with_attrs else {}
            common: dict[str, Any] = {"kind": "group", "external_id": gid,
                                      "raw": raw_values(g.obj), "attrs": attrs,
                                      "name": label(g.obj) or gid}
            if self.full:
                out.append(Entry(**common, members=frozenset(g.added),
                                 member_groups=frozenset(g.groups_added)))
            else:
                out.append(Entry(**common, members_added=frozenset(g.added),
                                 members_removed=frozenset(g.removed),
                                 member_groups_added=frozenset(g.groups_added),
                                 member_groups_removed=frozenset(g.groups_removed)))
        return out


def manager_of(obj: Mapping[str, Any]) -> str | None:
    """The manager's object id: from ``manager@delta`` (delta rounds: the entry not marked
    ``@removed``) or an expanded ``manager`` object (other reads); None: no manager."""
    refs = obj.get("manager@delta")
    if isinstance(refs, list):
        alive = [r for r in refs if isinstance(r, dict) and r.get("id") and "@removed" not in r]
        return str(alive[-1]["id"]) if alive else None
    expanded = obj.get(MANAGER)
    if isinstance(expanded, dict) and expanded.get("id"):
        return str(expanded["id"])
    return None


def user_entry(obj: Mapping[str, Any], with_attrs: bool) -> Entry:
    raw = raw_values(obj)
    for key in [k for k in raw if k == MANAGER or k.startswith(MANAGER + ".")]:
        del raw[key]  # an expanded manager object: only its id counts
    manager = manager_of(obj)
    if manager:
        raw[MANAGER] = (manager,)
    return Entry(kind="user", external_id=str(obj["id"]), raw=raw,
                 attrs=target_attrs("user", obj) if with_attrs else {}, name=label(obj))


# --- OData filters ---------------------------------------------------------------------------


def odata_literal(value: Value) -> str:
    """An OData literal: strings in single quotes with quotes doubled, booleans bare."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "'" + str(value).replace("'", "''") + "'"


def filter_for(kind: Kind, attribute: str, value: str) -> tuple[str, bool]:
    """``$filter`` for ``attribute eq value`` and whether it is an advanced query."""
    if attribute == "id":
        return f"id eq {odata_literal(value)}", False
    if attribute not in known_paths(kind) or attribute == MANAGER:
        known = ", ".join(sorted(known_paths(kind) - {MANAGER}))
        raise ValueError(f"cannot search Graph {kind}s by {attribute!r} (known: {known})")
    name = "accountEnabled" if attribute == ACTIVE else attribute
    literal: Value = value
    if name in BOOLEAN:
        literal = str(value).strip().lower() == "true"
    return f"{name} eq {odata_literal(literal)}", name in ADVANCED_FILTER


# --- write payloads --------------------------------------------------------------------------


def mail_nickname(text: str) -> str:
    """Graph's mailNickname: ASCII letters, digits and ``.-_``, max 64, never empty."""
    nick = re.sub(r"[^A-Za-z0-9._-]", "", text.split("@", 1)[0])[:64].strip(".")
    return nick or "syncd" + secrets.token_hex(4)


def random_password(length: int = 24) -> str:
    """A password meeting Entra's complexity rules (3 of 4 classes); never logged or stored."""
    alphabet = string.ascii_letters + string.digits + "!#%+-=?_"
    body = "".join(secrets.choice(alphabet) for _ in range(length - 4))
    return (secrets.choice(string.ascii_uppercase) + secrets.choice(string.ascii_lowercase)
            + secrets.choice(string.digits) + secrets.choice("!#%+-=?_") + body)


def _body(kind: Kind, attrs: Mapping[str, Value]) -> dict[str, Any]:
    known = known_paths(kind) - {MANAGER}
    out: dict[str, Any] = {}
    for name, value in attrs.items():
        if name not in known:
            raise ValueError(f"unknown Graph {kind} attribute {name!r} "
                             f"(known: {', '.join(sorted(known))})")
        key = "accountEnabled" if name == ACTIVE else name
        if value == "" or value is None:
            out[key] = None
        elif key in BOOLEAN:
            out[key] = value if isinstance(value, bool) else str(value).lower() == "true"
        elif isinstance(value, tuple):
            out[key] = value[0] if value else None
        else:
            out[key] = str(value)
    # An explicit accountEnabled in the mapping wins over the engine's implicit ``active``.
    if ACTIVE in attrs and "accountEnabled" in attrs:
        out["accountEnabled"] = _body(kind, {"accountEnabled": attrs["accountEnabled"]})[
            "accountEnabled"]
    return out


def create_payload(kind: Kind, attrs: Mapping[str, Value]) -> dict[str, Any]:
    """A POST body with what Graph requires, derived when the mapping does not provide it.

    Users need userPrincipalName (mapped: no sensible default), displayName (default: the
    UPN's local part), mailNickname (default: derived from the UPN), accountEnabled (default
    true) and a passwordProfile: syncd never syncs passwords (the link base would store it),
    so a random one is generated with forceChangePasswordNextSignIn; people sign in through
    SSPR, a Temporary Access Pass or federation. Groups are security groups
    (securityEnabled, not mailEnabled) with a mailNickname derived from the displayName.
    """
    body = {k: v for k, v in _body(kind, attrs).items() if v is not None}
    if kind == "user":
        upn = body.get("userPrincipalName")
        if not upn:
            raise ValueError("userPrincipalName is required to create a Graph user")
        body.setdefault("displayName", upn.split("@", 1)[0])
        body.setdefault("mailNickname", mail_nickname(upn))
        body.setdefault("accountEnabled", True)
        body["passwordProfile"] = {"password": random_password(),
                                   "forceChangePasswordNextSignIn": True}
        return body
    name = body.get("displayName")
    if not name:
        raise ValueError("displayName is required to create a Graph group")
    body.setdefault("mailNickname", mail_nickname(name))
    body.update(mailEnabled=False, securityEnabled=True)
    return body


def patch_payload(kind: Kind, changes: Mapping[str, Value]) -> dict[str, Any]:
    """A PATCH body with exactly these changes; None or "" clears (JSON null)."""
    return _body(kind, changes)
