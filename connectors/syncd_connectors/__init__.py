"""syncd's connectors: LDAP (`ldap`), SCIM 2.0 (`scim`) and Microsoft Graph (`graph`).

Why this name: the repository folder is ``connectors/``, but an installed top-level package
called ``connectors`` could be shadowed by (or shadow) any other distribution's. So the
folder holds this one package, found by setuptools under ``connectors/`` (pyproject.toml,
``[tool.setuptools.packages.find]``), and syncd finds each connector class through the
``syncd.connectors`` entry points, never by importing this package itself.

What a connector may import of syncd: its plugin API only (`syncd.model`, `syncd.errors`,
`syncd.connector`, `syncd.registry`, `syncd.testing`, `syncd.secrets`, `syncd.checks`,
`syncd.net`, `syncd.redact`, `syncd.log`); connectors do not import each other.
"""
