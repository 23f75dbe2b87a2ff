"""Mappings and scopes: how a source entry becomes canonical attributes, and whether it is in
a flow at all. Pure functions of an entry's raw attributes, compiled once from the config.

- `rules`: one rule per canonical path (from / template / coalesce / const, on_empty,
  apply = "on_create"), compiled from its TOML table;
- `transforms`: the named value transforms a rule can chain;
- `attributes`: `Mapping`, the rules of one kind, and `explain`;
- `scope`: the flow's scope conditions.

May import only the plugin API (`syncd.model`, `syncd.errors`): mappings are evaluated inside
the planner's inputs and by `syncd test-mapping`, with nothing connected.
"""
