"""pytest fixtures for a real Samba AD domain controller (loaded through ``pytest_plugins``).

- `samba_template` (session): the domain, provisioned once (~12 s) with the sample OUs
  (`tests.peers.samba.PEOPLE`, `GROUPS`), copied by every server.
- `samba_dc` (function): a fresh DC from the template, private to one test (~0.4 s to start),
  so tests that add, change and delete objects stay independent in any order.

Both fail loudly (an error, never a skip) when Samba, socat or ip are missing or we are not
root: a green run that silently skipped the AD tests would prove nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.peers.samba import GROUPS, PEOPLE, SambaDC, SambaTemplate

#: Users only: computer accounts are objectClass=user too.
AD_USER_FILTER = "(&(objectClass=user)(!(objectClass=computer)))"
AD_GROUP_FILTER = "(objectClass=group)"


@pytest.fixture(scope="session")
def samba_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SambaTemplate]:
    template = SambaTemplate(tmp_path_factory.mktemp("samba-template"))
    template.build()
    yield template
    template.cleanup()


@pytest.fixture
def samba_dc(samba_template: SambaTemplate) -> Iterator[SambaDC]:
    with SambaDC(samba_template) as dc:
        yield dc


def ad_settings(dc: SambaDC, **overrides: Any) -> dict[str, Any]:
    """Connector settings for `dc` the way an AD deployment looks: bound as Administrator,
    anchor objectGUID, DirSync, users and groups under the sample OUs."""
    settings: dict[str, Any] = {
        "type": "ldap",
        "url": dc.url,
        "bind_dn": dc.admin_dn,
        "bind_password": dc.admin_password,
        "anchor": "objectGUID",
        "incremental": "dirsync",
        "users": {"base": PEOPLE, "filter": AD_USER_FILTER},
        "groups": {"base": GROUPS, "filter": AD_GROUP_FILTER},
        "timeout": 10,
    }
    settings.update(overrides)
    return settings
