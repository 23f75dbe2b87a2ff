"""`syncd check` (the doctor) against real slapd and scim2-server: what works, what does not,
and a scope typo named before any run could take it for "everyone left"."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from syncd.cli.main import main
from tests.e2e.conftest import Sync


def check(sync: Sync, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["check", "-c", str(sync.config), *args])
    return res.exit_code, res.stdout + res.stderr


def test_a_working_setup_passes_and_says_what_it_saw(sync_scim2: Sync) -> None:
    code, out = check(sync_scim2, "-o", "json")
    assert code == 0, out
    doc = json.loads(out)
    assert doc["ok"] is True and doc["problems"] == []
    assert doc["connectors"]["corp"]["ok"] and doc["connectors"]["app"]["ok"]
    probe = doc["connectors"]["corp"]["probe"]  # the LDAP connector says what it found
    assert probe["incremental reads"] == "syncrepl" and probe["paged results"] is True
    app = doc["connectors"]["app"]["probe"]  # and the SCIM connector what discovery found
    assert app["patch"] == "yes" and "users /Users" in app["endpoints"]
    users = doc["flows"]["corp-to-app"]["user"]
    assert users["sampled"] > 0 and users["in_scope"] == users["sampled"]
    assert users["attributes"]["uid"] == users["sampled"]
    code, text = check(sync_scim2)
    assert code == 0 and "all checks passed" in text
    status = CliRunner().invoke(main, ["status", "-c", str(sync_scim2.config), "-o", "json"])
    servers = json.loads(status.stdout)["corp-to-app"]["servers"]  # what check learned, kept
    assert servers["app"]["facts"]["patch"] == "yes"
    assert servers["corp"]["facts"]["incremental reads"] == "syncrepl"
    text = CliRunner().invoke(main, ["status", "-c", str(sync_scim2.config)]).stdout
    assert "app (syncd check " in text and "patch: yes" in text
    assert sync_scim2.run("--dry-run").code == 0  # and nothing was written by the check
    assert sync_scim2.http.get("/Users").json()["totalResults"] == 0


def test_a_scope_typo_is_named(sync_scim2: Sync) -> None:
    sync_scim2.write(scope='[[flows.corp-to-app.users.scope]]\nattribute = "employeType"\n'
                           'equals = "staff"')
    code, out = check(sync_scim2)
    assert code == 1, out
    assert "no sampled user carries 'employetype'" in out
    assert "none of" in out and "in scope" in out


def test_unreadable_secret_and_unreachable_server_are_findings(
        sync_scim2: Sync, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("E2E_SCIM_TOKEN")
    sync_scim2.ldap.stop()
    try:
        code, out = check(sync_scim2)
    finally:
        sync_scim2.ldap.start()
    assert code == 1, out
    assert "connector app: secret token (env:E2E_SCIM_TOKEN)" in out and "not set" in out
    assert "connector corp: cannot open" in out
    assert "Traceback" not in out
