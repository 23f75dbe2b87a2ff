"""A stateful local fake of Microsoft Graph v1.0 users/groups (a WSGI app), for tests and benches.

No Graph is reachable from the test machines and no open-source emulator covers users/groups
delta, so this fake reproduces the documented behaviour the connector depends on (PEERS.md):

 - ``GET /users/delta()`` and ``/groups/delta()`` (with parentheses, as msgraph-sdk calls them):
   rounds paged through *absolute* ``@odata.nextLink`` URLs carrying ``$skiptoken`` and ending in
   an ``@odata.deltaLink`` with ``$deltatoken``; ``$deltatoken=latest`` returns just a deltaLink;
   page size from ``Prefer: odata.maxpagesize=N``; ``$select`` (case-insensitive, unknown
   property -> 400), remembered by the tokens as Graph does (links do not repeat it).
 - Later rounds return only what changed since the token: changed objects with their selected
   properties (a cleared property as ``null``), ``@removed: {"reason": "changed"}`` for a soft
   delete (restorable from ``/directory/deletedItems``) and ``{"reason": "deleted"}`` for a
   permanent one; groups carry ``members@delta`` (full list in the first round, split over several
   occurrences of a big group as Graph does; later only added members and removed ones with
   ``@removed``), each member with its ``@odata.type`` (``#microsoft.graph.user`` or
   ``#microsoft.graph.group``: a group can be a member of a group, added through the same
   ``members/$ref``). Soft-deleting a user drops its memberships; restoring brings them back;
   a deleted group leaves the groups holding it (a removal in their ``members@delta``).
 - A user's ``manager`` (a relationship, not a property): ``PUT``/``DELETE
   /users/{id}/manager/$ref`` (``{"@odata.id": ".../users/{managerId}"}``; the manager must
   exist; DELETE of no manager -> 404), ``GET /users/{id}/manager``, ``$expand=manager`` on
   user reads (not on delta: ``$expand`` is not supported there, 400), ``$select=manager`` on
   delta: a ``manager@delta`` annotation with the manager's id (an entry with ``@removed``
   when it was taken away since the token). A deleted user stops being anyone's manager.
 - An expired token -> ``410`` with an OData ``syncStateNotFound`` error body.
 - CRUD on /users and /groups with Graph's required properties, ``$filter`` eq (single quotes
   doubled), ``members/$ref`` add/remove, ``members@odata.bind`` (max 20) on PATCH, OData error
   bodies, optional static bearer token (401 ``InvalidAuthenticationToken``).

A control API under ``/_fake`` (no auth) drives what tests need: ``reset``, ``seed``,
``expire`` (every issued delta token expires), ``fault`` (the next N requests matching a path
substring answer ``status`` with ``Retry-After``), ``requests`` (the request log with
timestamps) and ``state`` (a dump). All state is in memory behind one lock.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
import uuid
from typing import Any

PREFIX = "/v1.0"
USER_PROPS = (
    "id", "userPrincipalName", "displayName", "givenName", "surname", "mail", "jobTitle",
    "department", "employeeId", "accountEnabled", "mailNickname", "officeLocation",
    "mobilePhone", "businessPhones", "companyName", "employeeType", "usageLocation", "city",
    "country", "state", "streetAddress", "postalCode", "preferredLanguage",
    "onPremisesImmutableId", "createdDateTime", "userType",
)  # fmt: skip
GROUP_PROPS = (
    "id", "displayName", "description", "mailNickname", "mail", "mailEnabled",
    "securityEnabled", "groupTypes", "createdDateTime",
)  # fmt: skip
PROPS = {"users": USER_PROPS, "groups": GROUP_PROPS}
REQUIRED = {
    "users": ("accountEnabled", "displayName", "mailNickname", "userPrincipalName"),
    "groups": ("displayName", "mailEnabled", "mailNickname", "securityEnabled"),
}
FILTERABLE = {"id", "userPrincipalName", "displayName", "mail", "mailNickname", "employeeId"}
#: members per occurrence of a group in a full round (big groups appear several times)
MEMBER_CHUNK = 20
DEFAULT_PAGE = 100
_FILTER = re.compile(r"^\s*(\w+)\s+eq\s+(?:'((?:[^']|'')*)'|(true|false))\s*$")


class GraphError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class FakeGraph:
    """The directory and its change log; every public method runs under `lock`."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        self.seq = 0
        self.objs: dict[str, dict[str, dict[str, Any]]] = {"users": {}, "groups": {}}
        self.members: dict[str, set[str]] = {}
        #: user id -> its manager's id; and the manager taken away since: id -> (seq, old)
        self.managers: dict[str, str] = {}
        self.unmanaged: dict[str, tuple[int, str]] = {}
        self.passwords: dict[str, str] = {}
        self.trash: dict[str, tuple[dict[str, Any], set[str]]] = {}  # soft-deleted users
        self.changed: dict[str, int] = {}  # id -> seq of its last change
        self.cleared: dict[str, dict[str, int]] = {}  # id -> property -> seq it became null
        self.removed: dict[str, tuple[int, str, str]] = {}  # id -> (seq, collection, reason)
        self.member_log: list[tuple[int, str, str, bool]] = []  # seq, group, user, added
        self.tokens: dict[str, tuple[str, int, tuple[str, ...]]] = {}
        self.rounds: dict[str, tuple[str, list[dict[str, Any]], int, tuple[str, ...]]] = {}
        self.faults: list[dict[str, Any]] = []
        self.log: list[dict[str, Any]] = []

    # -- changes -----------------------------------------------------------------------
    def _tick(self, oid: str) -> int:
        self.seq += 1
        self.changed[oid] = self.seq
        return self.seq

    def _member(self, gid: str, uid: str, added: bool) -> None:
        (self.members[gid].add if added else self.members[gid].discard)(uid)
        self.seq += 1
        self.member_log.append((self.seq, gid, uid, added))

    def _find(self, coll: str, oid: str) -> dict[str, Any]:
        obj = self.objs[coll].get(oid)
        if obj is None:
            raise GraphError(404, "Request_ResourceNotFound",
                             f"Resource '{oid}' does not exist or one of its queried reference-"
                             f"property objects are not present.")
        return obj

    def _set(self, coll: str, oid: str, body: dict[str, Any], create: bool) -> None:
        obj = self.objs[coll].get(oid, {"id": oid})
        for key, value in body.items():
            if key == "passwordProfile":
                if not isinstance(value, dict) or (create and not value.get("password")):
                    raise GraphError(400, "Request_BadRequest", "Invalid value specified for "
                                     "property 'passwordProfile' of resource 'User'.")
                self.passwords[oid] = str(value.get("password") or self.passwords.get(oid, ""))
                continue
            if key == "members@odata.bind" and coll == "groups":
                continue
            if key not in PROPS[coll] or key in ("id", "createdDateTime"):
                raise GraphError(400, "Request_BadRequest", f"Property '{key}' does not exist "
                                 f"on type 'microsoft.graph.{coll[:-1]}'.")
            if key == "userPrincipalName" and any(
                    str(u.get(key, "")).lower() == str(value).lower() and uid != oid
                    for uid, u in self.objs["users"].items()):
                raise GraphError(400, "Request_BadRequest", "Another object with the same "
                                 "value for property userPrincipalName already exists.")
            if key in ("accountEnabled", "mailEnabled", "securityEnabled") and not isinstance(
                    value, bool):
                raise GraphError(400, "Request_BadRequest",
                                 f"Invalid value specified for property '{key}'.")
            if value is None:
                if obj.pop(key, None) is not None:
                    self.cleared.setdefault(oid, {})[key] = self.seq + 1
            else:
                obj[key] = value
        if create:
            missing = [k for k in REQUIRED[coll] if k not in obj]
            if coll == "users" and oid not in self.passwords:
                missing.append("passwordProfile")
            if missing:
                raise GraphError(400, "Request_BadRequest",
                                 f"Property '{missing[0]}' is required but was not provided.")
            obj["createdDateTime"] = _now()
            self.objs[coll][oid] = obj
            if coll == "groups":
                self.members[oid] = set()
        self._tick(oid)

    def _bind(self, gid: str, refs: list[str], limit: int | None = None) -> None:
        if limit is not None and len(refs) > limit:
            raise GraphError(400, "Request_BadRequest", f"The request has {len(refs)} "
                             f"references; at most {limit} are allowed in one request.")
        uids = [ref.rstrip("/").rsplit("/", 1)[-1] for ref in refs]
        for uid in uids:
            if uid not in self.objs["users"] and uid not in self.objs["groups"]:
                raise GraphError(404, "Request_ResourceNotFound",
                                 f"Resource '{uid}' does not exist or one of its queried "
                                 f"reference-property objects are not present.")
            if uid in self.members[gid]:
                raise GraphError(400, "Request_BadRequest", "One or more added object "
                                 "references already exist for the following modified "
                                 "properties: 'members'.")
        for uid in uids:
            self._member(gid, uid, True)

    def create(self, coll: str, body: dict[str, Any]) -> dict[str, Any]:
        oid = str(uuid.uuid4())
        self._set(coll, oid, body, create=True)
        if coll == "groups" and body.get("members@odata.bind"):
            self._bind(oid, list(body["members@odata.bind"]), 20)
        return self.render(coll, self.objs[coll][oid], None)

    def update(self, coll: str, oid: str, body: dict[str, Any]) -> None:
        self._find(coll, oid)
        self._set(coll, oid, body, create=False)
        if coll == "groups" and "members@odata.bind" in body:
            self._bind(oid, list(body["members@odata.bind"]), 20)

    def delete(self, coll: str, oid: str) -> None:
        obj = self._find(coll, oid)
        del self.objs[coll][oid]
        if coll == "users":  # soft delete: restorable, memberships remembered
            for report in [u for u, m in self.managers.items() if m == oid]:
                self.set_manager(report, None)
            self.managers.pop(oid, None)
            groups = {g for g, m in self.members.items() if oid in m}
            for gid in groups:
                self._member(gid, oid, False)
            self.trash[oid] = (obj, groups)
            self.removed[oid] = (self._tick(oid), coll, "changed")
        else:  # security groups are deleted permanently, and leave the groups holding them
            del self.members[oid]
            self.removed[oid] = (self._tick(oid), coll, "deleted")
            for gid in [g for g, m in self.members.items() if oid in m]:
                self._member(gid, oid, False)

    def set_manager(self, oid: str, ref: str | None) -> None:
        """PUT (a reference URL) or DELETE (None) of ``/users/{oid}/manager/$ref``."""
        self._find("users", oid)
        if ref is None:
            old = self.managers.pop(oid, None)
            if old is None:
                raise GraphError(404, "Request_ResourceNotFound", "Resource 'manager' does not "
                                 "exist or one of its queried reference-property objects are "
                                 "not present.")
            self.unmanaged[oid] = (self._tick(oid), old)
            return
        mid = ref.rstrip("/").rsplit("/", 1)[-1]
        if mid not in self.objs["users"]:
            raise GraphError(404, "Request_ResourceNotFound", f"Resource '{mid}' does not exist "
                             f"or one of its queried reference-property objects are not present.")
        if mid == oid:
            raise GraphError(400, "Request_BadRequest", "A user cannot be their own manager.")
        self.managers[oid] = mid
        self.unmanaged.pop(oid, None)
        self._tick(oid)

    def manager(self, oid: str) -> dict[str, Any]:
        self._find("users", oid)
        mid = self.managers.get(oid)
        if mid is None:
            raise GraphError(404, "Request_ResourceNotFound", "Resource 'manager' does not exist "
                             "or one of its queried reference-property objects are not present.")
        return {"@odata.type": "#microsoft.graph.user", **self.render("users", self.objs[
            "users"][mid], None)}

    def restore(self, oid: str) -> dict[str, Any]:
        if oid not in self.trash:
            raise GraphError(404, "Request_ResourceNotFound", f"Resource '{oid}' does not exist.")
        obj, groups = self.trash.pop(oid)
        self.objs["users"][oid] = obj
        self.removed.pop(oid, None)
        self._tick(oid)
        for gid in groups & set(self.members):
            self._member(gid, oid, True)
        return self.render("users", obj, None)

    def purge(self, oid: str) -> None:
        if self.trash.pop(oid, None) is None:
            raise GraphError(404, "Request_ResourceNotFound", f"Resource '{oid}' does not exist.")
        self.removed[oid] = (self._tick(oid), "users", "deleted")

    # -- reads -------------------------------------------------------------------------
    def select(self, coll: str, raw: str | None) -> tuple[str, ...]:
        if not raw:
            return PROPS[coll] + (("members",) if coll == "groups" else ())
        rel = ("members",) if coll == "groups" else ("manager",)
        by_lower = {p.lower(): p for p in PROPS[coll] + rel}
        out = ["id"]
        for name in raw.split(","):
            prop = by_lower.get(name.strip().lower())
            if prop is None:
                raise GraphError(400, "Request_BadRequest", f"Could not find a property named "
                                 f"'{name.strip()}' on type 'microsoft.graph.{coll[:-1]}'.")
            if prop not in out:
                out.append(prop)
        return tuple(out)

    def render(self, coll: str, obj: dict[str, Any], select: tuple[str, ...] | None,
               since: int | None = None, expand: str | None = None) -> dict[str, Any]:
        props = select or PROPS[coll]
        out = {p: obj[p] for p in props if p in obj}
        if expand == "manager" and coll == "users" and obj["id"] in self.managers:
            out["manager"] = self._ref(self.managers[obj["id"]])
        if since is not None:  # properties cleared since the token come back as null
            for p, at in self.cleared.get(obj["id"], {}).items():
                if at > since and p in props and p not in obj:
                    out[p] = None
        return out

    def matches(self, coll: str, expr: str | None) -> list[dict[str, Any]]:
        objs = list(self.objs[coll].values())
        if not expr:
            return objs
        m = _FILTER.match(expr)
        by_lower = {p.lower(): p for p in PROPS[coll]}
        prop = by_lower.get(m.group(1).lower()) if m else None
        if m is None or prop is None or (prop not in FILTERABLE and prop != "accountEnabled"):
            raise GraphError(400, "Request_UnsupportedQuery",
                             f"Unsupported or invalid query filter clause specified: '{expr}'.")
        if m.group(3) is not None:
            return [o for o in objs if o.get(prop) is (m.group(3) == "true")]
        value = m.group(2).replace("''", "'").lower()
        return [o for o in objs if str(o.get(prop, "")).lower() == value and prop in o]

    def delta_items(self, coll: str, since: int | None, select: tuple[str, ...]
                    ) -> list[dict[str, Any]]:
        with_members = coll == "groups" and "members" in select
        with_manager = coll == "users" and "manager" in select
        props = tuple(p for p in select if p not in ("members", "manager"))
        items: list[dict[str, Any]] = []
        if since is None:
            for obj in self.objs[coll].values():
                item = self.render(coll, obj, props)
                if with_manager and obj["id"] in self.managers:
                    item["manager@delta"] = [self._ref(self.managers[obj["id"]])]
                if not with_members:
                    items.append(item)
                    continue
                refs = sorted(self.members[obj["id"]])
                chunks = [refs[i:i + MEMBER_CHUNK] for i in range(0, len(refs), MEMBER_CHUNK)]
                for n, chunk in enumerate(chunks or [[]]):
                    entry = item if n == 0 else {"id": obj["id"]}
                    entry["members@delta"] = [self._ref(u) for u in chunk]
                    items.append(entry)
            return items
        deltas: dict[str, dict[str, bool]] = {}
        if with_members:
            for seq, gid, uid, added in self.member_log:
                if seq > since and gid in self.objs[coll]:
                    deltas.setdefault(gid, {})[uid] = added
        ids = [i for i, s in self.changed.items() if s > since] + list(deltas)
        for oid in dict.fromkeys(ids):
            cur = self.objs[coll].get(oid)
            if cur is not None:
                item = self.render(coll, cur, props, since)
                if with_manager and oid in self.managers:
                    item["manager@delta"] = [self._ref(self.managers[oid])]
                elif with_manager and self.unmanaged.get(oid, (0, ""))[0] > since:
                    item["manager@delta"] = [self._ref(self.unmanaged[oid][1])
                                             | {"@removed": {"reason": "deleted"}}]
                if oid in deltas:
                    item["members@delta"] = [
                        self._ref(u) | ({} if added else {"@removed": {"reason": "deleted"}})
                        for u, added in deltas[oid].items()]
                items.append(item)
            elif oid in self.removed and self.removed[oid][1] == coll:
                items.append({"id": oid, "@removed": {"reason": self.removed[oid][2]}})
        return items

    def _ref(self, oid: str) -> dict[str, Any]:
        """A member as delta lists it: ``@odata.type`` says a user from a (nested) group."""
        gone = self.removed.get(oid)
        kind = "group" if oid in self.objs["groups"] or (gone and gone[1] == "groups") \
            else "user"
        return {"@odata.type": f"#microsoft.graph.{kind}", "id": oid}

    def delta(self, coll: str, q: dict[str, str], page_size: int, base: str) -> dict[str, Any]:
        link = f"{base}/{coll}/delta()"
        if "$skiptoken" in q:
            rid, _, offset = q["$skiptoken"].partition(".")
            if rid not in self.rounds:
                raise _expired()
            _kind, items, end, select = self.rounds[rid]
            start = int(offset or 0)
        elif "$deltatoken" in q:
            token = q["$deltatoken"]
            select = self.select(coll, q.get("$select"))
            if token == "latest":
                return {"value": [], "@odata.deltaLink": f"{link}?$deltatoken="
                        f"{self._token(coll, self.seq, select)}"}
            if token not in self.tokens or self.tokens[token][0] != coll:
                raise _expired()
            _, since, select = self.tokens[token]
            rid, start = secrets.token_hex(8), 0
            items = self.delta_items(coll, since, select)
            self.rounds[rid] = (coll, items, self.seq, select)
        else:
            select = self.select(coll, q.get("$select"))
            rid, start = secrets.token_hex(8), 0
            self.rounds[rid] = (coll, self.delta_items(coll, None, select), self.seq, select)
        _, items, end, select = self.rounds[rid]
        page = items[start:start + page_size]
        body: dict[str, Any] = {"@odata.context": f"{base}/$metadata#{coll}", "value": page}
        if start + page_size < len(items):
            body["@odata.nextLink"] = f"{link}?$skiptoken={rid}.{start + page_size}"
        else:
            del self.rounds[rid]
            body["@odata.deltaLink"] = f"{link}?$deltatoken={self._token(coll, end, select)}"
        return body

    def _token(self, coll: str, seq: int, select: tuple[str, ...]) -> str:
        token = secrets.token_urlsafe(24)
        self.tokens[token] = (coll, seq, select)
        return token

    def dump(self) -> dict[str, Any]:
        return {"users": self.objs["users"],
                "groups": {g: {**o, "members": sorted(self.members[g])}
                           for g, o in self.objs["groups"].items()},
                "deleted": sorted(self.trash), "passwords": sorted(self.passwords),
                "managers": dict(self.managers)}

    def seed(self, users: int, groups: int = 0, members: int = 0) -> dict[str, list[str]]:
        uids: list[str] = []
        for i in range(users):
            n = len(self.objs["users"]) + 1
            uid = str(uuid.UUID(int=n))
            self.objs["users"][uid] = {
                "id": uid, "userPrincipalName": f"user{n:06d}@contoso.example.com",
                "displayName": f"User {n}", "givenName": "User", "surname": f"N{n}",
                "mail": f"user{n:06d}@contoso.example.com", "jobTitle": f"Title {i % 7}",
                "department": f"Dept {i % 5}", "employeeId": f"{100000 + n}",
                "accountEnabled": True, "mailNickname": f"user{n:06d}",
                "createdDateTime": _now()}
            self.passwords[uid] = "seeded"
            self._tick(uid)
            uids.append(uid)
        gids: list[str] = []
        for j in range(groups):
            gid = self.create("groups", {"displayName": f"Group {j}", "mailEnabled": False,
                                         "securityEnabled": True, "mailNickname": f"g{j}"})["id"]
            for uid in uids[j:j + members]:
                self._member(gid, uid, True)
            gids.append(gid)
        return {"users": uids, "groups": gids}


def _expired() -> GraphError:
    return GraphError(410, "syncStateNotFound", "The sync state generation is not found. The "
                      "delta token is expired or invalid; restart the delta round.")
