"""Declarations (`schemas.Declared`) from what a server publishes, or from RFC 7643.

`declared` reads the raw /ResourceTypes and /Schemas resources (JSON objects): per kind the
core schema and each extension the resource type offers. A kind whose resource type or core
schema is not published gets the standard declaration (`standard`, from `rfc7643`): what
syncd knew before it asked, so nothing is reported unknown for want of a description.

Raw JSON and not scim2-models objects: a run that writes nothing needs no scim2-models at all
(importing it and building its classes costs ~0.4 s per start); the names of the keys are
read case-insensitively, as SCIM compares attribute names. A document of the wrong shape is
`Malformed`, naming where.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any

from syncd.model import Kind
from syncd_connectors.scim.rfc7643 import SCHEMAS
from syncd_connectors.scim.schemas import (
    ENDPOINT,
    URN_ENTERPRISE,
    URN_GROUP,
    URN_USER,
    Attr,
    Declared,
)


class Malformed(ValueError):
    """A discovery document of the wrong shape; the message says where."""


def key(doc: Mapping[str, Any], name: str) -> Any:
    """``doc[name]``, the key compared case-insensitively (None when absent)."""
    if name in doc:
        return doc[name]
    low = name.lower()
    return next((v for k, v in doc.items() if isinstance(k, str) and k.lower() == low), None)


def objects(value: Any, where: str) -> list[Mapping[str, Any]]:
    """A JSON list of objects (absent: empty), else `Malformed`."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise Malformed(f"{where} is not a list of objects")
    return value


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def attributes(schema: Mapping[str, Any]) -> tuple[Attr, ...]:
    """A published schema's attributes (nameless ones are skipped)."""
    where = f"schema {str(key(schema, 'id'))[:80]}"
    return tuple(_attr(a, where) for a in objects(key(schema, "attributes"), where)
                 if _text(key(a, "name")))


def _attr(a: Mapping[str, Any], where: str) -> Attr:
    name = str(key(a, "name"))
    subs = [s for s in objects(key(a, "subAttributes"), f"{where}: {name}")
            if _text(key(s, "name"))]
    type_sub = next((s for s in subs if str(key(s, "name")).lower() == "type"), None)
    types = key(type_sub, "canonicalValues") if type_sub is not None else None
    return Attr(
        name=name,
        type=_text(key(a, "type")) or "string",
        multi=key(a, "multiValued") is True,
        subs=tuple(_attr(s, f"{where}: {name}") for s in subs),
        types=tuple(str(t) for t in types) if isinstance(types, list) else (),
        writable=key(a, "mutability") != "readOnly",
    )


def declared(resource_types: Iterable[Mapping[str, Any]],
             schemas: Iterable[Mapping[str, Any]]) -> dict[Kind, Declared]:
    """Per kind, what /ResourceTypes and /Schemas declare; the standard declaration for a
    kind whose resource type or core schema is not published."""
    by_id = {str(key(s, "id")).lower(): s for s in schemas if _text(key(s, "id"))}
    rts = list(resource_types)
    out: dict[Kind, Declared] = {}
    for kind in ENDPOINT:
        rt = resource_type(rts, kind)
        core_id = _text(key(rt, "schema")) if rt is not None else None
        core = by_id.get(core_id.lower()) if core_id else None
        if rt is None or core is None:
            out[kind] = standard(kind)
            continue
        found = {str(key(core, "id")): attributes(core)}
        for ext in objects(key(rt, "schemaExtensions"), f"resource type {kind}"):
            ext_id = _text(key(ext, "schema"))
            schema = by_id.get(ext_id.lower()) if ext_id else None
            if schema is not None:
                found[str(key(schema, "id"))] = attributes(schema)
        out[kind] = Declared(str(key(core, "id")), found)
    return out


def resource_type(rts: Iterable[Mapping[str, Any]], kind: Kind) -> Mapping[str, Any] | None:
    """The published resource type of `kind` (its name or id is ``User``/``Group``)."""
    name = ENDPOINT[kind]
    return next((r for r in rts if name in (key(r, "name"), key(r, "id"))), None)


@functools.cache
def standard(kind: Kind) -> Declared:
    """RFC 7643's declaration (`rfc7643.SCHEMAS`: scim2-models' schemas with the RFC's
    canonical types)."""
    by_id = {s["id"]: attributes(s) for s in SCHEMAS}
    if kind == "group":
        return Declared(URN_GROUP, {URN_GROUP: by_id[URN_GROUP]}, standard=True)
    return Declared(URN_USER, {URN_USER: by_id[URN_USER],
                               URN_ENTERPRISE: by_id[URN_ENTERPRISE]}, standard=True)
