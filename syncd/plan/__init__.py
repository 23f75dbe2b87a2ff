"""Planning: pure functions from what was read (and what the store remembers) to a `Plan`.

- `value`: the plan as a value (`Plan`, `Change`, `Hold`), what dry runs show and apply runs;
- `push`: the push planner (create, adopt, update, deprovision, membership);
- `follow`: the rule that membership follows the users (deprovisioned, deleted, recreated);
- `merge`: the three-way merge of two-way flows (source, target, base) with authority rules;
- `safety`: the safety check a plan must pass before anything is applied.

Nothing here performs I/O. May import the plugin API, `syncd.mapping`, `syncd.config` (the
safety thresholds) and `syncd.state.records` (links as values), never the cycle.
"""
