"""Never act on the wrong object, end to end: the CLI against a real slapd and scim2-server.

Each scenario reproduces a defect of the hardening issue (a second entry taking an account
over, a typo emptying every group, a mapping that rewrites every email or disables everyone,
a deleted user left in its groups) and checks the SCIM side with plain HTTP.
"""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import Sync
from tests.peers.directory import PEOPLE, group_cn, group_member_indexes, user_dn, user_uid
from tests.peers.ldap_fixtures import SEED, SMALL_MEMBERS, SMALL_USERS


def _cli(sync: Sync, command: str, *args: str) -> str:
    from click.testing import CliRunner

    from syncd.cli.main import main

    return CliRunner().invoke(main, [command, "--config", str(sync.config), *args]).output


def _status(sync: Sync) -> str:
    return _cli(sync, "status")


def test_a_second_entry_with_an_existing_uid_is_held_not_adopted(sync_scim2: Sync) -> None:
    sync = sync_scim2
    assert sync.run().code == 0
    employee: dict[str, Any] = sync.user(user_uid(1))
    sync.ldap.add(
        f"dn: cn=Contractor One,{PEOPLE}\nobjectClass: inetOrgPerson\ncn: Contractor One\n"
        f"sn: One\nuid: {user_uid(1)}\nmail: attacker@example.com\n")
    res = sync.run("--full")
    assert res.code == 0, res.out
    after = sync.user(user_uid(1))
    assert after["emails"] == employee["emails"] and after["displayName"] == employee[
        "displayName"]
    (held,) = [h for h in res.doc["flows"][0]["held"]]  # type: ignore[index]
    assert "collision" in held["reason"] and user_uid(1) in held["reason"]
    assert "collision" in _status(sync).lower()
    explained = _cli(sync, "explain", "--flow", "corp-to-app", user_uid(1))
    assert "collision" in explained.lower(), explained
    # the contractor leaves: the employee's account is never disabled on its behalf
    sync.ldap.delete(f"cn=Contractor One,{PEOPLE}")
    assert sync.run("--full").code == 0
    assert sync.user(user_uid(1))["active"] is True


def test_two_new_entries_differing_only_in_case_make_one_account(sync_scim2: Sync) -> None:
    sync = sync_scim2
    assert sync.run().code == 0
    for i, uid in enumerate(("New.Hire", "new.hire")):
        sync.ldap.add(f"dn: cn=Hire {i},{PEOPLE}\nobjectClass: inetOrgPerson\ncn: Hire {i}\n"
                      f"sn: Hire\nuid: {uid}\nmail: hire{i}@example.com\n")
    res = sync.run()
    assert res.code == 0, res.out
    hires = [u for u in sync.list("Users") if u["userName"].casefold() == "new.hire"]
    assert len(hires) == 1
    assert any("collision" in h["reason"] for h in res.doc["flows"][0]["held"])  # type: ignore[index]


def test_a_member_attribute_typo_is_refused_not_applied(sync_scim2: Sync) -> None:
    sync = sync_scim2
    assert sync.run().code == 0
    before = {group_cn(j): sync.member_names(group_cn(j)) for j in range(2)}
    text = sync.config.read_text()
    sync.config.write_text(text.replace(
        'bind_password = "env:E2E_LDAP_PASSWORD"',
        'bind_password = "env:E2E_LDAP_PASSWORD"\nmember_attribute = "membr"'))
    res = sync.run("--full")
    assert res.code == 3, res.out
    refused = " ".join(res.doc["flows"][0]["refused"])  # type: ignore[index]
    assert "would be removed" in refused
    assert {g: sync.member_names(g) for g in before} == before


def test_a_mapping_that_rewrites_every_email_is_refused(sync_scim2: Sync) -> None:
    sync = sync_scim2
    assert sync.run().code == 0
    text = sync.config.read_text()
    sync.config.write_text(text.replace('"emails.work" = "mail"',
                                        '"emails.work" = "{uid}@typo.example.com"'))
    res = sync.run()
    assert res.code == 3, res.out
    assert "emails.work" in " ".join(res.doc["flows"][0]["refused"])  # type: ignore[index]
    assert sync.user(user_uid(2))["emails"][0]["value"] == f"{user_uid(2)}@example.com"
    allowed = sync.run("--allow-destructive")
    assert allowed.code == 0, allowed.out
    assert sync.user(user_uid(2))["emails"][0]["value"] == f"{user_uid(2)}@typo.example.com"


def test_a_deleted_user_leaves_its_groups_in_the_same_incremental_run(sync_scim2: Sync
                                                                     ) -> None:
    sync = sync_scim2
    sync.write(deprovision="delete")
    assert sync.run().code == 0
    member = group_member_indexes(0, SMALL_USERS, SMALL_MEMBERS, SEED)[0]
    assert user_uid(member) in sync.member_names(group_cn(0))
    gid = sync.group(group_cn(0))["id"]
    uid_id = sync.user(user_uid(member))["id"]
    # deleted in LDAP; no refint overlay: the group still names it and is not in the feed
    sync.ldap.delete(user_dn(member))
    res = sync.run()
    assert res.code == 0, res.out
    assert res.doc["flows"][0]["reads"]["user"] == "incremental"  # type: ignore[index]
    members = {m["value"] for m in sync.http.get(f"/Groups/{gid}").json().get("members") or []}
    assert uid_id not in members
    assert not [u for u in sync.list("Users") if u["userName"] == user_uid(member)]
