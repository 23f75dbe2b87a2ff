"""Canonical attributes <-> SCIM JSON, both ways, for what the server declares.

Canonical attributes are flattened SCIM paths (``name.givenName``, ``emails.work``,
``enterprise.department``, ``urn:…:acme:2.0:User:costCenter``); `schemas` says where each
lives in a resource and of which type its values are, `values` converts them. This module is
pure (dicts in, dicts out) so it is testable without a server; the connector validates the
dicts with scim2-models before sending them.

Why not scim2-models' own paths: canonical names must be stable across connectors (LDAP and
Graph map into the same names), and typed multi-valued attributes need one canonical
attribute per type, which SCIM expresses only through value filters.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

from syncd.model import Kind, Value
from syncd_connectors.scim.declarations import standard
from syncd_connectors.scim.schemas import (
    ENDPOINT,
    ITEM_META,
    URN_ENTERPRISE,
    URN_GROUP,
    URN_USER,
    Declared,
    Path,
    UnknownPathError,
    spellings,
)
from syncd_connectors.scim.values import PathValueError, from_json, to_json

__all__ = ["ENDPOINT", "URN_ENTERPRISE", "URN_GROUP", "URN_USER", "PathValueError",
           "UnknownPathError"]
URN_PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def known_paths(kind: Kind) -> frozenset[str]:
    """The paths RFC 7643 declares (typed ones: with their canonical types)."""
    return frozenset(spellings(standard(kind)))


def check_paths(decl: Declared, paths: Iterable[str]) -> None:
    """`UnknownPathError` naming the first path that cannot be mapped here, and why."""
    for p in paths:
        why = decl.problem(p)
        if why is not None:
            raise UnknownPathError(why)


def unsupported_paths(decl: Declared, kind: Kind) -> frozenset[str]:
    """The standard paths this server cannot store (its /Schemas does not declare them)."""
    return frozenset(p for p in known_paths(kind) if decl.problem(p) is not None)


def _empty(value: Value) -> bool:
    return value is None or value == "" or value == ()


def _box(out: dict[str, Any], p: Path) -> dict[str, Any]:
    """The object holding `p`'s attribute: the resource, or its extension's object."""
    if not p.urn:
        return out
    box = out.setdefault(p.urn, {})
    if p.urn not in out.setdefault("schemas", []):
        out["schemas"].append(p.urn)
    return box


def _item(p: Path, value: Value) -> dict[str, Any]:
    """One item of a typed multi-valued attribute: its value, or (``item`` paths) none yet."""
    item: dict[str, Any] = {} if p.kind == "item" else {"value": to_json(p, value)}
    if p.has_type:
        item["type"] = p.sub
    if p.default:
        item["primary"] = True
    return item


def _find_item(items: list[Any], p: Path) -> int | None:
    """Where the item of `p`'s type is (an untyped one counts as the default type)."""
    for i, item in enumerate(items):
        if isinstance(item, dict):
            t = item.get("type") if p.has_type else None
            if t == p.sub or (t in (None, "") and p.default):
                return i
    return None


def _set_part(items: list[Any], p: Path, value: Any) -> None:
    """Set (None: remove) part `p.part` of the item of `p`'s type in `items`; an item left
    with no data goes, a missing one is added (the primary one first)."""
    i = _find_item(items, p)
    item = dict(items[i]) if i is not None else _item(p, None)
    _set(item, p.part, value)
    keep = any(k not in ITEM_META for k in item)
    if i is not None and keep:
        items[i] = item
    elif i is not None:
        del items[i]
    elif keep:
        items.insert(0 if p.default else len(items), item)


def needs_current(decl: Declared, changes: Mapping[str, Value]) -> bool:
    """Do these changes need the resource as it is (`patch_operations`' `current`)?"""
    return any(decl.lookup(n).kind == "item" for n in changes)


# --- canonical -> SCIM -----------------------------------------------------------------


def to_resource(decl: Declared, attrs: Mapping[str, Value]) -> dict[str, Any]:
    """A creation payload: extension attributes under their URN, named in ``schemas``."""
    out: dict[str, Any] = {"schemas": [decl.core]}
    multi: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for name, value in attrs.items():
        if _empty(value):
            continue
        p = decl.lookup(name)
        if p.kind == "typed":
            multi.setdefault((p.urn, p.attr), []).append(_item(p, value))
            continue
        if p.kind == "item":
            _set_part(multi.setdefault((p.urn, p.attr), []), p, to_json(p, value))
            continue
        converted = to_json(p, value)
        if converted == []:
            continue
        box = _box(out, p) if p.urn else out
        if p.kind == "simple":
            box[p.attr] = converted
        else:
            box.setdefault(p.attr, {})[p.sub] = converted
    for (urn, attr), items in multi.items():
        box = _box(out, Path("", "typed", attr, urn=urn))
        # Primary (default type) first: single-valued servers keep only the first one.
        box[attr] = sorted(items, key=lambda i: not i.get("primary", False))
    return out


