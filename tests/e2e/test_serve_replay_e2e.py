"""Entra ID's (and Okta's) documented provisioning sequence, replayed against ``syncd serve
--run-flows`` (a process on a free port), carried by flows from the ``scim_inbox`` directory
into a real slapd and a real Samba AD DC: the directory holds exactly what was sent after
each part of the sequence (create, update of several attributes, disable, members added,
one removed, deletes), in both of Entra's PATCH flavours; a second replay plans nothing.

The sequence is sent in parts (`tests.peers.entra_replay.replay` with ``steps``) and the
directory is polled after each part until it holds the expected entries: every kind of
request reaches the directory as its own change, not folded into one create by the
debounce. Safety through the API: a flood of DELETEs is refused by the flow's thresholds
(nothing deleted, shown by ``status`` and ``log``); ``run --dry-run`` and ``explain`` work on
a flow from the directory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import ldap3
import pytest
from click.testing import CliRunner

from syncd.cli.main import main
from tests.peers.ad_fixtures import AD_GROUP_FILTER, AD_USER_FILTER
from tests.peers.directory import BASE, GROUPS, PEOPLE
from tests.peers.entra_replay import DEFAULT_RUN, failures, load, replay, report, steps_for
from tests.peers.samba import GROUPS as AD_GROUPS
from tests.peers.samba import PEOPLE as AD_PEOPLE
from tests.peers.samba import SambaDC
from tests.peers.slapd import Slapd, free_port

pytestmark = pytest.mark.peers
TOKEN = "e2e-replay-token-0123456789"
DISABLED = f"ou=disabled,{BASE}"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"

HEAD = """
[state]
url = "sqlite:///{state}"

[connectors.entra]
type = "scim_inbox"

[serve]
listen = "127.0.0.1:{port}"
tokens = ["env:E2E_REPLAY_TOKEN"]
directory = "entra"
rate_limit = 0  # replays are bursts from one address (the limiter: tests/unit/test_inbound)
"""

SLAPD = """
[connectors.corp]
type = "ldap"
url = "{url}"
bind_dn = "{bind_dn}"
bind_password = "env:E2E_REPLAY_LDAP_PASSWORD"
groups = {{ base = "{groups}", filter = "(objectClass=groupOfNames)" }}

[connectors.corp.users]
base = "{people}"
filter = "(objectClass=inetOrgPerson)"

[connectors.corp.users.write]
rdn_attribute = "uid"
disable = {{ method = "move", ou = "{disabled}" }}

[flows.entra-to-corp]
source = "entra"
target = "corp"
deprovision = "delete"
match = ["uid"]
{safety}

[flows.entra-to-corp.users.mapping]
uid = "userName"
cn = "displayName"
displayName = "displayName"
sn = "name.familyName"
givenName = "name.givenName"
mail = "emails.work"
employeeNumber = "enterprise.employeeNumber"
description = "nickName"
active = "active"

[flows.entra-to-corp.groups.mapping]
cn = "displayName"
"""

AD = """
[connectors.ad]
type = "ldap"
url = "{url}"
bind_dn = "{bind_dn}"
bind_password = "env:E2E_REPLAY_AD_PASSWORD"
anchor = "objectGUID"

[connectors.ad.users]
base = "{people}"
filter = "{user_filter}"

[connectors.ad.users.write]
rdn_attribute = "cn"
object_classes = ["top", "person", "organizationalPerson", "user"]

[connectors.ad.groups]
base = "{groups}"
filter = "{group_filter}"

[connectors.ad.groups.write]
object_classes = ["top", "group"]

[flows.entra-to-ad]
source = "entra"
target = "ad"
deprovision = "delete"
match = ["sAMAccountName"]

[flows.entra-to-ad.users.mapping]
cn = "displayName"
sAMAccountName = "externalId"
userPrincipalName = "userName"
displayName = "displayName"
sn = "name.familyName"
givenName = "name.givenName"
mail = "emails.work"
employeeNumber = "enterprise.employeeNumber"
description = "nickName"
active = "active"

