"""Connector discovery through the ``syncd.connectors`` entry-point group.

The engine knows connector types only by name; the classes come from installed distributions
(ours registers ``ldap`` and ``scim`` in pyproject.toml). Loading is lazy so that a heavy
connector (Graph pulls in msgraph-sdk) costs nothing unless a config uses it.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import cast

from syncd.connector import Connector
from syncd.errors import ConfigError

GROUP = "syncd.connectors"


@cache
def available() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def load(type_name: str, where: str = "") -> type[Connector]:
    eps = available()
    if type_name not in eps:
        known = ", ".join(sorted(eps)) or "none installed"
        raise ConfigError(f"unknown connector type {type_name!r} (known: {known})", where)
    try:
        cls = eps[type_name].load()
    except ImportError as exc:
        raise ConfigError(
            f"connector type {type_name!r} cannot be loaded: {exc} "
            f"(is its optional dependency installed?)",
            where,
        ) from None
    return cast(type[Connector], cls)
