""""Did you mean …" for unknown config keys: the keys allowed where the unknown one stands,
read from the model's JSON schema (so aliases such as ``not`` and nested tables are right)."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel


def allowed_keys(model: type[BaseModel], path: Sequence[int | str]) -> set[str]:
    """The keys of the table at `path` in a document of `model` (empty when unknown)."""
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})
    nodes = [schema]
    for part in path:
        nodes = [n for node in nodes for n in _step(_resolve(node, defs), part, defs)]
    keys: set[str] = set()
    for node in nodes:
        for option in _options(_resolve(node, defs), defs):
            keys |= set(option.get("properties", {}))
    return keys


def did_you_mean(model: type[BaseModel] | None, loc: Sequence[int | str]) -> str:
    """`` (did you mean 'x'?)`` for an unknown key at `loc`, or ``""``."""
    if model is None or not loc or not isinstance(loc[-1], str):
        return ""
    try:
        keys = allowed_keys(model, loc[:-1])
    except Exception:  # a schema pydantic cannot render: no suggestion, never an error
        return ""
    close = difflib.get_close_matches(loc[-1], sorted(keys), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = defs.get(node["$ref"].rsplit("/", 1)[-1], {})
    return node


def _options(node: dict[str, Any], defs: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in node.get(key, ()):
            out += _options(_resolve(sub, defs), defs)
    return out or [node]


def _step(node: dict[str, Any], part: int | str, defs: dict[str, Any]
          ) -> list[dict[str, Any]]:
    out = []
    for option in _options(node, defs):
        if isinstance(part, int) and "items" in option:
            out.append(option["items"])
        elif isinstance(part, str):
            props = option.get("properties", {})
            if part in props:
                out.append(props[part])
            elif isinstance(option.get("additionalProperties"), dict):
                out.append(option["additionalProperties"])
    return out
