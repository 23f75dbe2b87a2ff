"""What a SCIM server says about itself (/ResourceTypes, /Schemas, /ServiceProviderConfig),
turned into the connector's capabilities, endpoints and page size.

Separate from the connector because it runs once per `open()` and is all interpretation:
the server's own description decides which attributes (core, enterprise, any extension) can
be mapped and of which type they are (`declarations.declared`), which paths are dropped, whether
/Bulk and PATCH are used and how large a page may be (``filter.maxResults``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from scim2_models import ListResponse, ResourceType, Schema, ScimProvider, ServiceProviderConfig

from syncd.connector import Capabilities
from syncd.errors import Fatal
from syncd.model import Kind
from syncd_connectors.scim import declarations, paths, schemas
from syncd_connectors.scim.config import ScimConfig
from syncd_connectors.scim.http import HttpxScimClient
from syncd_connectors.scim.status import checked_json, scim_errors


@dataclass(frozen=True)
class Discovered:
    caps: Capabilities
    unsupported: dict[Kind, frozenset[str]]
    declared: dict[Kind, schemas.Declared]
    endpoints: dict[Kind, str]
    page_size: int
    limits: PatchLimits


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


def groups_as_members(found: Sequence[Schema]) -> bool:
    """May a Group's ``members`` name groups (``nested = "preserve"``)? Yes when the server's
    Group schema declares the members' ``type`` (RFC 7643 §4.2: "User" or "Group"; canonical
    values, when listed, include Group) or a ``$ref`` whose referenceTypes include Group, and
    when it declares no Group schema at all (the RFC's own declaration then applies, as for
    attributes). django-scim2-server declares only ``value`` and ``display``, and drops group
    members silently: no."""
    group = next((s for s in found if (s.id or "").lower() == schemas.URN_GROUP.lower()), None)
    if group is None:
        return True
    members = next((a for a in group.attributes or [] if (a.name or "").lower() == "members"),
                   None)
    for sub in (members.sub_attributes or []) if members is not None else []:
        name = (sub.name or "").lower()
        listed = [str(v).lower() for v in (sub.canonical_values if name == "type"
                                           else sub.reference_types) or []]
        if (name == "type" and (not listed or "group" in listed)) or (
                name == "$ref" and "group" in listed):
            return True
    return False


def discover(scim: HttpxScimClient, cfg: ScimConfig, name: str) -> Discovered:
    """Query the discovery endpoints and set `scim.provider` (scim2-client validates with it)."""
    with scim_errors("discovery", name):
        rts = scim.query(ResourceType, raise_scim_errors=True)
        found = scim.query(Schema, raise_scim_errors=True)
        # Raw, so that limits outside RFC 7643 (``patch.maxOperations``) are seen, and
        # validated without them (the model forbids unknown keys there).
        raw = checked_json(scim.http.request("GET", "/ServiceProviderConfig"),
                           "discovery", name)  # fmt: skip
        limits = patch_limits(raw)
        if isinstance(raw.get("patch"), dict):
            raw = {**raw, "patch": {k: v for k, v in raw["patch"].items() if k == "supported"}}
        spc = ServiceProviderConfig.model_validate(raw)
    if not (isinstance(rts, ListResponse) and isinstance(found, ListResponse)
            and isinstance(spc, ServiceProviderConfig)):  # fmt: skip
        raise Fatal("SCIM discovery answered something else than asked for", connector=name)
    try:
        scim.provider = ScimProvider.from_discovery(
            found.resources or [], rts.resources or [], config=spc
        )
    except Exception as exc:  # a server describing itself incoherently
        raise Fatal(f"SCIM discovery is incoherent: {exc}", connector=name) from None
    declared = declarations.declared(rts.resources or [], found.resources or [])
    unsupported = {k: paths.unsupported_paths(d, k) for k, d in declared.items()}
    endpoints: dict[Kind, str] = {"user": "/Users", "group": "/Groups"}
    for kind, endpoint_name in schemas.ENDPOINT.items():
        rt = next((r for r in rts.resources or [] if endpoint_name in (r.name, r.id)), None)
        if rt is not None and rt.endpoint:
            endpoints[kind] = "/" + str(rt.endpoint).lstrip("/")
    bulk_cfg = spc.bulk
    bulk_ok = bool(bulk_cfg and bulk_cfg.supported) and cfg.bulk == "auto"
    max_results = spc.filter.max_results if spc.filter and spc.filter.max_results else None
    page_size = min(cfg.page_size, max_results) if max_results else cfg.page_size
    caps = Capabilities(
        read=True,
        write=True,
        patch=bool(spc.patch and spc.patch.supported),
        bulk=bulk_ok,
        bulk_max_operations=(bulk_cfg.max_operations or 0) if bulk_ok and bulk_cfg else 0,
        bulk_max_payload=(bulk_cfg.max_payload_size or 0) if bulk_ok and bulk_cfg else 0,
        unsupported_attributes={str(k): v for k, v in unsupported.items()},
        declares=lambda kind, path: kind in declared and declared[
            kind].problem(path) is None,
        group_members=groups_as_members(found.resources or []),
    )
    return Discovered(caps, unsupported, declared, endpoints, page_size, limits)
