"""pytest fixtures for a real 389 Directory Server (loaded through ``pytest_plugins``).

- `ds389_server` (session): one instance (~8 s to create), with the Retro Changelog and
  Content Synchronization plugins, shared by every test.
- `ds389_tree` (function): a subtree of its own on that server (``ou=<test>,dc=example,dc=org``
  with ``ou=people`` and ``ou=groups``, `TREE_USERS` users and `TREE_GROUPS` groups), so
  tests that write stay independent in any order. Cookies are bound to base and filter, so
  one test's changes are not another test's.

Both fail loudly (an error, never a skip) when 389-ds is missing or we are not root.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.peers.directory import _LDIF_NAMES, group_member_indexes, ldif_line, user_attrs
from tests.peers.ds389 import Ds389

TREE_USERS = 12
TREE_GROUPS = 2
TREE_MEMBERS = 4
_counter = itertools.count()


@dataclass(frozen=True)
class Tree:
    """One test's subtree; user `i` and group `j` as in `tests.peers.directory`."""

    server: Ds389
    base: str

    @property
    def people(self) -> str:
        return f"ou=people,{self.base}"

    @property
    def groups(self) -> str:
        return f"ou=groups,{self.base}"

    def user_dn(self, i: int) -> str:
        return f"uid=user{i:06d},{self.people}"

    def group_dn(self, j: int) -> str:
        return f"cn=group{j:04d},{self.groups}"

    def members(self, j: int) -> list[int]:
        return group_member_indexes(j, TREE_USERS, TREE_MEMBERS)

    def add_user(self, uid: str, **attrs: str) -> str:
        dn = f"uid={uid},{self.people}"
        values: dict[str, Any] = {"objectClass": ["top", "person", "organizationalPerson",
                                                   "inetOrgPerson"],
                                  "uid": uid, "cn": uid, "sn": uid, **attrs}  # fmt: skip
        return self.server.add(dn, values)

    def ids(self) -> dict[str, tuple[str, str]]:
        """DN (lower-case) -> (entryUUID, nsUniqueId), read with plain ldap3."""
        return self.server.ids(self.base)


def tree_ldif(base: str, users: int, groups: int, members: int) -> str:
    ou = re.match(r"ou=([^,]+),", base)
    assert ou is not None
    out = [f"dn: {base}\nobjectClass: organizationalUnit\nou: {ou.group(1)}\n\n",
           f"dn: ou=people,{base}\nobjectClass: organizationalUnit\nou: people\n\n",
           f"dn: ou=groups,{base}\nobjectClass: organizationalUnit\nou: groups\n\n"]  # fmt: skip
    for i in range(users):
        lines = [f"dn: uid=user{i:06d},ou=people,{base}\n", "objectClass: inetOrgPerson\n",
                 "objectClass: organizationalPerson\nobjectClass: person\nobjectClass: top\n"]
        for name, values in user_attrs(i).items():
            lines += [ldif_line(_LDIF_NAMES.get(name, name), v) for v in values]
        out.append("".join(lines) + "\n")
    for j in range(groups):
        idx = group_member_indexes(j, users, members)
        out.append(f"dn: cn=group{j:04d},ou=groups,{base}\nobjectClass: groupOfNames\n"
                   f"cn: group{j:04d}\n"
                   + "".join(f"member: uid=user{i:06d},ou=people,{base}\n" for i in idx)
                   + "\n")  # fmt: skip
    return "".join(out)


@pytest.fixture(scope="session")
def ds389_server() -> Iterator[Ds389]:
    with Ds389() as server:
        yield server


@pytest.fixture
def ds389_tree(ds389_server: Ds389, request: pytest.FixtureRequest) -> Tree:
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    base = f"ou={name}-{next(_counter)},{ds389_server.base}"
    ds389_server.load(tree_ldif(base, TREE_USERS, TREE_GROUPS, TREE_MEMBERS))
    return Tree(ds389_server, base)


def ds389_settings(tree: Tree, **overrides: Any) -> dict[str, Any]:
    """Connector settings for `tree`: bound as Directory Manager, inetOrgPerson users under
    its ou=people, groupOfNames under its ou=groups."""
    settings: dict[str, Any] = {
        "type": "ldap",
        "url": tree.server.url,
        "bind_dn": tree.server.admin_dn,
        "bind_password": tree.server.admin_password,
        "users": {"base": tree.people, "filter": "(objectClass=inetOrgPerson)"},
        "groups": {"base": tree.groups, "filter": "(objectClass=groupOfNames)"},
        "timeout": 10,
    }
    settings.update(overrides)
    return settings