[flows.entra-to-ad.groups.mapping]
cn = "displayName"
sAMAccountName = "displayName"
"""

#: Where the sequence is cut: the directory is checked after each part (step ids, inclusive).
CUTS = {
    "entra": ("user2-create", "user1-verify-update", "user1-verify-disabled",
              "group-verify-added", None),
    "okta": ("user2-create", "user1-verify-update", "group-verify-added",
             "group-verify-swapped", None),
}


# -- syncd serve as a process ----------------------------------------------------------------

class Served:
    """``syncd serve`` on a free port with `config` (HEAD + `flows`), stopped by PID."""

    def __init__(self, tmp: Path, flows: str, *, run_flows: bool) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.config = tmp / "syncd.toml"
        self.config.write_text(HEAD.format(state=tmp / "state.db", port=self.port) + flows)
        env = {**os.environ, "E2E_REPLAY_TOKEN": TOKEN}
        self.log = (tmp / "serve.log").open("ab")
        args = [sys.executable, "-m", "syncd", "serve", "-c", str(self.config),
                *(["--run-flows"] if run_flows else [])]
        self.proc = subprocess.Popen(args, env=env, stdout=self.log, stderr=subprocess.STDOUT)
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
        self.stop()
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


def cli(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, list(args))
    return res.exit_code, res.output


def cli_json(*args: str) -> Any:
    code, out = cli(*args, "-o", "json")
    try:
        return json.loads(out[out.index("{"):])
    except ValueError:
        raise AssertionError(f"exit {code}: {out}") from None


def journal(config: Path, *more: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = cli_json("log", "-c", str(config), "--limit", "0",
                                             *more)["entries"]
    return entries


def settle(snapshot: Callable[[], Any], want: Any, timeout: float = 20.0) -> float:
    """Poll `snapshot` until it equals `want`; seconds it took (assert with a diff if not)."""
    started = time.monotonic()
    got = snapshot()
    while got != want and time.monotonic() - started < timeout:
        time.sleep(0.05)
        got = snapshot()
    assert got == want
    return time.monotonic() - started


def idle(config: Path) -> None:
    """Wait until no triggered run is under way: the directory can show a run's last write
    before that run has journaled its changes and its own result (a race seen at load 25)."""
    settle(lambda: [e for e in journal(config, "--op", "run") if e["result"] == "running"], [])


def parts(flavour: str, family: str) -> list[list[str]]:
    """The provision steps of `flavour` cut after each of `CUTS[family]`."""
    ids = [s["id"] for s in steps_for(flavour, ("provision",))]
    out, start = [], 0
    for cut in CUTS[family]:
        end = len(ids) if cut is None else ids.index(cut) + 1
        out.append(ids[start:end])
        start = end
    return out


def send(url: str, flavour: str, run: str, ids: dict[str, str], **kw: Any) -> None:
    results = replay(url, TOKEN, flavour, run=run, ids=ids, **kw)
    assert results and not failures(results), report(results)


def names(flavour: str, run: str) -> dict[str, str]:
    """The sequence's vars for `run` (userName, externalId, emails, group name)."""
    return {k: v.replace("{run}", run) for k, v in load(flavour)["vars"].items()}


# -- slapd -----------------------------------------------------------------------------------

def _entries(conn: ldap3.Connection, flt: str) -> dict[str, dict[str, list[str]]]:
    conn.search(BASE, flt, attributes=["*"])
    return {e.entry_dn.lower(): {k.lower(): sorted(str(v) for v in vs)
                                 for k, vs in e.entry_attributes_as_dict.items()}
            for e in conn.entries}


def _slapd_conn(slapd: Slapd) -> ldap3.Connection:
    return ldap3.Connection(ldap3.Server(slapd.url), slapd.admin_dn, slapd.admin_password,
                            auto_bind=True)


def _slapd_flows(slapd: Slapd, monkeypatch: pytest.MonkeyPatch, safety: str = "") -> str:
    monkeypatch.setenv("E2E_REPLAY_LDAP_PASSWORD", slapd.admin_password)
    # `syncd run` and `explain` resolve [serve] tokens too, though they serve nothing
    monkeypatch.setenv("E2E_REPLAY_TOKEN", TOKEN)
    slapd.add(f"dn: {DISABLED}\nobjectClass: organizationalUnit\nou: disabled\n")
    return SLAPD.format(url=slapd.url, bind_dn=slapd.admin_dn, groups=GROUPS, people=PEOPLE,
                        disabled=DISABLED, safety=safety)


PERSON = ["inetOrgPerson", "organizationalPerson", "person", "top"]


def _person(user_name: str, cn: str, given: str, sn: str, mail: str,
            **more: str) -> dict[str, list[str]]:
    attrs = {"objectclass": sorted(PERSON), "uid": [user_name], "cn": [cn],
             "displayname": [cn], "givenname": [given], "sn": [sn], "mail": [mail]}
    return {**attrs, **{k.lower(): [v] for k, v in more.items()}}


