"""What a SCIM server says about itself (/ResourceTypes, /Schemas, /ServiceProviderConfig),
turned into the connector's capabilities, endpoints and page size.

Separate from the connector because it runs once per `open()` and is all interpretation:
the server's own description decides which attributes (core, enterprise, any extension) can
be mapped and of which type they are (`declarations.declared`), which paths are dropped, whether
/Bulk and PATCH are used and how large a page may be (``filter.maxResults``).

The documents are read as raw JSON: the scim2-models classes built from them (`client`) are
only needed to validate a body, so they are built on the first write that needs them, and a
run that writes nothing never imports scim2-models (~0.4 s of start-up).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from syncd.connector import Capabilities
from syncd.errors import Fatal
from syncd.model import Kind
from syncd_connectors.scim import declarations, paths, schemas
from syncd_connectors.scim.config import ScimConfig
from syncd_connectors.scim.declarations import Malformed, key, objects
from syncd_connectors.scim.http import ScimHttp
from syncd_connectors.scim.status import checked_json


@dataclass(frozen=True)
class Discovered:
    caps: Capabilities
    unsupported: dict[Kind, frozenset[str]]
    declared: dict[Kind, schemas.Declared]
    endpoints: dict[Kind, str]
    page_size: int
    limits: PatchLimits
    documents: Documents


@dataclass(frozen=True)
class Documents:
    """The discovery documents as the server sent them: what `client` builds the
    scim2-models classes from, when a body must be validated."""

    schemas: list[dict[str, Any]]
    resource_types: list[dict[str, Any]]
    config: dict[str, Any]


@dataclass(frozen=True)
class PatchLimits:
    """What the server declares that bounds a member PATCH (`syncd_connectors.scim.members`).

    ``max_bytes``: ``patch.maxPayloadSize`` (not in RFC 7643; some servers add it) or else
    ``bulk.maxPayloadSize``: a server that refuses a /Bulk body over N bytes is not trusted
    with a larger PATCH. ``max_operations``: ``patch.maxOperations`` (also non-standard).
    ``etag``: ``etag.supported`` — a members replace is only ever sent with If-Match."""

    max_bytes: int | None = None
    max_operations: int | None = None
    etag: bool = False


#: Page size of listings when neither the configuration nor the server says one.
DEFAULT_PAGE = 200
#: Largest page asked for by default: a page is held whole in memory while it is parsed
#: (~1 KB per user object), so the server's own bound is followed only up to here.
MAX_PAGE = 1000


def page_size(configured: int | None, max_results: int | None) -> int:
    """Entries per listing page: the configured size or else the server's
    ``filter.maxResults`` (at most `MAX_PAGE`), never more than that ``maxResults``.

    Why the server's bound by default: a listing costs the server per request as well as
    per object. scim2-server, for one, evaluates a filter against every stored object for
    each filtered page and sorts them all for each page (measured in-process at 20,000
    users: 0.47 s of CPU for a filtered request that matches nothing, 0.06 s for an
    unfiltered ``count=0``), so a listing of N objects costs it N / page_size such walks.
    django-scim2-server declares 200 (it answers a count over 1000 with 400): 200 there."""
    if configured is not None:
        return min(configured, max_results) if max_results else configured
    return min(max_results, MAX_PAGE) if max_results else DEFAULT_PAGE


def _positive(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def patch_limits(doc: dict[str, Any]) -> PatchLimits:
    """The member-PATCH limits a raw /ServiceProviderConfig document declares."""
    patch = doc.get("patch") if isinstance(doc.get("patch"), dict) else {}
    bulk = doc.get("bulk") if isinstance(doc.get("bulk"), dict) else {}
    etag = doc.get("etag") if isinstance(doc.get("etag"), dict) else {}
    assert isinstance(patch, dict) and isinstance(bulk, dict) and isinstance(etag, dict)
    return PatchLimits(
        max_bytes=_positive(patch.get("maxPayloadSize")) or _positive(bulk.get("maxPayloadSize")),
        max_operations=_positive(patch.get("maxOperations")),
        etag=etag.get("supported") is True,
    )


def groups_as_members(found: Sequence[Mapping[str, Any]]) -> bool:
    """May a Group's ``members`` name groups (``nested = "preserve"``)? Yes when the server's
    Group schema declares the members' ``type`` (RFC 7643 §4.2: "User" or "Group"; canonical
    values, when listed, include Group) or a ``$ref`` whose referenceTypes include Group, and
    when it declares no Group schema at all (the RFC's own declaration then applies, as for
    attributes). django-scim2-server declares only ``value`` and ``display``, and drops group
    members silently: no."""
    group = next((s for s in found
                  if str(key(s, "id") or "").lower() == schemas.URN_GROUP.lower()), None)
    if group is None:
        return True
    members = next((a for a in objects(key(group, "attributes"), "schema Group")
                    if str(key(a, "name") or "").lower() == "members"), None)
    subs = objects(key(members, "subAttributes"), "Group members") if members else []
    for sub in subs:
        name = str(key(sub, "name") or "").lower()
        values = key(sub, "canonicalValues" if name == "type" else "referenceTypes")
        listed = [str(v).lower() for v in values] if isinstance(values, list) else []
        if (name == "type" and (not listed or "group" in listed)) or (
                name == "$ref" and "group" in listed):
            return True
    return False


def _listing(http: ScimHttp, endpoint: str, name: str) -> list[dict[str, Any]]:
    """The resources of an unpaged discovery listing (their ids are optional there)."""
    doc = checked_json(http.request("GET", endpoint), "discovery", name)
    return [dict(r) for r in objects(key(doc, "Resources"), f"{endpoint} Resources")]


def _section(doc: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    found = key(doc, name)
    return found if isinstance(found, Mapping) else {}


def discover(http: ScimHttp, cfg: ScimConfig, name: str) -> Discovered:
    """Query the discovery endpoints; `Fatal` when they make no sense."""
    rts = _listing(http, "/ResourceTypes", name)
    found = _listing(http, "/Schemas", name)
    # Raw, so that limits outside RFC 7643 (``patch.maxOperations``) are seen.
    spc = checked_json(http.request("GET", "/ServiceProviderConfig"), "discovery", name)
    try:
        declared = declarations.declared(rts, found)
        members = groups_as_members(found)
    except Malformed as exc:
        raise Fatal(f"SCIM discovery answered something else than asked for: {exc}",
                    connector=name) from None
    unsupported = {k: paths.unsupported_paths(d, k) for k, d in declared.items()}
    endpoints: dict[Kind, str] = {"user": "/Users", "group": "/Groups"}
    for kind in schemas.ENDPOINT:
        rt = declarations.resource_type(rts, kind)
        endpoint = key(rt, "endpoint") if rt is not None else None
        if isinstance(endpoint, str) and endpoint:
            endpoints[kind] = "/" + endpoint.lstrip("/")
    bulk = _section(spc, "bulk")
    bulk_ok = key(bulk, "supported") is True and cfg.bulk == "auto"
    max_results = _positive(key(_section(spc, "filter"), "maxResults"))
    size = page_size(cfg.page_size, max_results)
    caps = Capabilities(
        read=True,
        write=True,
        patch=key(_section(spc, "patch"), "supported") is True,
        bulk=bulk_ok,
        bulk_max_operations=(_positive(key(bulk, "maxOperations")) or 0) if bulk_ok else 0,
        bulk_max_payload=(_positive(key(bulk, "maxPayloadSize")) or 0) if bulk_ok else 0,
        unsupported_attributes={str(k): v for k, v in unsupported.items()},
        declares=lambda kind, path: kind in declared and declared[
            kind].problem(path) is None,
        group_members=members,
    )
    return Discovered(caps, unsupported, declared, endpoints, size, patch_limits(spc),
                      Documents(found, rts, spc))
