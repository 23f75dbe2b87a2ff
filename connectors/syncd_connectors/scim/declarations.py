"""Declarations (`schemas.Declared`) from what a server publishes, or from RFC 7643.

`declared` reads /ResourceTypes and /Schemas (scim2-models objects): per kind the core
schema and each extension the resource type offers. A kind whose resource type or core
schema is not published gets the standard declaration (`standard`): what syncd knew before
it asked, so nothing is reported unknown for want of a description.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from scim2_models import Attribute, ResourceType, Schema

from syncd.model import Kind
from syncd_connectors.scim.schemas import (
    ENDPOINT,
    URN_ENTERPRISE,
    URN_GROUP,
    URN_USER,
    Attr,
    Declared,
)

#: canonicalValues of the ``type`` sub-attributes, RFC 7643 §8.7.1 (scim2-models' own
#: schemas leave them out).
_STANDARD_TYPES = {
    "emails": ("work", "home", "other"),
    "phoneNumbers": ("work", "home", "mobile", "fax", "pager", "other"),
    "ims": ("aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"),
    "photos": ("photo", "thumbnail"),
    "addresses": ("work", "home", "other"),
}


def attributes(schema: Schema) -> tuple[Attr, ...]:
    """A published schema's attributes (nameless ones are skipped)."""
    return tuple(_attr(a) for a in schema.attributes or [] if a.name)


def _attr(a: Attribute) -> Attr:
    subs = [s for s in a.sub_attributes or [] if s.name]
    type_sub = next((s for s in subs if str(s.name).lower() == "type"), None)
    return Attr(
        name=str(a.name),
        type=str(getattr(a.type, "value", a.type) or "string"),
        multi=bool(a.multi_valued),
        subs=tuple(_attr(s) for s in subs),
        types=tuple(type_sub.canonical_values or ()) if type_sub is not None else (),
        writable=str(getattr(a.mutability, "value", a.mutability)) != "readOnly",
    )


def declared(resource_types: Iterable[ResourceType],
             schemas: Iterable[Schema]) -> dict[Kind, Declared]:
    """Per kind, what /ResourceTypes and /Schemas declare; the standard declaration for a
    kind whose resource type or core schema is not published."""
    by_id = {str(s.id).lower(): s for s in schemas if s.id}
    rts = list(resource_types)
    out: dict[Kind, Declared] = {}
    for kind, name in ENDPOINT.items():
        rt = next((r for r in rts if name in (r.name, r.id)), None)
        core = by_id.get(str(rt.schema_).lower()) if rt is not None and rt.schema_ else None
        if rt is None or core is None:
            out[kind] = standard(kind)
            continue
        found = {str(core.id): attributes(core)}
        for ext in rt.schema_extensions or []:
            schema = by_id.get(str(ext.schema_).lower())
            if schema is not None:
                found[str(schema.id)] = attributes(schema)
        out[kind] = Declared(str(core.id), found)
    return out


@functools.cache
def standard(kind: Kind) -> Declared:
    """RFC 7643's declaration (scim2-models' schemas with the RFC's canonical types)."""
    from scim2_models import EnterpriseUser, Group, User

    if kind == "group":
        return Declared(URN_GROUP, {URN_GROUP: attributes(Group.to_schema())}, standard=True)
    core = tuple(
        Attr(a.name, a.type, a.multi, a.subs, _STANDARD_TYPES.get(a.name, a.types), a.writable)
        for a in attributes(User.to_schema())
    )
    return Declared(URN_USER, {URN_USER: core,
                               URN_ENTERPRISE: attributes(EnterpriseUser.to_schema())},
                    standard=True)
