"""pytest fixtures for a real OpenLDAP server (loaded through ``pytest_plugins``).

Two flavours, because tests need different guarantees:

- `slapd_server` (session): one server with the small sample directory, shared by every test
  that only *reads*. Tests must not change it; use `slapd` for that.
- `slapd` (function): a fresh server with the same directory per test (~0.2 s), for tests
  that write, kill or pause the server, so tests stay independent in any order.

Both fail loudly (an error, never a skip) when OpenLDAP is missing: a green run that silently
skipped the real-peer tests would prove nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.peers.directory import GROUPS, PEOPLE, write_ldif
from tests.peers.slapd import Slapd, require_openldap

#: The small sample directory every LDAP fixture serves.
SMALL_USERS = 30
SMALL_GROUPS = 4
SMALL_MEMBERS = 8
SEED = 1


@pytest.fixture(scope="session")
def small_ldif(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample directory as an LDIF file, generated once per session."""
    require_openldap()
    path = tmp_path_factory.mktemp("ldif") / "small.ldif"
    return write_ldif(path, SMALL_USERS, SMALL_GROUPS, SMALL_MEMBERS, seed=SEED)


@pytest.fixture(scope="session")
def slapd_server(small_ldif: Path) -> Iterator[Slapd]:
    """A shared, read-only server with the sample directory."""
    with Slapd(ldif=small_ldif) as server:
        yield server


@pytest.fixture
def slapd(small_ldif: Path) -> Iterator[Slapd]:
    """A fresh server with the sample directory, private to one test."""
    with Slapd(ldif=small_ldif) as server:
        yield server


def ldap_settings(server: Slapd, **overrides: Any) -> dict[str, Any]:
    """Connector settings (``[connectors.NAME]`` as a dict) for `server`, bound as admin,
    users under ou=people and groupOfNames groups under ou=groups."""
    settings: dict[str, Any] = {
        "type": "ldap",
        "url": server.url,
        "bind_dn": server.admin_dn,
        "bind_password": server.admin_password,
        "users": {"base": PEOPLE, "filter": "(objectClass=inetOrgPerson)"},
        "groups": {"base": GROUPS, "filter": "(objectClass=groupOfNames)"},
        "timeout": 10,
    }
    settings.update(overrides)
    return settings
