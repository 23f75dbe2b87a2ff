"""Manager references end to end: slapd (``manager`` is a DN) -> scim2-server (the enterprise
extension's ``manager.value`` is the manager's SCIM id), created in either order, in the same
cycle or a later one, and cleared when the manager goes."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner

from syncd.cli.main import main
from tests.e2e.conftest import Sync
from tests.peers.directory import PEOPLE, user_dn, user_uid

URN = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
MANAGER = '"enterprise.manager.value" = { from = "manager", reference = "user" }'


def manager(sync: Sync, uid: str) -> Any:
    return (sync.user(uid).get(URN) or {}).get("manager", {}).get("value")


def set_manager(sync: Sync, i: int, dn: str) -> None:
    sync.ldap.modify(f"dn: {user_dn(i)}\nchangetype: modify\nreplace: manager\nmanager: {dn}\n")


def test_managers_created_with_their_reports_in_either_order(sync_scim2: Sync) -> None:
    """In one cycle: user 1's manager (user 0) is listed before it, user 0's manager (user 3)
    after it; every report gets its manager's SCIM id in that cycle, the next plans nothing."""
    sync = sync_scim2
    sync.write(mapping=MANAGER)
    set_manager(sync, 1, user_dn(0))
    set_manager(sync, 0, user_dn(3).upper().replace("UID=", "uid="))  # spelt differently
    first = sync.run()
    assert first.code == 0, first.out
    assert manager(sync, user_uid(1)) == sync.user(user_uid(0))["id"]
    assert manager(sync, user_uid(0)) == sync.user(user_uid(3))["id"]
    again = sync.run()
    assert again.doc is not None and again.doc["changes"] == [], again.out
    full = sync.run("--full")
    assert full.doc is not None and full.doc["changes"] == [], full.out


def test_manager_created_cycles_later_is_filled_then_cleared(sync_scim2: Sync) -> None:
    sync = sync_scim2
    sync.write(mapping=MANAGER)
    boss = f"uid=boss,{PEOPLE}"
    set_manager(sync, 2, boss)
    first = sync.run()
    assert first.code == 0, first.out
    assert manager(sync, user_uid(2)) is None  # not there yet: empty, not an error
    assert first.doc is not None
    assert f"{user_uid(2)}: enterprise.manager.value is empty, {boss!r} names no user in " \
        f"scope (none, or several): pending until it does" in first.doc["flows"][0]["notes"]
    dry = sync.run("--dry-run")
    assert dry.doc is not None and dry.doc["changes"] == []
    sync.ldap.add(f"dn: {boss}\nobjectClass: inetOrgPerson\nuid: boss\ncn: The Boss\n"
                  f"sn: Boss\nmail: boss@example.com\n")
    second = sync.run()  # incremental: user 2 did not change and is not read again
    assert second.code == 0, second.out
    assert second.doc is not None
    assert second.doc["flows"][0]["reads"]["user"] == "incremental"
    assert [(c["op"], c["name"]) for c in second.doc["changes"]] == [
        ("create", "boss"), ("update", user_uid(2))]
    assert manager(sync, user_uid(2)) == sync.user("boss")["id"]
    assert sync.run().doc["changes"] == []  # type: ignore[index]
    sync.ldap.delete(boss)
    gone = sync.run()
    assert gone.code == 0, gone.out
    assert manager(sync, user_uid(2)) is None
    assert sync.user("boss")["active"] is False
    assert sync.run().doc["changes"] == []  # type: ignore[index]


def explain(sync: Sync, who: str) -> dict[str, Any]:
    res = CliRunner().invoke(main, ["explain", "-c", str(sync.config), "--output", "json", who])
    assert res.exit_code == 0, res.output
    doc: dict[str, Any] = json.loads(res.stdout)
    return doc


def test_explain_resolves_references_as_a_run_does(sync_scim2: Sync) -> None:
    """explain plans the object with its references resolved: no bogus DN-vs-id update for a
    synced manager, "pending until X is linked" for a manager not provisioned yet; run --only
    writes the id, never the DN."""
    sync = sync_scim2
    sync.write(mapping=MANAGER)
    set_manager(sync, 2, user_dn(0))
    assert sync.run().code == 0
    doc = explain(sync, user_uid(2))
    assert doc["plan"] == [] and doc["references"] == [], doc
    boss = f"uid=boss,{PEOPLE}"
    sync.ldap.add(f"dn: {boss}\nobjectClass: inetOrgPerson\nuid: boss\ncn: The Boss\n"
                  f"sn: Boss\nmail: boss@example.com\n")
    set_manager(sync, 2, boss)
    doc = explain(sync, user_uid(2))
    assert doc["references"] == [
        f"{user_uid(2)}: enterprise.manager.value is empty, pending until {boss} is linked"]
    (change,) = doc["plan"]
    assert change["attrs"] == {"enterprise.manager.value": None}
    set_manager(sync, 2, user_dn(1))
    doc = explain(sync, user_uid(2))
    (change,) = doc["plan"]
    manager_id = sync.user(user_uid(1))["id"]
    assert change["attrs"] == {"enterprise.manager.value": manager_id}
    assert doc["reference_names"][manager_id] == user_uid(1)
    res = CliRunner().invoke(main, ["run", "-c", str(sync.config), "--only", user_uid(2)])
    assert res.exit_code == 0, res.output
    assert manager(sync, user_uid(2)) == manager_id
    after = sync.run().doc
    assert after is not None
    assert [(c["op"], c["name"]) for c in after["changes"]] == [("create", "boss")]
    assert sync.run().doc["changes"] == []  # type: ignore[index]
