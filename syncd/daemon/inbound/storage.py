"""scim2-server's storage interface over the received directory (`syncd.state.inbox`).

scim2-server does the protocol (routing, validation with scim2-models, PATCH and PUT
semantics, filters' meaning, projections, ETags, errors); this class only stores and finds.
Every write is one committed transaction of the state store before it returns, so the client
is answered only once its change is durable.

Searching: an ``eq`` on ``id``, ``externalId``, ``userName`` (users) or ``displayName``
(groups), alone or as a branch of an ``and``, narrows the candidates through an index; the
filter itself is then evaluated by scim2-models on each candidate, so what matches is what
RFC 7644 says, whatever the filter (``or``, ``co``, ``pr``, complex paths).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any, cast

from scim2_models import (
    InvalidValueException,
    Meta,
    NotFoundException,
    PreconditionFailedException,
    Resource,
    ResourceType,
    ResponseParameters,
    SearchRequest,
    UniquenessException,
)
from scim2_models.path import CompareOperator, Comparison, LogicalExpr, LogicalOperator
from scim2_server.storage import ScimStorage, SearchPage

from syncd.model import Kind
from syncd.state.inbox import (
    Inbox,
    InboxConflict,
    InboxNotFound,
    InboxVersionMismatch,
    Member,
    Record,
)

#: (kind, id, body as stored) -> why the flows reading the directory would refuse it, or None.
Refusal = Callable[..., str | None]  # (kind, id, body, *, create) -> why, or None

#: Filter attribute (lower case) -> (inbox column, lower-case the value?) per kind.
_INDEXED: dict[Kind, dict[str, tuple[str, bool]]] = {
    "user": {"id": ("id", False), "externalid": ("external_id", False),
             "username": ("name_key", True)},
    "group": {"id": ("id", False), "externalid": ("external_id", False),
              "displayname": ("name_key", True)},
}


def kind_of(resource_type: ResourceType) -> Kind:
    return "group" if resource_type.name == "Group" else "user"


def version_tag(version: int) -> str:
    return f'W/"{version}"'


def parse_tag(tag: str | None) -> int | None:
    if tag is None:
        return None
    try:
        return int(tag.removeprefix("W/").strip('"'))
    except ValueError:
        return -1  # matches no stored version: 412


class InboxStorage(ScimStorage):
    """Users and Groups of one received directory. `models` maps resource type names to the
    scim2-models classes the provider serves (User with its extensions, Group)."""

    def __init__(self, inbox: Inbox, models: dict[str, type[Resource[Any]]], *,
                 refuse: Refusal | None = None) -> None:
        self.inbox = inbox
        self.models = models
        #: Why a resource would certainly be refused by a flow reading the directory
        #: (`syncd.daemon.inbound.refusal`): checked before it is stored, answered with a 400.
        self.refuse = refuse

    # -- conversions ----------------------------------------------------------------------
    def resource(self, resource_type: ResourceType, rec: Record) -> Resource[Any]:
        doc: dict[str, Any] = dict(rec.body)
        doc["id"] = rec.id
        if rec.members:
            doc["members"] = [_member_json(m) for m in rec.members]
        doc["meta"] = Meta(resource_type=resource_type.name, created=rec.created,
                           last_modified=rec.modified, version=version_tag(rec.version))
        return self.models[cast(str, resource_type.name)].model_validate(doc)

    @staticmethod
    def _parts(resource: Resource[Any]) -> tuple[dict[str, Any], list[Member] | None]:
        body = resource.model_dump()
        members = body.pop("members", None)
        body.pop("meta", None)
        body.pop("id", None)
        if members is None:
            return body, None
        return body, [Member(str(m["value"]), m.get("type"), m.get("display")) for m in members
                      if m.get("value") is not None]

    def _check(self, kind: Kind, rid: str, body: dict[str, Any], *,
               create: bool = False) -> None:
        why = self.refuse(kind, rid, body, create=create) if self.refuse is not None else None
        if why is not None:
            raise InvalidValueException(detail=why)

    # -- the ScimStorage interface ----------------------------------------------------------
    def get(self, resource_type: ResourceType, resource_id: str, *,
            response_parameters: ResponseParameters[Any] | None = None) -> Resource[Any]:
        members = not _excludes_members(response_parameters)
        try:
            rec = self.inbox.get(kind_of(resource_type), resource_id, members=members)
        except InboxNotFound:
            raise NotFoundException(
                detail=f"{resource_type.name} {resource_id!r} not found") from None
        return self.resource(resource_type, rec)

    def create(self, resource_type: ResourceType, resource: Resource[Any]) -> Resource[Any]:
        body, members = self._parts(resource)
        kind, rid = kind_of(resource_type), uuid.uuid4().hex
        self._check(kind, rid, body, create=True)
        try:
            rec = self.inbox.create(kind, rid, body, members)
        except InboxConflict as exc:
            raise UniquenessException(detail=str(exc)) from None
        return self.resource(resource_type, rec)

    def update(self, resource_type: ResourceType, resource: Resource[Any], *,
               expected_version: str | None = None) -> Resource[Any]:
        body, members = self._parts(resource)
        kind = kind_of(resource_type)
        self._check(kind, cast(str, resource.id), body)
        try:
            rec = self.inbox.replace(kind, cast(str, resource.id), body,
                                     members if members is not None else
                                     ([] if kind == "group" else None),
                                     expected_version=parse_tag(expected_version))
        except InboxNotFound:
            raise NotFoundException(detail=f"{resource_type.name} not found") from None
        except InboxVersionMismatch:
            raise PreconditionFailedException() from None
        except InboxConflict as exc:
            raise UniquenessException(detail=str(exc)) from None
        return self.resource(resource_type, rec)

    def delete(self, resource_type: ResourceType, resource_id: str, *,
               expected_version: str | None = None) -> None:
        try:
            self.inbox.delete(kind_of(resource_type), resource_id,
                              expected_version=parse_tag(expected_version))
        except InboxNotFound:
            raise NotFoundException(
                detail=f"{resource_type.name} {resource_id!r} not found") from None
        except InboxVersionMismatch:
            raise PreconditionFailedException() from None

    def search(self, resource_types: list[ResourceType], search_request: SearchRequest[Any],
               *, position: Any = None) -> SearchPage:
        scim_filter = search_request.filter
        found: list[Resource[Any]] = []
        for rt in resource_types:
            for rec in self._candidates(rt, scim_filter):
                res = self.resource(rt, rec)
                if scim_filter is None or _matches(scim_filter, res):
                    found.append(res)
        if search_request.sort_by is not None:
            def key(r: Resource[Any]) -> tuple[bool, Any, str]:
                value = search_request.sort_value(r)
                return value is None, value if value is not None else "", cast(str, r.id)
            found.sort(key=key, reverse=search_request.sort_order
                       == SearchRequest.SortOrder.descending)
        start = search_request.start_index_0 or 0
        stop = None if search_request.count is None else start + search_request.count
        return SearchPage(len(found), found[start:stop])

    def _candidates(self, rt: ResourceType, scim_filter: Any) -> Iterator[Record]:
        kind = kind_of(rt)
        hit = _indexed_eq(scim_filter.ast if scim_filter is not None else None, kind)
        if hit is not None:
            column, value = hit
            yield from self.inbox.find(kind, column, value)
            return
        for page in self.inbox.all(kind):
            yield from page


def _member_json(m: Member) -> dict[str, Any]:
    out: dict[str, Any] = {"value": m.value,
                           "$ref": f"{'Groups' if m.type == 'Group' else 'Users'}/{m.value}"}
    if m.type:
        out["type"] = m.type
    if m.display:
        out["display"] = m.display
    return out


def _matches(scim_filter: Any, resource: Resource[Any]) -> bool:
    try:
        return bool(scim_filter.match(resource))
    except (TypeError, ValueError):
        return False


def _indexed_eq(node: Any, kind: Kind) -> tuple[str, str] | None:
    """(column, value) of an indexed ``eq`` the whole filter requires, if there is one."""
    if isinstance(node, Comparison):
        if node.op != CompareOperator.eq or not isinstance(node.value, str):
            return None
        attr = str(node.attr_path).rpartition(":")[2].lower()
        spec = _INDEXED[kind].get(attr)
        if spec is None:
            return None
        column, lower = spec
        return column, node.value.lower() if lower else node.value
    if isinstance(node, LogicalExpr) and node.op == LogicalOperator.and_:
        for child in node.terms:
            got = _indexed_eq(child, kind)
            if got is not None:
                return got
    return None


def _excludes_members(params: ResponseParameters[Any] | None) -> bool:
    if params is None:
        return False
    excluded = getattr(params, "excluded_attributes", None) or []
    return any(str(p).rpartition(":")[2].lower() == "members" for p in excluded)
