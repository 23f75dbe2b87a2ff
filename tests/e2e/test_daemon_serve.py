"""`syncd daemon` with ``[serve]``: one process serves SCIM over native TLS (a throwaway CA,
verification on) and carries what it receives into a real slapd within about a second,
through debounced runs of the flow reading the directory that never overlap; what the flow's
mapping cannot read is a 400 that says why; requests are counted on /metrics and the status
page; SIGTERM stops the listener and exits 0; the token is never logged."""

from __future__ import annotations

import itertools
import os
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import ldap3
import pytest

from tests.e2e.test_daemon import DaemonProc, daemons, finished, runs, wait_for
from tests.peers.directory import GROUPS, PEOPLE
from tests.peers.slapd import Slapd, free_port
from tests.unit.test_daemon_metrics import value
from tests.unit.test_serve_edge import make_certificates

pytestmark = pytest.mark.peers
assert daemons  # the fixture, imported for its use below
TOKEN = "e2e-daemon-serve-token-0123456789"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
FLOW = "entra-to-corp"

CONFIG = """
[state]
url = "sqlite:///{state}"

[metrics]
listen = "127.0.0.1:{metrics}"

[connectors.entra]
type = "scim_inbox"

[serve]
listen = "127.0.0.1:{port}"
tokens = ["env:E2E_SERVE_TOKEN"]
directory = "entra"
tls_cert = "{tls}/server.pem"
tls_key = "{tls}/server.key"

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

[flows.{flow}]
source = "entra"
target = "corp"
deprovision = "delete"
match = ["uid"]

[flows.{flow}.schedule]
interval = "1h"

[flows.{flow}.users.mapping]
uid = "userName"
cn = "displayName"
sn = {{ coalesce = ["name.familyName", "displayName"] }}
mail = "emails.work"
employeeType = {{ if = {{ attribute = "enterprise.employeenumber", lt = 100000 }}, \
then = "staff", else = "contractor", on_empty = "keep" }}

[flows.{flow}.groups.mapping]
cn = "displayName"
"""


def test_the_daemon_serves_scim_and_runs_the_flow_on_each_change(
        tmp_path: Path, slapd: Slapd, daemons: list[DaemonProc]) -> None:
    tls = tmp_path / "tls"
    tls.mkdir()
    ca = make_certificates(tls)
    port, metrics = free_port(), free_port()
    config = tmp_path / "syncd.toml"
    config.write_text(CONFIG.format(
        state=tmp_path / "state.db", metrics=metrics, port=port, tls=tls, ldap_url=slapd.url,
        bind_dn=slapd.admin_dn, groups=GROUPS, people=PEOPLE, flow=FLOW))
    d = DaemonProc(config, tmp_path, env={"E2E_SERVE_TOKEN": TOKEN,
                                          "E2E_LDAP_PASSWORD": slapd.admin_password})
    daemons.append(d)
    state = tmp_path / "state.db"
    base = f"https://127.0.0.1:{port}/v2"
    verify = ssl.create_default_context(cafile=str(ca))
    http = httpx.Client(base_url=base, verify=verify, timeout=30,
                        headers={"Authorization": f"Bearer {TOKEN}"})
    conn = ldap3.Connection(ldap3.Server(slapd.url), slapd.admin_dn, slapd.admin_password,
                            auto_bind=True)

    def up() -> bool:
        try:
            return http.get("/ServiceProviderConfig").status_code == 200
        except httpx.ConnectError:
            return False

    def uids() -> set[str]:
        conn.search(PEOPLE, "(uid=scim.*)", attributes=["uid"])
        return {str(e.uid.value) for e in conn.entries}

    try:
        wait_for(up, 60, "the SCIM endpoint over TLS", d)
        wait_for(lambda: len(finished(state)) >= 1, 60, "the startup run", d)

        # one create: in slapd about a second later (debounce 0.2 s + a run)
        sent = time.monotonic()
        r = http.post("/Users", json={"schemas": [USER], "userName": "scim.zed",
                                      "displayName": "Zed", "emails": [
                                          {"value": "zed@example.com", "type": "work"}]})
        assert r.status_code == 201, r.text
        wait_for(lambda: "scim.zed" in uids(), 30, "the user in slapd", d)
        delay = time.monotonic() - sent
        print(f"SCIM create -> slapd entry through the daemon: {delay:.2f} s")
        assert delay < 5, delay

        # what the mapping cannot read is refused, saying why, and nothing is stored
        r = http.post("/Users", json={"schemas": [USER, ENTERPRISE], "userName": "scim.bad",
                                      "displayName": "Bad",
                                      ENTERPRISE: {"employeeNumber": "E-12"}})
        assert r.status_code == 400, r.text
        assert r.json()["scimType"] == "invalidValue"
        assert FLOW in r.json()["detail"] and "employeeType" in r.json()["detail"]
        assert http.get("/Users", params={"filter": 'userName eq "scim.bad"'}).json()[
            "totalResults"] == 0

        # a burst of creates and a group: every one arrives, runs never overlap
        def create(i: int) -> str:
            r = http.post("/Users", json={"schemas": [USER], "userName": f"scim.u{i:02d}",
                                          "displayName": f"U {i}"})
            assert r.status_code == 201, r.text
            return str(r.json()["id"])

        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(create, range(20)))
        r = http.post("/Groups", json={"schemas": [GROUP], "displayName": "scim-staff",
                                       "members": [{"value": i} for i in ids[:5]]})
        assert r.status_code == 201, r.text
        want = {"scim.zed", *(f"scim.u{i:02d}" for i in range(20))}
        wait_for(lambda: uids() == want, 60, "the burst in slapd", d)

        def members() -> int:
            conn.search(GROUPS, "(cn=scim-staff)", attributes=["member"])
            return len(conn.entries[0]["member"].values) if conn.entries else 0

        wait_for(lambda: members() == 5, 30, "the group in slapd", d)
        wait_for(lambda: all(r.end is not None for r in runs(state)), 30, "runs to end", d)
        spans = sorted((r.start, r.end) for r in runs(state) if r.end is not None)
        assert len(spans) >= 3
        for (_s1, e1), (s2, _e2) in itertools.pairwise(spans):
            assert e1 <= s2, f"runs overlap: one ended {e1}, the next started {s2}"
        assert len(spans) < 23, "not debounced: about a run per request"

        body = httpx.get(f"http://127.0.0.1:{metrics}/metrics", timeout=10).text
        assert value(body, "syncd_scim_requests_total", kind="user", method="POST",
                     status="201") == 21
        assert value(body, "syncd_scim_requests_total", kind="user", method="POST",
                     status="400") == 1
        assert value(body, "syncd_scim_requests_total", kind="group", method="POST",
                     status="201") == 1
        page = httpx.get(f"http://127.0.0.1:{metrics}/", timeout=10).text
        assert "Received over SCIM" in page

        code, took = d.stop()
        assert code == 0, d.stderr.read_text()[-3000:]
        assert took < 30
        assert not up(), "still listening after SIGTERM"
    finally:
        http.close()
        conn.unbind()
    log = d.stderr.read_text() + d.stdout.read_text()
    assert TOKEN not in log
    assert d.logged("serving SCIM 2.0 on https://127.0.0.1:")
    assert os.path.exists(state)