def patch_operations(decl: Declared, changes: Mapping[str, Value],
                     current: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """PATCH operations that change exactly these attributes (None = remove); extension
    attributes by their ``urn:…:attr`` path. Parts of typed items (``addresses.work.
    locality``) need the resource as it is (`current`, see `needs_current`).

    Typed values, measured on both peer servers: replacing ``emails[type eq "work"].value``
    fails with 400 noTarget when no work address exists yet (scim2-server), and the
    ``add`` with that path too. ``remove emails[type eq "work"]`` + ``add emails [..]`` is
    accepted by both and is idempotent. A server whose schema has no ``type`` sub-attribute
    (django-scim2-server: one address only) ignores filtered removes, so there the whole
    attribute is replaced or removed. A typed item's parts are sent the same way: the item
    as it is, with the changed parts, replaces the one of that type.
    """
    ops: list[dict[str, Any]] = []
    items: dict[tuple[str, str, str], tuple[Path, list[Any]]] = {}
    for name, value in changes.items():
        p = decl.lookup(name)
        clear = _empty(value)
        if p.kind == "item":
            key = (p.urn, p.attr, p.sub)
            if key not in items:
                box = (_get(current or {}, p.urn) if p.urn else current) or {}
                now = [i for i in _get(box, p.attr) or [] if isinstance(i, dict)]
                at = _find_item(now, p)
                items[key] = (p, [] if at is None else [now[at]])
            _set_part(items[key][1], p, None if clear else to_json(p, value))
            continue
        if p.kind == "typed":
            _replace_item(ops, p, None if clear else _item(p, value))
            continue
        target = p.scim if p.kind == "simple" else f"{p.scim}.{p.sub}"
        converted = None if clear else to_json(p, value)
        if converted is None or converted == []:
            ops.append({"op": "remove", "path": target})
        else:
            ops.append({"op": "replace", "path": target, "value": converted})
    for p, merged in items.values():
        _replace_item(ops, p, merged[0] if merged else None)
    return ops


def _replace_item(ops: list[dict[str, Any]], p: Path, item: dict[str, Any] | None) -> None:
    """The item of `p`'s type becomes `item` (None: goes)."""
    if p.has_type:
        ops.append({"op": "remove", "path": f'{p.scim}[type eq "{p.sub}"]'})
        if item is not None:
            ops.append({"op": "add", "path": p.scim, "value": [item]})
    elif item is None:
        ops.append({"op": "remove", "path": p.scim})
    else:
        ops.append({"op": "replace", "path": p.scim, "value": [item]})


def apply_changes(
    decl: Declared, resource: dict[str, Any], changes: Mapping[str, Value]
) -> dict[str, Any]:
    """The resource with these changes applied: the body of a PUT when PATCH is missing.

    Works on the server's own JSON so attributes we do not map survive the replace.
    """
    out = {k: v for k, v in resource.items() if k not in ("meta", "id")}
    for name, value in changes.items():
        p = decl.lookup(name)
        clear = _empty(value)
        box = _box(out, p)
        if p.kind == "simple":
            _set(box, p.attr, None if clear else to_json(p, value))
        elif p.kind == "sub":
            _set(box.setdefault(p.attr, {}), p.sub, None if clear else to_json(p, value))
            if not box[p.attr]:
                del box[p.attr]
        elif p.kind == "item":
            items = list(box.get(p.attr) or [])
            _set_part(items, p, None if clear else to_json(p, value))
            _set(box, p.attr, items or None)
        else:
            items = [i for i in box.get(p.attr) or []
                     if p.has_type and isinstance(i, dict) and i.get("type") != p.sub]
            if not clear:
                items.insert(0, _item(p, value))
            _set(box, p.attr, items or None)
        if p.urn and not box:
            del out[p.urn]
            out["schemas"] = [s for s in out["schemas"] if s != p.urn]
    return out


def _set(d: dict[str, Any], key: str, value: Any) -> None:
    if value is None or value == []:
        d.pop(key, None)
    else:
        d[key] = value


# --- SCIM -> canonical -----------------------------------------------------------------


def _get(obj: Mapping[str, Any], key: str) -> Any:
    """``obj[key]``, the key compared case-insensitively when not spelt as declared."""
    if key in obj:
        return obj[key]
    low = key.lower()
    return next((v for k, v in obj.items() if k.lower() == low), None)


def from_resource(decl: Declared, resource: Mapping[str, Any]) -> dict[str, Value]:
    """Canonical attributes of a resource as a server returned it: every attribute its
    schemas declare, under `schemas.Path.spelling` names.

    Empty strings count as absent (django-scim2-server answers ``""`` for a removed name).
    A value of another JSON shape than declared raises TypeError/ValueError."""
    out: dict[str, Value] = {}
    for urn, by_name in decl.readers.items():
        box = _get(resource, urn) if urn else resource
        if box is None:
            continue
        if not isinstance(box, dict):
            raise TypeError(f"{urn}: an object was expected")
        for key, raw in box.items():
            found = by_name.get(key.lower())
            if found is None or raw is None:
                continue
            if isinstance(found, dict):  # a single-valued complex attribute
                if not isinstance(raw, dict):
                    raise TypeError(f"{key}: an object was expected")
                for sub_key, sub_raw in raw.items():
                    sub = found.get(sub_key.lower())
                    if sub is not None:
                        _read_into(out, sub, sub_raw)
            elif isinstance(found, tuple):  # a multi-valued complex attribute
                if not isinstance(raw, list):
                    raise TypeError(f"{key}: a list was expected")
                _read_items(out, *found, raw)
            else:
                _read_into(out, found, raw)
    ext = resource.get("externalId")
    if ext not in (None, "") and "externalId" not in out:
        out["externalId"] = str(ext)
    return out


def _read_into(out: dict[str, Value], p: Path, raw: Any) -> None:
    value = raw if p.type == "string" and type(raw) is str else from_json(p, raw)
    if value is not None and value != "":
        out[p.spelling] = value


def _read_items(out: dict[str, Value], p: Path, parts: Mapping[str, Path],
                items: list[Any]) -> None:
    """One value per type (``emails.work``), or per type and part (``addresses.work.
    locality``) when items have no value."""
    for t, item in by_type(items, p).items():
        if not parts:
            value = from_json(p, item.get("value"))
            if value is not None:
                out[f"{p.stem}.{t}"] = value
            continue
        for key, raw in item.items():
            part = parts.get(key.lower())
            if part is not None:
                value = from_json(part, raw)
                if value is not None:
                    out[f"{p.stem}.{t}.{part.part}"] = value


def by_type(items: list[Any], p: Path) -> dict[str, dict[str, Any]]:
    """The first item of each type; an untyped one (primary first) fills the default type
    (`p.sub`, "" when the attribute has none). Items without data are no item."""
    found: dict[str, dict[str, Any]] = {}
    untyped: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, dict):
            raise TypeError(f"{p.attr}: an object was expected in the list")
        if not any(v not in (None, "") for k, v in item.items() if k not in ITEM_META):
            continue
        t = item.get("type") if p.has_type else None
        if t is None or t == "":
            untyped.append(item)
        elif isinstance(t, str) and t not in found:
            found[t] = item
    if p.sub and p.sub not in found and untyped:
        found[p.sub] = sorted(untyped, key=lambda i: not i.get("primary", False))[0]
    return found


