"""`syncd serve` as a process on a free port: scim2-tester finds no failure, and a user and a
group provisioned over SCIM reach a real slapd through a flow (``--run-flows``), within a
second or so of the request."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import ldap3
import pytest

from tests.peers.directory import GROUPS, PEOPLE
from tests.peers.scim_tester import run_checks
from tests.peers.slapd import Slapd, free_port

pytestmark = pytest.mark.peers
TOKEN = "e2e-serve-token-0123456789"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"

CONFIG = """
[state]
url = "sqlite:///{state}"

[connectors.entra]
type = "scim_inbox"

[serve]
listen = "127.0.0.1:{port}"
tokens = ["env:E2E_SERVE_TOKEN"]
directory = "entra"
# scim2-tester and the replays are bursts from one address: on an idle machine they pass the
# default 200 requests/s and get 429s (the limiter has its own tests: tests/unit/test_inbound)
rate_limit = 0
{flows}
"""

FLOWS = """
[connectors.corp]
type = "ldap"
url = "{ldap_url}"
bind_dn = "{bind_dn}"
bind_password = "env:E2E_LDAP_PASSWORD"
groups = {{ base = "{groups}", filter = "(objectClass=groupOfNames)" }}

[connectors.corp.users]
base = "{people}"
filter = "(objectClass=inetOrgPerson)"

[connectors.corp.users.write]
rdn_attribute = "uid"

[flows.entra-to-corp]
source = "entra"
target = "corp"
deprovision = "delete"
match = ["uid"]

[flows.entra-to-corp.users.mapping]
uid = "userName"
cn = "displayName"
sn = {{ coalesce = ["name.familyName", "displayName"] }}
givenName = "name.givenName"
mail = "emails.work"
title = "title"

[flows.entra-to-corp.groups.mapping]
cn = "displayName"
"""


class Served:
    def __init__(self, tmp: Path, flows: str, run_flows: bool) -> None:
        self.port = free_port()
        self.config = tmp / "syncd.toml"
        self.config.write_text(CONFIG.format(state=tmp / "state.db", port=self.port,
                                             flows=flows))
        env = {**os.environ, "E2E_SERVE_TOKEN": TOKEN}
        args = [sys.executable, "-m", "syncd", "serve", "-c", str(self.config)]
        self.log = (tmp / "serve.log").open("wb")
        self.proc = subprocess.Popen([*args, *(["--run-flows"] if run_flows else [])],
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}/v2"
        self.http = httpx.Client(base_url=self.url, timeout=30,
                                 headers={"Authorization": f"Bearer {TOKEN}"})
        # a dead process fails at once (below); a live one may take long to import at load 25
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:  # poll for readiness
            assert self.proc.poll() is None, (tmp / "serve.log").read_text()
            try:
                if self.http.get("/ServiceProviderConfig").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError("syncd serve did not become ready")

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path, "", run_flows=False)
    yield s
    s.stop()


def test_scim2_tester_finds_no_failure(served: Served) -> None:
    counts, failures = run_checks(served.url, TOKEN)
    assert not failures, "\n".join(failures)
    assert counts["SUCCESS"] >= 130, counts


def _ldap(slapd: Slapd) -> ldap3.Connection:
    return ldap3.Connection(ldap3.Server(slapd.url), slapd.admin_dn, slapd.admin_password,
                            auto_bind=True)


def _wait_for(check: object, timeout: float = 15.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():  # type: ignore[operator]
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError("not reached in time")


def test_provisioned_over_scim_reaches_slapd(tmp_path: Path, slapd: Slapd,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("E2E_LDAP_PASSWORD", slapd.admin_password)
    flows = FLOWS.format(ldap_url=slapd.url, bind_dn=slapd.admin_dn, groups=GROUPS,
                         people=PEOPLE)
    s = Served(tmp_path, flows, run_flows=True)
    conn = _ldap(slapd)
    try:
        r = s.http.post("/Users", json={
            "schemas": [USER], "userName": "zed.scim", "displayName": "Zed Scim",
            "name": {"givenName": "Zed", "familyName": "Scim"}, "active": True,
            "emails": [{"value": "zed@example.com", "type": "work", "primary": True}],
            "password": "never-stored"})
        assert r.status_code == 201, r.text
        uid = r.json()["id"]
        dn = f"uid=zed.scim,{PEOPLE}"

        def has(attr: str, value: str) -> bool:
            conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=[attr])
            return bool(conn.entries) and value in conn.entries[0][attr].values

        delay = _wait_for(lambda: has("mail", "zed@example.com"))
        print(f"SCIM create -> slapd entry: {delay:.2f} s")
        r = s.http.patch(f"/Users/{uid}", json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "Replace", "value": {"title": "Engineer",
                                                       "name.familyName": "Scimmer"}}]})
        assert r.status_code in (200, 204), r.text
        _wait_for(lambda: has("title", "Engineer") and has("sn", "Scimmer"))
        r = s.http.post("/Groups", json={"schemas": [GROUP], "displayName": "scim-staff",
                                         "members": [{"value": uid}]})
        assert r.status_code == 201, r.text
        gdn = f"cn=scim-staff,{GROUPS}"

        def member() -> bool:
            conn.search(GROUPS, "(cn=scim-staff)", attributes=["member"])
            return bool(conn.entries) and dn.lower() in [
                v.lower() for v in conn.entries[0]["member"].values]

        _wait_for(member)
        assert s.http.delete(f"/Users/{uid}").status_code == 204

        def gone() -> bool:
            conn.search(PEOPLE, "(uid=zed.scim)", attributes=["uid"])
            return not conn.entries

        _wait_for(gone)
        assert gdn  # the group stays, without the deleted user
        log = (tmp_path / "serve.log").read_text()
        assert TOKEN not in log and "never-stored" not in log
    finally:
        conn.unbind()
        s.stop()
