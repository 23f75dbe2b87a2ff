"""The config file as a JSON Schema (`syncd config-schema`), for editors: completion and
checks while typing. Built from the same pydantic models `load` validates with, plus each
installed connector type's own config model and the mapping and scope table forms, so it
cannot drift from what syncd accepts. It checks shapes only: `load` (and `syncd validate`)
still do the cross checks — connector references, mapped match keys, secrets, state URL."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from syncd import registry
from syncd.config.schema import FileModel
from syncd.mapping.conditions import condition_json_schema
from syncd.mapping.expressions import RuleTable

SCHEMA_URI = "https://json-schema.org/draft/2020-12/schema"


def config_schema() -> dict[str, Any]:
    root = FileModel.model_json_schema()
    defs: dict[str, Any] = root.setdefault("$defs", {})
    types = []
    for name in sorted(registry.available()):
        try:
            cls = registry.load(name, f"connector type {name}")
        except Exception:  # an optional dependency missing: that type is left out
            continue
        types.append(_embedded(cls.config_model, f"connector_{name}", defs))
    root["properties"]["connectors"]["additionalProperties"] = {
        "anyOf": types, "description": "A connector: its `type` picks the table's keys."}
    rule = {"anyOf": [{"type": "string", "description": "a source attribute or a template "
                                                         "with {attribute} placeholders"},
                      _embedded(RuleTable, "rule", defs)]}
    test = _embedded(condition_json_schema(), "condition_test", defs)
    defs["condition"] = {"anyOf": [
        test,
        {"type": "object", "properties": {"all": {"type": "array", "minItems": 1,
                                                  "items": {"$ref": "#/$defs/condition"}}},
         "required": ["all"], "additionalProperties": False},
        {"type": "object", "properties": {"any": {"type": "array", "minItems": 1,
                                                  "items": {"$ref": "#/$defs/condition"}}},
         "required": ["any"], "additionalProperties": False},
        {"type": "object", "properties": {"not": {"$ref": "#/$defs/condition"}},
         "required": ["not"], "additionalProperties": False}],
        "description": "a test of one attribute, or all/any/not of conditions"}
    condition = {"$ref": "#/$defs/condition"}
    kind = _resolve(root, "KindModel")
    kind["properties"]["mapping"]["additionalProperties"] = {
        "anyOf": [rule, {"type": "object", "description": "a namespace (dotted path)"}]}
    kind["properties"]["scope"]["items"] = condition
    root.update({"$schema": SCHEMA_URI, "title": "syncd configuration"})
    return root


def _embedded(model: type[BaseModel], prefix: str, defs: dict[str, Any]) -> dict[str, Any]:
    """`model`'s schema with its definitions moved into `defs` under `prefix`."""
    schema = model.model_json_schema(by_alias=True)
    own = schema.pop("$defs", {})
    text = json.dumps(schema)
    for name in own:
        text = text.replace(f'"#/$defs/{name}"', f'"#/$defs/{prefix}_{name}"')
    for name, sub in own.items():
        sub_text = json.dumps(sub)
        for other in own:
            sub_text = sub_text.replace(f'"#/$defs/{other}"', f'"#/$defs/{prefix}_{other}"')
        defs[f"{prefix}_{name}"] = json.loads(sub_text)
    out: dict[str, Any] = json.loads(text)
    return out


def _resolve(root: dict[str, Any], name: str) -> dict[str, Any]:
    node: dict[str, Any] = root["$defs"][name]
    return node
