"""syncd: a bidirectional directory sync daemon (LDAP, Microsoft Graph, SCIM 2.0).

The layers, lowest first; a module imports only from its own layer or lower ones
(``tests/unit/test_layers.py`` fails otherwise):

1. the plugin API, what a connector author reads: `model` (entries, batches, attribute
   values), `connector` (the contract), `errors`, `registry` (entry points), `testing` (the
   in-memory connector and the contract test), and what connector configs share: `secrets`
   (``env:``/``file:`` references), `checks` (offline validators), `net`, `redact`, `log`,
   and `spill` (maps that go to disk past a size: per-entry bookkeeping at a million);
2. `mapping`: attribute mappings and scopes, pure;
3. `state`: the state store;
4. `config`: the config file, compiled into flows;
5. `plan`: the pure planners and the safety check;
6. `cycle`: one cycle, read -> plan -> check -> apply -> journal;
7. `daemon`: the scheduler, metrics and systemd integration;
8. `cli`: the command line.

Connectors live in the ``syncd_connectors`` package (repository folder ``connectors/``) and
may import only the plugin API.
"""
