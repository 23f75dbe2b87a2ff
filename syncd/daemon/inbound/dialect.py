"""What SCIM clients really send, made RFC 7644 at the edge, before scim2-server reads it.

Microsoft Entra ID has two PATCH flavours (its "SCIM 2.0 compliance" notes; the tenant URL
flag ``?aadOptscim062020`` selects the newer one), Okta a third; all of them are accepted:

- op names in any case (``Replace``, ``Add``, ``Remove``);
- ``active`` as the strings ``"True"``/``"False"`` (older Entra) as well as booleans, in a
  PATCH (with a path or in a value object) and in a POST/PUT body;
- several attributes replaced in one value object without a path, including keys that are
  themselves paths (``name.givenName``, ``emails[type eq "work"].value``, extension URNs):
  each such key becomes an operation of its own with that path;
- member removal as ``{"op": "Remove", "path": "members", "value": [{"value": "id"}]}``
  (older Entra; RFC 7644 would read "remove every member") becomes one
  ``members[value eq "id"]`` removal per listed member, the form the newer flavour sends;
- ``id`` and ``meta`` inside a value object (Okta sends ``id`` with ``active``) are dropped:
  they are read-only, and repeating them changes nothing;
- the ``aadOptscim062020`` flag itself is taken off the query string (`clean_query`).

Pure functions over decoded JSON; the application calls them (`syncd.daemon.inbound.app`).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlencode

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
_FLAGS = frozenset({"aadoptscim062020"})
_READ_ONLY = frozenset({"id", "meta"})


def boolean(value: Any) -> Any:
    """``"True"``/``"False"`` in any case as booleans; anything else as it is."""
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return value


def _is_active(path: str) -> bool:
    return path.rpartition(":")[2].strip().lower() == "active"


def resource_body(doc: Any) -> Any:
    """A POST/PUT resource body with ``active`` as a boolean."""
    if isinstance(doc, dict):
        for key in list(doc):
            if _is_active(key):
                doc[key] = boolean(doc[key])
    return doc


def _value_object(op: str, value: dict[str, Any]) -> list[dict[str, Any]]:
    plain: dict[str, Any] = {}
    split: list[dict[str, Any]] = []
    for key, v in value.items():
        if key in _READ_ONLY:
            continue
        if _is_active(key):
            v = boolean(v)
        if ("." in key or "[" in key) and not key.lower().startswith("urn:"):
            split.append({"op": op, "path": key, "value": v})
        elif key.lower().startswith("urn:") and not isinstance(v, dict):
            split.append({"op": op, "path": key, "value": v})  # urn:…:User:department
        else:
            plain[key] = v
    return ([{"op": op, "value": plain}] if plain else []) + split


def operation(raw: Any) -> list[Any]:
    """One PATCH operation, normalised (possibly several, see the module docstring)."""
    if not isinstance(raw, dict):
        return [raw]
    op = dict(raw)
    name = op.get("op")
    if isinstance(name, str):
        op["op"] = name = name.strip().lower()
    path = op.get("path")
    value = op.get("value")
    if isinstance(path, str) and path.strip():
        if _is_active(path):
            op["value"] = boolean(value[0].get("value") if isinstance(value, list) and value
                                  and isinstance(value[0], dict) else value)
        if (name == "remove" and path.strip().lower() == "members"
                and isinstance(value, list) and value):
            return [{"op": "remove", "path": f'members[value eq "{_quoted(m)}"]'}
                    for m in value if isinstance(m, dict) and m.get("value") is not None]
        return [op]
    if name in ("add", "replace") and isinstance(value, dict):
        return _value_object(name, value)
    return [op]


def _quoted(member: dict[str, Any]) -> str:
    return str(member["value"]).replace("\\", "\\\\").replace('"', '\\"')


def patch_body(doc: Any) -> Any:
    if isinstance(doc, dict) and isinstance(doc.get("Operations"), list):
        doc["Operations"] = [o for raw in doc["Operations"] for o in operation(raw)]
    return doc


def normalise(method: str, path: str, body: bytes) -> bytes:
    """The body of a request, normalised when it is JSON this module knows how to fix;
    anything else unchanged (scim2-server answers it with the right error)."""
    method = method.upper()
    if not body or method not in ("POST", "PUT", "PATCH"):
        return body
    try:
        doc = json.loads(body)
    except ValueError:
        return body
    if method == "PATCH":
        doc = patch_body(doc)
    elif method == "PUT" or not path.rstrip("/").endswith((".search", "/Bulk")):
        doc = resource_body(doc)
    return json.dumps(doc).encode()


def clean_query(query: str) -> str:
    """The query string without client flags (``aadOptscim062020``)."""
    if not query or not any(f in query.lower() for f in _FLAGS):
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, v) for k, v in pairs if k.lower() not in _FLAGS])
