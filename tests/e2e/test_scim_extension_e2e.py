"""A custom SCIM extension end to end: slapd -> scim2-server serving `ACME_SCHEMA`, through
the CLI. Values land typed under the extension's URN, a second cycle plans nothing, a change
is one PATCH by URN path; `check` and `validate --online` name paths a target does not
declare (django-scim2-server: no extension at all), and runs leave them out."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from syncd.cli.main import main
from tests.e2e.conftest import Sync
from tests.peers.directory import user_dn, user_uid
from tests.peers.fault_proxy import FaultProxy
from tests.peers.scim_fixtures import URN_ACME
from tests.peers.scim_servers import _Peer
from tests.peers.slapd import Slapd

pytestmark = pytest.mark.peers
ENT = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
ACME_MAPPING = f'''"{URN_ACME}:costCenter" = "CC-{{employeeNumber}}"
"{URN_ACME}:badgeNumber" = "employeeNumber"
"{URN_ACME}:contractor" = {{ const = "yes" }}
"{ENT}:department" = {{ const = "R&D" }}
'''


def cli(sync: Sync, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, [*args, "-c", str(sync.config)])
    return res.exit_code, res.stdout + res.stderr


@pytest.fixture
def proxy(acme_scim2_server: _Peer) -> Iterator[FaultProxy]:
    """No faults: it records which requests syncd sent."""
    with FaultProxy(acme_scim2_server.url) as p:
        yield p


@pytest.fixture
def acme(tmp_path: Path, slapd: Slapd, acme_scim2_server: _Peer, proxy: FaultProxy,
         monkeypatch: pytest.MonkeyPatch) -> Sync:
    sync = Sync(tmp_path, slapd, acme_scim2_server, monkeypatch)
    sync.write(mapping=ACME_MAPPING)
    text = sync.config.read_text()
    sync.config.write_text(text.replace(f'url = "{acme_scim2_server.url}"',
                                        f'url = "{proxy.url}"'))
    return sync


def test_custom_extension_lands_typed_then_nothing_then_one_patch(
        acme: Sync, proxy: FaultProxy) -> None:
    code, out = cli(acme, "validate", "--online")
    assert code == 0 and "every target declares the attributes mapped to it" in out, out
    first = acme.run()
    assert first.code == 0, first.out
    user = acme.user(user_uid(1))
    assert URN_ACME in user["schemas"] and ENT in user["schemas"]
    assert user[URN_ACME] == {"costCenter": "CC-100001", "badgeNumber": 100001,
                              "contractor": True}
    assert user[ENT] == {"employeeNumber": "100001", "department": "R&D"}

    again = acme.run()
    assert again.code == 0 and again.doc is not None and again.doc["changes"] == [], again.out

    acme.ldap.modify(f"dn: {user_dn(1)}\nchangetype: modify\nreplace: employeeNumber\n"
                     "employeeNumber: 7\n")
    before = len(proxy.events())
    third = acme.run()
    assert third.code == 0 and third.doc is not None, third.out
    [change] = third.doc["changes"]
    assert change["op"] == "update" and change["attrs"] == {
        f"{URN_ACME}:costCenter": "CC-7", f"{URN_ACME}:badgeNumber": "7",
        "enterprise.employeeNumber": "7"}
    writes = [e for e in proxy.events()[before:] if e.method in ("PATCH", "PUT", "POST")]
    assert [(e.method, e.path) for e in writes] == [("PATCH", f"/v2/Users/{user['id']}")]
    assert acme.user(user_uid(1))[URN_ACME]["badgeNumber"] == 7
    assert acme.run().doc["changes"] == []  # type: ignore[index]


def test_a_value_not_of_the_declared_type_fails_that_entry_only(acme: Sync) -> None:
    assert acme.run().code == 0
    acme.ldap.modify(f"dn: {user_dn(2)}\nchangetype: modify\nreplace: employeeNumber\n"
                     "employeeNumber: N/A\n")
    res = acme.run()
    assert res.code == 1 and res.doc is not None, res.out
    [failure] = res.doc["flows"][0]["failures"]
    assert failure["name"] == user_uid(2) and failure["error_class"] == "Rejected"
    message = failure["message"]
    assert f"{URN_ACME}:badgeNumber" in message and "'N/A'" in message and "an integer" in message
    assert acme.user(user_uid(2))[URN_ACME]["badgeNumber"] == 100002  # nothing sent for it


def test_check_names_a_misspelt_extension_path_with_a_suggestion(acme: Sync) -> None:
    text = acme.config.read_text().replace(f'"{URN_ACME}:costCenter"', f'"{URN_ACME}:costCentre"')
    acme.config.write_text(text)
    code, out = cli(acme, "check", "-o", "json")
    assert code == 1, out
    doc = json.loads(out)
    why = doc["paths"]["corp-to-app"]["user"][f"{URN_ACME}:costCentre"]
    assert f"did you mean '{URN_ACME}:costCenter'" in why
    assert any(p.startswith("flow corp-to-app, users: target app:") and "costCentre" in p
               for p in doc["problems"])
    code, out = cli(acme, "validate", "--online")
    assert code == 1 and "costCentre" in out and "did you mean" in out, out


def test_django_declares_no_extension_reported_and_not_sent(
        tmp_path: Path, slapd: Slapd, django_scim_server: _Peer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    sync = Sync(tmp_path, slapd, django_scim_server, monkeypatch)
    sync.write(mapping=ACME_MAPPING)
    code, out = cli(sync, "validate", "--online")
    assert code == 1, out
    for path in ("enterprise.employeeNumber", "enterprise.department",
                 f"{URN_ACME}:badgeNumber"):
        assert f"PROBLEM: flow corp-to-app, users: target app: '{path}'" in out
    assert "userName" not in out
    code, out = cli(sync, "check")
    assert code == 1 and f"'{URN_ACME}:costCenter'" in out, out
    res = sync.run()
    assert res.code == 0 and res.doc is not None, res.out
    warned = " ".join(res.doc["flows"][0]["warnings"])
    assert f"{URN_ACME}:badgeNumber" in warned and "not sent" in warned
    user = sync.user(user_uid(1))
    assert URN_ACME not in user and ENT not in user
