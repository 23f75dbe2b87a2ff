"""Reference attributes with LDAP as the *target* (and as a two-way side), through the CLI,
against one real slapd: the flow copies ou=people into ou=copy, ``manager`` mapped with
``reference = "user"``. The target must hold the DN of the manager's *copy* (not the source
DN, never an entryUUID), a second cycle plans nothing, and in a two-way flow a manager set on
the copy is written back as the DN of the source entry it is linked to.

Checked with plain ldap3 searches, independently of the connector.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import ldap3
import pytest
from click.testing import CliRunner

from syncd.cli.main import main
from tests.peers.directory import BASE, PEOPLE, user_dn, user_uid
from tests.peers.slapd import Slapd

pytestmark = pytest.mark.peers

COPY = f"ou=copy,{BASE}"

CONFIG = """
[state]
url = "sqlite:///{state}"

[connectors.corp]
type = "ldap"
url = "{url}"
bind_dn = "{bind_dn}"
bind_password = "env:REF_LDAP_PASSWORD"
users = {{ base = "{people}", filter = "(objectClass=inetOrgPerson)" }}

[connectors.copy]
type = "ldap"
url = "{url}"
bind_dn = "{bind_dn}"
bind_password = "env:REF_LDAP_PASSWORD"
users = {{ base = "{copy}", filter = "(objectClass=inetOrgPerson)" }}

[flows.mirror]
source = "corp"
target = "copy"
match = ["uid"]
{extra}

[flows.mirror.users.mapping]
uid = "uid"
cn = "cn"
sn = "sn"
manager = {{ from = "manager", reference = "user" }}
"""


class Mirror:
    def __init__(self, tmp: Path, ldap: Slapd, mp: pytest.MonkeyPatch) -> None:
        self.tmp, self.ldap = tmp, ldap
        mp.setenv("REF_LDAP_PASSWORD", ldap.admin_password)
        self.config = tmp / "mirror.toml"
        self.conn = ldap3.Connection(ldap3.Server(ldap.url, get_info=ldap3.NONE),
                                     ldap.admin_dn, ldap.admin_password, auto_bind=True)
        self.conn.add(COPY, ["organizationalUnit"], {"ou": "copy"})
        self.write()

    def write(self, extra: str = "") -> None:
        self.config.write_text(CONFIG.format(
            state=self.tmp / "state.db", url=self.ldap.url, bind_dn=self.ldap.admin_dn,
            people=PEOPLE, copy=COPY, extra=extra))

    def run(self, *args: str) -> dict[str, Any]:
        res = CliRunner().invoke(main, ["run", "--config", str(self.config), "--output",
                                        "json", *args])
        doc = None
        with contextlib.suppress(ValueError):
            doc = json.loads(res.stdout)
        assert res.exit_code == 0 and doc is not None, res.output
        return doc

    def set_manager(self, dn: str, manager: str | None) -> None:
        change = [(ldap3.MODIFY_REPLACE, [manager] if manager else [])]
        assert self.conn.modify(dn, {"manager": change}), self.conn.result

    def manager(self, dn: str) -> str | None:
        self.conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=["manager"])
        got = [r for r in self.conn.response or [] if r.get("type") == "searchResEntry"]
        assert got, dn
        values = got[0]["raw_attributes"].get("manager") or []
        return values[0].decode() if values else None


def copy_dn(i: int) -> str:
    return f"uid={user_uid(i)},{COPY}"


@pytest.fixture
def mirror(tmp_path: Path, slapd: Slapd, monkeypatch: pytest.MonkeyPatch) -> Mirror:
    return Mirror(tmp_path, slapd, monkeypatch)


def test_ldap_target_holds_the_dn_of_the_managers_copy(mirror: Mirror) -> None:
    """Report listed before and after its manager; a manager created later is filled in an
    incremental cycle; a quiet cycle (incremental and full) plans nothing."""
    mirror.set_manager(user_dn(1), user_dn(0))
    mirror.set_manager(user_dn(0), user_dn(3))
    first = mirror.run()
    assert mirror.manager(copy_dn(1)) == copy_dn(0)
    assert mirror.manager(copy_dn(0)) == copy_dn(3)
    assert mirror.manager(copy_dn(2)) is None
    assert first["flows"][0]["result"] == "ok"
    assert mirror.run()["changes"] == []
    assert mirror.run("--full")["changes"] == []
    # a manager changed in the source: the copy follows with the DN of the new manager's copy
    mirror.set_manager(user_dn(1), user_dn(5))
    changed = mirror.run()
    assert [(c["op"], c["name"]) for c in changed["changes"]] == [("update", user_uid(1))]
    assert mirror.manager(copy_dn(1)) == copy_dn(5)
    assert mirror.run("--full")["changes"] == []


def test_two_way_manager_set_on_the_copy_is_written_back_as_the_source_dn(
        mirror: Mirror) -> None:
    mirror.write('mode = "two_way"')
    mirror.set_manager(user_dn(1), user_dn(0))
    mirror.run()
    assert mirror.manager(copy_dn(1)) == copy_dn(0)
    assert mirror.run()["changes"] == []
    # edited on the target side: the source gets the DN of the *source* entry linked to it
    mirror.set_manager(copy_dn(1), copy_dn(4))
    back = mirror.run()
    assert [c["op"] for c in back["changes"]] == ["update"], back
    assert mirror.manager(user_dn(1)) == user_dn(4)
    assert mirror.manager(copy_dn(1)) == copy_dn(4)
    assert mirror.run()["changes"] == []
    assert mirror.run("--full")["changes"] == []
    # cleared on the target side: cleared in the source
    mirror.set_manager(copy_dn(1), None)
    mirror.run()
    assert mirror.manager(user_dn(1)) is None
    assert mirror.run()["changes"] == []
    # a DN of no linked object: not written back (never a guess), said in the notes
    mirror.set_manager(copy_dn(1), f"uid=nobody,{COPY}")
    doc = mirror.run()
    assert mirror.manager(user_dn(1)) is None
    assert any("not written back" in n for n in doc["flows"][0]["notes"]), doc