def slapd_expected(family: str, stage: int, v: dict[str, str], run: str
                   ) -> dict[str, dict[str, list[str]]]:
    """What slapd holds after part `stage` of the sequence (CUTS)."""
    u1, u2, g = v["user1_userName"], v["user2_userName"], v["group_displayName"]
    if family == "entra":
        one = _person(u1, "Adele Vance", "Adele", "Vance", v["user1_email"])
        if stage >= 1:
            one = _person(u1, "Adele Vance-Smith", "Adela", "Vance-Smith", v["user1_email2"],
                          employeeNumber=f"E{run}", description="Babs")
        where1 = DISABLED if stage >= 2 else PEOPLE
        two = _person(u2, "Alex Wilber", "Alex", "Wilber", v["user2_email"])
        members = [] if stage < 3 else [1, 2] if stage == 3 else [1]
    else:
        one = _person(u1, "Test User", "Test", "User", u1)
        if stage >= 1:
            one = _person(u1, "Another User", "Another", "User", u1)
        where1 = PEOPLE
        two = _person(u2, "Other User", "Other", "User", u2)
        members = [] if stage < 2 else [1] if stage == 2 else [2] if stage == 3 else [1, 2]
    dn1, dn2 = f"uid={u1},{where1}", f"uid={u2},{PEOPLE}"
    out = {dn1.lower(): one, dn2.lower(): two}
    if members or (family == "entra" and stage >= 3) or (family == "okta" and stage >= 2):
        out[f"cn={g},{GROUPS}".lower()] = {
            "objectclass": ["groupOfNames", "top"], "cn": [g],
            "member": sorted({1: dn1, 2: dn2}[i] for i in members)}
    return out


def _run_filter(run: str) -> str:
    return f"(|(uid=*{run}*)(cn=*{run}*))"


