"""The config file: its schema (`schema`), what it becomes (`flows`), how it is read (`loader`),
and the value syntaxes it uses (`durations`, `crontab`).

May import the plugin API (`syncd.model`, `errors`, `connector`, `registry`, `secrets`,
`checks`), `syncd.mapping` (mappings and scopes are compiled at load) and `syncd.state.opening`
(the state URL is checked at load); nothing that runs a cycle.

``config.load(path)`` is the entry point, re-exported here.
"""

from syncd.config.loader import load

__all__ = ["load"]
