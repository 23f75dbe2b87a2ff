"""Canonical attributes <-> SCIM JSON, both ways, in one table.

Canonical attributes are flattened SCIM paths (``name.givenName``, ``emails.work``,
``enterprise.department``). This module is pure (dicts in, dicts out) so it is testable
without a server; the connector validates the dicts with scim2-models before sending them.

Why a table and not scim2-models' own paths: canonical names must be stable across
connectors (LDAP and Graph map into the same names), and typed multi-valued attributes need
one canonical attribute per type, which SCIM expresses only through value filters.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from scim2_models import ResourceType, Schema

from syncd.model import Kind, Value

URN_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
URN_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
URN_ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
URN_PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

USER_SIMPLE = (
    "userName", "displayName", "title", "active", "externalId", "nickName",
    "preferredLanguage", "locale", "userType",
)  # fmt: skip
USER_NAME_PARTS = ("givenName", "familyName", "formatted")
#: Typed multi-valued attributes: the types we map, the first one is the primary/default type
#: (an untyped value read from a server is taken as that type).
TYPED: dict[str, tuple[str, ...]] = {
    "emails": ("work", "home"),
    "phoneNumbers": ("work", "mobile"),
}
ENTERPRISE = ("employeeNumber", "department", "costCenter", "organization", "division")
GROUP_SIMPLE = ("displayName", "externalId")
#: Resource type names per kind.
ENDPOINT: dict[Kind, str] = {"user": "User", "group": "Group"}

PathKind = Literal["simple", "sub", "typed", "enterprise"]


@dataclass(frozen=True)
class Path:
    """Where a canonical path lives in a SCIM resource."""

    canonical: str
    kind: PathKind
    attr: str  # top-level attribute (or the enterprise sub-attribute)
    sub: str = ""  # sub-attribute (name parts) or type (typed multi-valued)


def _user_paths() -> dict[str, Path]:
    paths = {a: Path(a, "simple", a) for a in USER_SIMPLE}
    paths.update({f"name.{p}": Path(f"name.{p}", "sub", "name", p) for p in USER_NAME_PARTS})
    for attr, types in TYPED.items():
        paths.update({f"{attr}.{t}": Path(f"{attr}.{t}", "typed", attr, t) for t in types})
    paths.update({f"enterprise.{a}": Path(f"enterprise.{a}", "enterprise", a) for a in ENTERPRISE})
    return paths


PATHS: dict[Kind, dict[str, Path]] = {
    "user": _user_paths(),
    "group": {a: Path(a, "simple", a) for a in GROUP_SIMPLE},
}


class UnknownPathError(ValueError):
    """A canonical path this connector does not map; the message names it."""


def known_paths(kind: Kind) -> frozenset[str]:
    return frozenset(PATHS[kind])


def lookup(kind: Kind, path: str) -> Path:
    try:
        return PATHS[kind][path]
    except KeyError:
        known = ", ".join(sorted(PATHS[kind]))
        raise UnknownPathError(f"unknown SCIM {kind} attribute {path!r} (known: {known})") from None


def check_paths(kind: Kind, paths: Iterable[str]) -> None:
    for p in paths:
        lookup(kind, p)


# --- canonical -> SCIM -----------------------------------------------------------------


def _typed_value(path: Path, value: str, typed: bool) -> dict[str, Any]:
    primary = path.sub == TYPED[path.attr][0]
    item: dict[str, Any] = {"value": value}
    if typed:
        item["type"] = path.sub
    if primary:
        item["primary"] = True
    return item


def to_resource(kind: Kind, attrs: Mapping[str, Value], typed: frozenset[str]) -> dict[str, Any]:
    """A creation payload. `typed` names the multi-valued attributes the server types."""
    out: dict[str, Any] = {"schemas": [URN_USER if kind == "user" else URN_GROUP]}
    multi: dict[str, list[dict[str, Any]]] = {}
    for name, value in attrs.items():
        if value is None or value == "":
            continue
        p = lookup(kind, name)
        if p.kind == "simple":
            out[p.attr] = value
        elif p.kind == "sub":
            out.setdefault(p.attr, {})[p.sub] = value
        elif p.kind == "typed":
            multi.setdefault(p.attr, []).append(_typed_value(p, str(value), p.attr in typed))
        else:
            out.setdefault(URN_ENTERPRISE, {})[p.attr] = value
    for attr, items in multi.items():
        # Primary (default type) first: single-valued servers keep only the first one.
        out[attr] = sorted(items, key=lambda i: not i.get("primary", False))
    if URN_ENTERPRISE in out:
        out["schemas"].append(URN_ENTERPRISE)
    return out


def patch_operations(
    kind: Kind, changes: Mapping[str, Value], typed: frozenset[str]
) -> list[dict[str, Any]]:
    """PATCH operations that change exactly these attributes (None = remove).

    Typed values, measured on both peer servers: replacing ``emails[type eq "work"].value``
    fails with 400 noTarget when no work address exists yet (scim2-server), and the
    ``add`` with that path too. ``remove emails[type eq "work"]`` + ``add emails [..]`` is
    accepted by both and is idempotent. A server whose schema has no ``type`` sub-attribute
    (django-scim2-server: one address only) ignores filtered removes, so there the whole
    attribute is replaced or removed.
    """
    ops: list[dict[str, Any]] = []
    for name, value in changes.items():
        p = lookup(kind, name)
        clear = value is None or value == ""
        if p.kind == "simple":
            target = p.attr
        elif p.kind == "sub":
            target = f"{p.attr}.{p.sub}"
        elif p.kind == "enterprise":
            target = f"{URN_ENTERPRISE}:{p.attr}"
        elif p.attr in typed:
            ops.append({"op": "remove", "path": f'{p.attr}[type eq "{p.sub}"]'})
            if not clear:
                ops.append(
                    {"op": "add", "path": p.attr, "value": [_typed_value(p, str(value), True)]}
                )
            continue
        else:
            if clear:
                ops.append({"op": "remove", "path": p.attr})
            else:
                item = _typed_value(p, str(value), False)
                ops.append({"op": "replace", "path": p.attr, "value": [item]})
            continue
        if clear:
            ops.append({"op": "remove", "path": target})
        else:
            ops.append({"op": "replace", "path": target, "value": value})
    return ops


def apply_changes(
    kind: Kind, resource: dict[str, Any], changes: Mapping[str, Value], typed: frozenset[str]
) -> dict[str, Any]:
    """The resource with these changes applied: the body of a PUT when PATCH is missing.

    Works on the server's own JSON so attributes we do not map survive the replace.
    """
    out = {k: v for k, v in resource.items() if k not in ("meta", "id")}
    for name, value in changes.items():
        p = lookup(kind, name)
        clear = value is None or value == ""
        if p.kind == "simple":
            _set(out, p.attr, None if clear else value)
        elif p.kind == "sub":
            _set(out.setdefault(p.attr, {}), p.sub, None if clear else value)
        elif p.kind == "enterprise":
            ext = out.setdefault(URN_ENTERPRISE, {})
            _set(ext, p.attr, None if clear else value)
            if URN_ENTERPRISE not in out.setdefault("schemas", []):
                out["schemas"].append(URN_ENTERPRISE)
        else:
            is_typed = p.attr in typed
            items = [
                i for i in out.get(p.attr) or [] if (i.get("type") != p.sub if is_typed else False)
            ]
            if not clear:
                items.insert(0, _typed_value(p, str(value), is_typed))
            _set(out, p.attr, items or None)
    return out


def _set(d: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        d.pop(key, None)
    else:
        d[key] = value


# --- SCIM -> canonical -----------------------------------------------------------------


def from_resource(kind: Kind, resource: Mapping[str, Any]) -> dict[str, Value]:
    """Canonical attributes of a resource as a server returned it.

    Empty strings count as absent (django-scim2-server answers ``""`` for a removed name).
    """
    out: dict[str, Value] = {}

    def put(name: str, value: Any) -> None:
        if value is None or value == "":
            return
        out[name] = value if isinstance(value, bool) else str(value)

    for name, p in PATHS[kind].items():
        if p.kind == "simple":
            put(name, resource.get(p.attr))
        elif p.kind == "sub":
            put(name, (resource.get(p.attr) or {}).get(p.sub))
        elif p.kind == "enterprise":
            put(name, (resource.get(URN_ENTERPRISE) or {}).get(p.attr))
    if kind == "user":
        for attr, types in TYPED.items():
            for t, v in typed_values(resource.get(attr) or [], types).items():
                put(f"{attr}.{t}", v)
    return out


def typed_values(items: list[dict[str, Any]], types: tuple[str, ...]) -> dict[str, str]:
    """One value per type; an untyped value (primary first) fills the default type."""
    found: dict[str, str] = {}
    untyped: list[dict[str, Any]] = []
    for item in items:
        t = item.get("type")
        if t is None:
            untyped.append(item)
        elif t in types and t not in found and item.get("value"):
            found[t] = str(item["value"])
    if types[0] not in found and untyped:
        best = sorted(untyped, key=lambda i: not i.get("primary", False))[0]
        if best.get("value"):
            found[types[0]] = str(best["value"])
    return found


# --- filters ---------------------------------------------------------------------------


def escape(value: str) -> str:
    """A SCIM filter comparison value: a JSON string literal (RFC 7644 §3.4.2.2).

    Quote and backslash alone are not enough: a raw TAB, CR, LF or NUL inside the literal is
    invalid JSON, and scim2-server answers 400 invalidFilter, which failed the lookup of that
    entry. `json.dumps` escapes every control character; non-ASCII text stays as it is.
    """
    return json.dumps(value, ensure_ascii=False)


def filter_for(kind: Kind, path: str, value: str) -> tuple[str, bool]:
    """A filter for ``path eq value`` and whether results must be checked client-side.

    Typed values are searched as ``emails.value eq`` (django-scim2-server supports no
    complex ``emails[type eq ..]`` filters) and the type is checked on the results.
    """
    p = lookup(kind, path)
    if p.kind == "simple":
        return f"{p.attr} eq {escape(value)}", False
    if p.kind == "sub":
        return f"{p.attr}.{p.sub} eq {escape(value)}", False
    if p.kind == "enterprise":
        return f"{URN_ENTERPRISE}:{p.attr} eq {escape(value)}", False
    return f"{p.attr}.value eq {escape(value)}", True


# --- what a server supports ------------------------------------------------------------


def unsupported_paths(
    kind: Kind,
    core: Mapping[str, frozenset[str]],
    enterprise: frozenset[str] | None,
) -> frozenset[str]:
    """Canonical paths a server cannot store, from its published schemas.

    `core` maps lower-cased attribute names of the core schema to their lower-cased
    sub-attribute names; `enterprise` is the enterprise extension's attributes, or None when
    the resource type does not offer the extension. A typed path other than the default type
    needs a ``type`` sub-attribute.
    """
    out: set[str] = set()
    for name, p in PATHS[kind].items():
        attr = p.attr.lower()
        if p.kind == "enterprise":
            ok = enterprise is not None and attr in enterprise
        elif p.kind == "simple":
            # externalId is a common attribute (RFC 7643 §3.1): schemas need not list it.
            ok = attr in core or attr == "externalid"
        elif p.kind == "sub":
            ok = attr in core and p.sub.lower() in core[attr]
        else:
            subs = core.get(attr)
            ok = (
                subs is not None
                and "value" in subs
                and ("type" in subs or p.sub == TYPED[p.attr][0])
            )
        if not ok:
            out.add(name)
    return frozenset(out)


def typed_attributes(core: Mapping[str, frozenset[str]]) -> frozenset[str]:
    """Multi-valued attributes whose values carry a ``type`` on this server."""
    return frozenset(a for a in TYPED if "type" in core.get(a.lower(), frozenset()))


def schema_attributes(schema: Schema | None) -> dict[str, frozenset[str]]:
    """Lower-cased attribute -> lower-cased sub-attributes of a published schema."""
    if schema is None:
        return {}
    return {
        str(a.name).lower(): frozenset(str(s.name).lower() for s in a.sub_attributes or [])
        for a in schema.attributes or []
        if a.name
    }


def server_support(
    resource_types: Iterable[ResourceType], schemas: Iterable[Schema]
) -> tuple[dict[Kind, frozenset[str]], frozenset[str]]:
    """From /ResourceTypes and /Schemas: unsupported paths per kind, and typed attributes."""
    by_id = {s.id: s for s in schemas}
    rts = list(resource_types)
    unsupported: dict[Kind, frozenset[str]] = {}
    typed: frozenset[str] = frozenset()
    for kind, endpoint in ENDPOINT.items():
        rt = next((r for r in rts if r.name == endpoint or r.id == endpoint), None)
        core = schema_attributes(by_id.get(rt.schema_) if rt else None)
        exts = {str(e.schema_) for e in (rt.schema_extensions or [])} if rt else set()
        enterprise = None
        if URN_ENTERPRISE in exts:
            enterprise = frozenset(schema_attributes(by_id.get(URN_ENTERPRISE)))
        unsupported[kind] = unsupported_paths(kind, core, enterprise)
        if kind == "user":
            typed = typed_attributes(core)
    return unsupported, typed


def shape(value: Any) -> Hashable:
    """The structure of a SCIM body: keys, value types and emptiness, never the values.

    Two bodies of one shape validate alike against scim2-models (the connector skips the
    validation of a shape that passed unchanged once, see `ScimConnector._payload`)."""
    if isinstance(value, dict):
        return tuple(sorted((k, shape(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("[]", *(shape(v) for v in value))
    return type(value).__name__, not value