@pytest.mark.parametrize("flavour", ["aadOptscim062020", "AzureAdScimPatch2017", "oin"])
def test_replay_into_slapd(flavour: str, tmp_path: Path, slapd: Slapd,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    family = "okta" if flavour == "oin" else "entra"
    run = DEFAULT_RUN
    v = names(flavour, run)
    conn = _slapd_conn(slapd)
    try:
        last = slapd_expected(family, len(CUTS[family]) - 1, v, run)
        # Okta never deletes a user: it deactivates it (moved to the disabled OU)
        after = {} if family == "entra" else {
            dn.replace(f",{PEOPLE}", f",{DISABLED}"): a for dn, a in last.items()
            if dn.startswith("uid=")}
        scenario(tmp_path, _slapd_flows(slapd, monkeypatch), flavour, family,
                 lambda: _entries(conn, _run_filter(run)),
                 lambda stage: slapd_expected(family, stage, v, run), after)
    finally:
        conn.unbind()


def scenario(tmp: Path, flows: str, flavour: str, family: str, snapshot: Callable[[], Any],
             expected: Callable[[int], Any], after: Any) -> None:
    """Provision in parts through ``serve --run-flows`` (the directory checked after each),
    replay again (nothing planned), deprovision (the directory ends as `after`)."""
    run = DEFAULT_RUN
    ids: dict[str, str] = {}
    s = Served(tmp, flows, run_flows=True)
    try:
        for stage, steps in enumerate(parts(flavour, family)):
            send(s.url, flavour, run, ids, phases=("provision",), steps=steps)
            settle(snapshot, expected(stage))
        idle(s.config)
        failed = [e for e in journal(s.config) if e["result"] not in ("ok", "running")]
        assert not failed, failed  # which change, and the error the target gave
    finally:
        s.stop()
    last = expected(len(CUTS[family]) - 1)

    # A second replay (the objects exist: found by the filters, PATCHed, not POSTed) plans
    # nothing. Served without --run-flows, so that one run sees all of it at once.
    before = journal(s.config)
    s = Served(tmp, flows, run_flows=False)
    try:
        send(s.url, flavour, run, ids, phases=("provision",), existing=True)
    finally:
        s.stop()
    code, out = cli("run", "-c", str(s.config), "--detailed-exitcode", "-o", "json")
    doc = json.loads(out)
    (flow,) = doc["flows"]
    assert code == 0 and doc["changes"] == [] and flow["applied"] == 0, out
    assert not any(n for ops in doc["summary"].values() for n in ops.values()), out
    assert flow["result"] == "ok" and set(flow["reads"].values()) == {"incremental"}, out
    changes = ("--op", "create", "--op", "update", "--op", "set_members", "--op", "delete",
               "--op", "deprovision")
    assert journal(s.config, *changes) == [e for e in before if e["op"] != "run"]
    assert snapshot() == last

    # Deprovision: Entra deletes the group and both users, and so does the flow
    s = Served(tmp, flows, run_flows=True)
    try:
        send(s.url, flavour, run, ids, phases=("deprovision",))
        settle(snapshot, after)
        idle(s.config)
        ops = {(e["kind"], e["op"], e["result"]) for e in journal(s.config)
               if e["op"] in ("delete", "deprovision")}
        assert ops == ({("user", "delete", "ok"), ("group", "delete", "ok")}
                       if family == "entra" else {("group", "delete", "ok")}), ops
        log = (tmp / "serve.log").read_text()
        assert TOKEN not in log and "1mz050nq" not in log  # Okta's password
    finally:
        s.stop()


# -- Samba AD --------------------------------------------------------------------------------

#: userAccountControl: NORMAL_ACCOUNT | PASSWD_NOTREQD (no password is ever sent), and with
#: ACCOUNTDISABLE (bit 2, what the LDAP target sets and clears for ``active``).
UAC_ENABLED, UAC_DISABLED = 544, 546
AD_ATTRS = ["cn", "sAMAccountName", "userPrincipalName", "displayName", "sn", "givenName",
            "mail", "employeeNumber", "description", "userAccountControl", "member"]


def _ad_entries(dc: SambaDC, run: str) -> dict[str, dict[str, list[str]]]:
    conn = dc.admin
    conn.search(AD_PEOPLE.split(",", 1)[1], f"(sAMAccountName=*{run}*)", attributes=AD_ATTRS)
    return {e.entry_dn.lower(): {k.lower(): sorted(str(x) for x in vs)
                                 for k, vs in e.entry_attributes_as_dict.items() if vs}
            for e in conn.entries}


def _ad_person(v: dict[str, str], n: int, cn: str, given: str, sn: str, mail: str,
               uac: int, **more: str) -> dict[str, list[str]]:
    attrs = {"cn": [cn], "samaccountname": [v[f"user{n}_externalId"]],
             "userprincipalname": [v[f"user{n}_userName"]], "displayname": [cn],
             "givenname": [given], "sn": [sn], "mail": [mail],
             "useraccountcontrol": [str(uac)]}
    return {**attrs, **{k.lower(): [x] for k, x in more.items()}}


def ad_expected(stage: int, v: dict[str, str], run: str) -> dict[str, dict[str, list[str]]]:
    one = _ad_person(v, 1, "Adele Vance", "Adele", "Vance", v["user1_email"], UAC_ENABLED)
    if stage >= 1:
        one = _ad_person(v, 1, "Adele Vance-Smith", "Adela", "Vance-Smith", v["user1_email2"],
                         UAC_DISABLED if stage >= 2 else UAC_ENABLED,
                         employeeNumber=f"E{run}", description="Babs")
    two = _ad_person(v, 2, "Alex Wilber", "Alex", "Wilber", v["user2_email"], UAC_ENABLED)
    dn1, dn2 = f"CN={one['cn'][0]},{AD_PEOPLE}", f"CN=Alex Wilber,{AD_PEOPLE}"
    out = {dn1.lower(): one, dn2.lower(): two}
    if stage >= 3:
        g = v["group_displayName"]
        group = {"cn": [g], "samaccountname": [g]}
        group["member"] = sorted([dn1, dn2] if stage == 3 else [dn1])
        out[f"CN={g},{AD_GROUPS}".lower()] = group
    return out


def _ad_flows(dc: SambaDC, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("E2E_REPLAY_AD_PASSWORD", dc.admin_password)
    monkeypatch.setenv("E2E_REPLAY_TOKEN", TOKEN)
    return AD.format(url=dc.url, bind_dn=dc.admin_dn, people=AD_PEOPLE, groups=AD_GROUPS,
                     user_filter=AD_USER_FILTER, group_filter=AD_GROUP_FILTER)


@pytest.mark.parametrize("flavour", ["aadOptscim062020", "AzureAdScimPatch2017"])
def test_replay_into_samba_ad(flavour: str, tmp_path: Path, samba_dc: SambaDC,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    v = names(flavour, DEFAULT_RUN)
    scenario(tmp_path, _ad_flows(samba_dc, monkeypatch), flavour, "entra",
             lambda: _ad_entries(samba_dc, DEFAULT_RUN),
             lambda stage: ad_expected(stage, v, DEFAULT_RUN), {})


# -- safety through the API ------------------------------------------------------------------

FLOOD = 10


def _flood_users(s: Served, n: int) -> list[tuple[str, str]]:
    """`n` users created over SCIM: (id, userName)."""
    out = []
    for i in range(n):
        name = f"flood{i:02d}"
        r = s.http.post("/Users", json={"schemas": [USER], "userName": name,
                                         "displayName": f"Flood {i}",
                                         "name": {"familyName": "Flood"}, "active": True})
        assert r.status_code == 201, r.text
        out.append((r.json()["id"], name))
    return out


def _uids(conn: ldap3.Connection) -> set[str]:
    conn.search(BASE, "(uid=flood*)", attributes=["uid"])
    return {str(e.uid) for e in conn.entries}


def _runs(config: Path, result: str) -> list[dict[str, Any]]:
    return journal(config, "--op", "run", "--result", result)


def test_deprovision_flood_through_the_api_is_refused(tmp_path: Path, slapd: Slapd,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """DELETEs of every user, sent at once: the triggered runs plan the deletes and the
    flow's thresholds refuse them (nothing deleted in slapd); status and log say so; the
    plan stays pending (dry run, explain) until an operator lets it through.

    The thresholds refuse any run that deletes more than 5 % of the linked users, so the
    outcome does not depend on how the debounce cuts the burst into runs: a refused run
    leaves the cursor where it was, so every later run plans all deletes so far."""
    safety = "safety = { max_deprovision_percent = 5, percent_floor = 0 }"
    conn = _slapd_conn(slapd)
    s = Served(tmp_path, _slapd_flows(slapd, monkeypatch, safety), run_flows=True)
    cfg = str(s.config)
    try:
        users = _flood_users(s, FLOOD)
        settle(lambda: _uids(conn), {n for _i, n in users})
        with ThreadPoolExecutor(FLOOD) as pool:
            codes = list(pool.map(lambda u: s.http.delete(f"/Users/{u[0]}").status_code,
                                  users))
        assert codes == [204] * FLOOD  # the API accepted them: they are the source's truth

        def refused_all() -> bool:  # the run after the last DELETE saw all of them
            runs = _runs(s.config, "refused")
            return bool(runs) and f"{FLOOD} of {FLOOD} linked users" in json.dumps(runs[0])

        settle(refused_all, True)
        assert _uids(conn) == {n for _i, n in users}  # nothing deleted
        assert not journal(s.config, "--op", "delete")
        (last, *_) = cli_json("status", "-c", cfg)["entra-to-corp"]["runs"]
        assert last["result"] == "refused" and last["summary"]["plan"]["user"]["delete"] == FLOOD
        assert "over max_deprovision_percent=5" in last["error"]
        assert "flood03" in last["error"]  # named as the directory names them, not by id

        # The plan stays pending: a dry run shows it (and its refusal), explain says why
        code, out = cli("run", "-c", cfg, "--dry-run", "-o", "json")
        doc = json.loads(out)
        assert code == 3 and doc["flows"][0]["result"] == "refused", out
        assert sorted(c["name"] for c in doc["changes"] if c["op"] == "delete") == sorted(
            n for _i, n in users)
        code, out = cli("explain", "-c", cfg, "flood03")
        assert code == 0 and "source: not found (gone from the source)" in out, out
        assert "next run would:\n    delete user" in out, out
        assert _uids(conn) == {n for _i, n in users}

        # ... until an operator lets it through
        code, out = cli("run", "-c", cfg, "--allow-deletes", "-o", "json")
        assert code == 0 and json.loads(out)["flows"][0]["applied"] == FLOOD, out
        assert _uids(conn) == set()
    finally:
        s.stop()
        conn.unbind()


def test_a_flood_spread_over_runs_is_refused(tmp_path: Path, slapd: Slapd,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The same DELETEs one at a time, each applied before the next is sent: every run
    plans one delete, under max_deprovision = 3 -- but a flow from a SCIM service provider
    counts its deprovisions over a window (safety.window, 1h by default for them), so the
    fourth is refused and the rest wait with it."""
    conn = _slapd_conn(slapd)
    s = Served(tmp_path, _slapd_flows(slapd, monkeypatch, "safety = { max_deprovision = 3 }"),
               run_flows=True)
    try:
        users = _flood_users(s, FLOOD)
        settle(lambda: _uids(conn), {n for _i, n in users})
        for i, (uid, _name) in enumerate(users):
            assert s.http.delete(f"/Users/{uid}").status_code == 204
            settle(lambda i=i: len(journal(s.config, "--op", "delete"))  # type: ignore[misc]
                   + len(_runs(s.config, "refused")) > i, True)
        assert len(_uids(conn)) == FLOOD - 3
        # the first refusal is the window's (later ones hold every delete waiting since)
        refused = _runs(s.config, "refused")
        assert "already within the last 1h" in json.dumps(refused[-1]), refused
    finally:
        s.stop()
        conn.unbind()
