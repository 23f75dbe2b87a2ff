"""End-to-end helpers: a config file wired to the real peers, the CLI, and a SCIM reader.

The SCIM side is verified with plain HTTP (httpx), independent of syncd's own connector, so
a bug in the connector cannot hide itself.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from syncd.cli.main import main
from tests.peers.directory import GROUPS, PEOPLE
from tests.peers.scim_servers import _Peer
from tests.peers.slapd import Slapd

CONFIG = """
[state]
url = "sqlite:///{state}"

[connectors.corp]
type = "ldap"
url = "{ldap_url}"
bind_dn = "{bind_dn}"
bind_password = "env:E2E_LDAP_PASSWORD"
users = {{ base = "{people}", filter = "(objectClass=inetOrgPerson)" }}
groups = {{ base = "{groups}", filter = "(objectClass=groupOfNames)" }}

[connectors.app]
type = "scim"
url = "{scim_url}"
token = "env:E2E_SCIM_TOKEN"
{app_extra}

[flows.corp-to-app]
source = "corp"
target = "app"
deprovision = "{deprovision}"
match = {match}
{extra}

[flows.corp-to-app.users.mapping]
userName = "uid"
displayName = "cn"
"name.givenName" = "givenName"
"name.familyName" = "sn"
"emails.work" = "mail"
title = "title"
"enterprise.employeeNumber" = "employeeNumber"
externalId = "entryUUID"
{mapping}
{scope}

[flows.corp-to-app.groups.mapping]
displayName = "cn"
"""


@dataclass
class Result:
    code: int
    out: str
    doc: dict[str, Any] | None


class Sync:
    """A syncd installation pointed at one slapd and one SCIM server."""

    def __init__(self, tmp: Path, ldap: Slapd, scim: _Peer, mp: pytest.MonkeyPatch) -> None:
        self.tmp, self.ldap, self.scim = tmp, ldap, scim
        #: scim2-server stores every core and enterprise attribute; django-scim2-server not
        self.full_scim = type(scim).__name__ == "Scim2Server"
        self.state = tmp / "state.db"
        self.config = tmp / "syncd.toml"
        mp.setenv("E2E_LDAP_PASSWORD", ldap.admin_password)
        mp.setenv("E2E_SCIM_TOKEN", scim.token or "")
        self.http = httpx.Client(base_url=scim.url, timeout=30,
                                 headers={"Authorization": f"Bearer {scim.token}"})
        self.write()

    def write(self, *, deprovision: str = "disable", match: str = '["userName"]',
              extra: str = "", scope: str = "", app_extra: str = "",
              mapping: str = "") -> None:
        """`mapping`: more lines of the users' mapping table."""
        self.config.write_text(CONFIG.format(
            state=self.state, ldap_url=self.ldap.url, bind_dn=self.ldap.admin_dn,
            people=PEOPLE, groups=GROUPS, scim_url=self.scim.url, deprovision=deprovision,
            match=match, extra=extra, scope=scope, app_extra=app_extra, mapping=mapping))

    def run(self, *args: str) -> Result:
        res = CliRunner().invoke(main, ["run", "--config", str(self.config), "--output",
                                        "json", *args])
        doc = None
        with contextlib.suppress(ValueError):
            doc = json.loads(res.stdout)
        return Result(res.exit_code, res.output, doc)

    # -- the SCIM side, read with plain HTTP ---------------------------------------------
    def list(self, resource: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        start = 1
        while True:
            r = self.http.get(f"/{resource}", params={"startIndex": start, "count": 100})
            r.raise_for_status()
            body = r.json()
            page = body.get("Resources", [])
            out += page
            if not page or len(out) >= body.get("totalResults", 0):
                return out
            start += len(page)

    def user(self, user_name: str) -> dict[str, Any]:
        found = [u for u in self.list("Users") if u["userName"] == user_name]
        assert len(found) == 1, f"{len(found)} users named {user_name}"
        return found[0]

    def group(self, name: str) -> dict[str, Any]:
        found = [g for g in self.list("Groups") if g["displayName"] == name]
        assert len(found) == 1, f"{len(found)} groups named {name}"
        return found[0]

    def member_names(self, group: str) -> set[str]:
        ids = {m["value"] for m in self.group(group).get("members") or []}
        return {u["userName"] for u in self.list("Users") if u["id"] in ids}


@pytest.fixture
def sync(tmp_path: Path, slapd: Slapd, scim_server: _Peer,
         monkeypatch: pytest.MonkeyPatch) -> Sync:
    return Sync(tmp_path, slapd, scim_server, monkeypatch)


@pytest.fixture
def sync_scim2(tmp_path: Path, slapd: Slapd, scim2_server: _Peer,
               monkeypatch: pytest.MonkeyPatch) -> Sync:
    return Sync(tmp_path, slapd, scim2_server, monkeypatch)