# --- filters ---------------------------------------------------------------------------


def escape(value: str) -> str:
    """A SCIM filter comparison value: a JSON string literal (RFC 7644 §3.4.2.2).

    Quote and backslash alone are not enough: a raw TAB, CR, LF or NUL inside the literal is
    invalid JSON, and scim2-server answers 400 invalidFilter, which failed the lookup of that
    entry. `json.dumps` escapes every control character; non-ASCII text stays as it is.
    """
    return json.dumps(value, ensure_ascii=False)


def filter_for(decl: Declared, path: str, value: str) -> tuple[str, str | None]:
    """A filter for ``path eq value``, and the canonical name to check the results on when
    the server cannot filter exactly (None: it can). Booleans and numbers are compared as
    JSON literals of the declared type (``active eq true``).

    Typed values are searched as ``emails.value eq`` (django-scim2-server supports no
    complex ``emails[type eq ..]`` filters) and the type is checked on the results.
    """
    p = decl.lookup(path)
    literal = json.dumps(to_json(p, value) if p.type != "string" else value, ensure_ascii=False)
    if p.kind == "simple":
        return f"{p.scim} eq {literal}", None
    if p.kind == "sub":
        return f"{p.scim}.{p.sub} eq {literal}", None
    return f"{p.scim}.{p.part or 'value'} eq {literal}", p.spelling


def shape(value: Any) -> Hashable:
    """The structure of a SCIM body: keys, value types and emptiness, never the values.

    Two bodies of one shape validate alike against scim2-models (the connector skips the
    validation of a shape that passed unchanged once, see `ScimConnector._payload`)."""
    if isinstance(value, dict):
        return tuple(sorted((k, shape(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("[]", *(shape(v) for v in value))
    return type(value).__name__, not value
