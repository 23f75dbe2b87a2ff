"""The core scenarios, CLI against a real slapd and both real SCIM servers."""

from __future__ import annotations

import hashlib
import os
import signal

from tests.e2e.conftest import Sync
from tests.peers.directory import (
    group_cn,
    group_dn,
    group_member_indexes,
    user_attrs,
    user_dn,
    user_uid,
)
from tests.peers.ldap_fixtures import SEED, SMALL_GROUPS, SMALL_MEMBERS, SMALL_USERS

ZERO_USER = {"create": 0, "adopt": 0, "update": 0, "deprovision": 0, "delete": 0}
ZERO_GROUP = {**ZERO_USER, "set_members": 0}


def changes(doc: dict, op: str | None = None, kind: str | None = None) -> list[dict]:
    return [c for c in doc["changes"]
            if (op is None or c["op"] == op) and (kind is None or c["kind"] == kind)]


def test_dry_run_then_first_sync_then_nothing(sync: Sync) -> None:
    dry = sync.run("--dry-run")
    assert dry.code == 0, dry.out
    assert dry.doc is not None
    assert dry.doc["summary"]["user"]["create"] == SMALL_USERS
    assert dry.doc["summary"]["group"]["create"] == SMALL_GROUPS
    assert dry.doc["summary"]["group"]["set_members"] == SMALL_GROUPS
    assert not sync.state.exists(), "dry run must not create the state store"
    assert sync.list("Users") == [], "dry run must not write to the target"

    first = sync.run()
    assert first.code == 0, first.out
    assert first.doc is not None and first.doc["summary"] == dry.doc["summary"]
    users = {u["userName"]: u for u in sync.list("Users")}
    assert len(users) == SMALL_USERS
    zoe = users[user_uid(0)]
    assert zoe["name"]["givenName"] == "Zoë" and zoe["name"]["familyName"] == "Ångström"
    assert zoe["emails"][0]["value"] == f"{user_uid(0)}@example.com"
    assert zoe["active"] is True
    assert "title" not in zoe or zoe["title"] in (None, "")  # user 0 has no title
    u1 = users[user_uid(1)]
    if sync.full_scim:  # django-scim2-server stores no title (reported as unsupported)
        assert u1["title"] == user_attrs(1, SEED)["title"][0]
        assert u1["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"][
            "employeeNumber"] == "100001"
    else:
        assert any("not supported" in w or "does not support" in w
                   for w in first.doc["flows"][0]["warnings"])
    for j in range(SMALL_GROUPS):
        expected = {user_uid(i) for i in group_member_indexes(j, SMALL_USERS, SMALL_MEMBERS,
                                                               SEED)}
        assert sync.member_names(group_cn(j)) == expected

    again = sync.run()
    assert again.code == 0, again.out
    assert again.doc is not None
    assert again.doc["summary"] == {"user": ZERO_USER, "group": ZERO_GROUP}
    assert again.doc["changes"] == []


def test_update_patches_exactly_the_changed_attribute_and_clears(sync: Sync) -> None:
    assert sync.run().code == 0
    sync.ldap.modify(f"dn: {user_dn(1)}\nchangetype: modify\nreplace: title\n"
                     f"title: Chief Tester\n-\nreplace: givenName\ngivenName: Renée\n")
    sync.ldap.modify(f"dn: {user_dn(2)}\nchangetype: modify\ndelete: title\n-\n"
                     f"delete: mail\n")
    res = sync.run()
    assert res.code == 0, res.out
    assert res.doc is not None
    ups = {c["name"]: c for c in changes(res.doc, "update")}
    assert set(ups) == {user_uid(1), user_uid(2)}
    assert ups[user_uid(1)]["attrs"] == {"title": "Chief Tester", "name.givenName": "Renée"}
    assert ups[user_uid(2)]["attrs"] == {"title": None, "emails.work": None}
    assert len(res.doc["changes"]) == 2
    assert sync.user(user_uid(1))["name"]["givenName"] == "Renée"
    assert not sync.user(user_uid(2)).get("emails")
    if sync.full_scim:
        assert sync.user(user_uid(1))["title"] == "Chief Tester"
        assert not sync.user(user_uid(2)).get("title")
    assert sync.run().doc["changes"] == []  # type: ignore[index]


def test_removed_user_is_disabled_and_membership_follows(sync: Sync) -> None:
    assert sync.run().code == 0
    member = group_member_indexes(0, SMALL_USERS, SMALL_MEMBERS, SEED)[0]
    sync.ldap.delete(user_dn(member))
    # groupOfNames keeps dangling DNs without the refint overlay; remove it as an admin would
    sync.ldap.modify(f"dn: {group_dn(0)}\nchangetype: modify\ndelete: member\n"
                     f"member: {user_dn(member)}\n")
    res = sync.run()
    assert res.code == 0, res.out
    assert res.doc is not None
    (dep,) = changes(res.doc, "deprovision", "user")
    assert dep["name"] == user_uid(member)
    assert sync.user(user_uid(member))["active"] is False
    assert user_uid(member) not in sync.member_names(group_cn(0))
    assert sync.run().doc["changes"] == []  # type: ignore[index]


def test_group_move_adds_and_removes_members(sync: Sync) -> None:
    assert sync.run().code == 0
    in0 = set(group_member_indexes(0, SMALL_USERS, SMALL_MEMBERS, SEED))
    in1 = set(group_member_indexes(1, SMALL_USERS, SMALL_MEMBERS, SEED))
    mover = sorted(in0 - in1)[0]
    sync.ldap.modify(f"dn: {group_dn(0)}\nchangetype: modify\ndelete: member\n"
                     f"member: {user_dn(mover)}\n\n"
                     f"dn: {group_dn(1)}\nchangetype: modify\nadd: member\n"
                     f"member: {user_dn(mover)}\n")
    res = sync.run()
    assert res.code == 0, res.out
    assert res.doc is not None
    sm = {c["name"]: c for c in changes(res.doc, "set_members")}
    assert set(sm) == {group_cn(0), group_cn(1)}
    assert len(sm[group_cn(0)]["remove"]) == 1 and sm[group_cn(0)]["add"] == []
    assert len(sm[group_cn(1)]["add"]) == 1 and sm[group_cn(1)]["remove"] == []
    assert user_uid(mover) not in sync.member_names(group_cn(0))
    assert user_uid(mover) in sync.member_names(group_cn(1))


def test_leaving_scope_deprovisions_and_returning_re_enables(sync: Sync) -> None:
    assert sync.run().code == 0
    sync.write(scope=f'[[flows.corp-to-app.users.scope]]\nattribute = "uid"\n'
                     f'equals = "{user_uid(3)}"\nnot = true\n')
    res = sync.run()
    assert res.code == 0, res.out
    assert res.doc is not None
    assert [c["name"] for c in changes(res.doc, "deprovision")] == [user_uid(3)]
    assert sync.user(user_uid(3))["active"] is False
    sync.write()
    back = sync.run()
    assert back.doc is not None
    (up,) = changes(back.doc, "update")
    assert up["name"] == user_uid(3) and up["attrs"] == {"active": True}
    assert sync.user(user_uid(3))["active"] is True


def test_delete_policy_deletes_on_target(sync: Sync) -> None:
    sync.write(deprovision="delete")
    assert sync.run().code == 0
    target_id = sync.user(user_uid(5))["id"]
    sync.ldap.delete(user_dn(5))
    res = sync.run()
    assert res.code == 0, res.out
    assert [c["name"] for c in changes(res.doc, "delete", "user")] == [user_uid(5)]  # type: ignore[arg-type]
    r = sync.http.get(f"/Users/{target_id}")
    # django-scim2-server's DELETE only deactivates (PEERS.md); scim2-server removes
    assert r.status_code == 404 or r.json().get("active") is False
    assert sync.run().doc["changes"] == []  # type: ignore[index]


def test_safety_threshold_refuses_then_allow_deletes(sync: Sync) -> None:
    assert sync.run().code == 0
    for i in range(10, 20):
        sync.ldap.delete(user_dn(i))
    refused = sync.run()
    assert refused.code == 3, refused.out
    assert refused.doc is not None
    assert "max_deprovision_percent" in refused.doc["flows"][0]["refused"][0]
    assert all(u["active"] for u in sync.list("Users")), "nothing applied when refused"
    allowed = sync.run("--allow-deletes")
    assert allowed.code == 0, allowed.out
    assert sum(1 for u in sync.list("Users") if not u["active"]) == 10


def test_unreachable_source_fails_without_touching_target(sync: Sync) -> None:
    assert sync.run().code == 0
    before = sync.list("Users")
    os.kill(sync.ldap.pid, signal.SIGKILL)  # type: ignore[arg-type]
    sync.ldap.kill()
    res = sync.run()
    assert res.code == 1, res.out
    assert res.doc is not None and res.doc["changes"] == []
    assert sync.list("Users") == before


def test_lost_state_adopts_instead_of_duplicating(sync: Sync) -> None:
    """What a crash between POST and link write looks like: the target has objects the
    store does not know. The next run must adopt them, never create twins."""
    assert sync.run().code == 0
    for p in sync.tmp.glob("state.db*"):
        p.unlink()
    res = sync.run()
    assert res.code == 0, res.out
    assert res.doc is not None
    assert res.doc["summary"]["user"]["adopt"] == SMALL_USERS
    assert res.doc["summary"]["user"]["create"] == 0
    assert res.doc["summary"]["group"]["adopt"] == SMALL_GROUPS
    assert len(sync.list("Users")) == SMALL_USERS
    assert len(sync.list("Groups")) == SMALL_GROUPS
    assert sync.run().doc["changes"] == []  # type: ignore[index]


def test_conflict_409_on_create_is_adopted(sync_scim2: Sync) -> None:
    """Match on externalId only, so the planner cannot see the existing user; the server's
    409 on userName must turn into an adopt of that user, not a failure or a duplicate."""
    s = sync_scim2
    s.write(match='["externalId"]')
    r = s.http.post("/Users", json={
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_uid(4), "title": "Hand made"})
    assert r.status_code == 201, r.text
    res = s.run()
    assert res.code == 0, res.out
    assert len(s.list("Users")) == SMALL_USERS
    assert s.user(user_uid(4))["id"] == r.json()["id"]
    assert s.user(user_uid(4)).get("title") == user_attrs(4, SEED).get("title", [None])[0]
    assert s.run().doc["changes"] == []  # type: ignore[index]


def test_dry_run_after_changes_writes_nothing(sync: Sync) -> None:
    assert sync.run().code == 0
    sync.ldap.modify(f"dn: {user_dn(1)}\nchangetype: modify\nreplace: title\ntitle: X\n")
    digest = hashlib.sha256(sync.state.read_bytes()).hexdigest()
    before = sync.list("Users")
    res = sync.run("--dry-run")
    assert res.code == 0 and res.doc is not None
    assert len(changes(res.doc, "update")) == 1
    assert hashlib.sha256(sync.state.read_bytes()).hexdigest() == digest
    assert sync.list("Users") == before


def test_text_plan_shows_attribute_old_and_new(sync: Sync) -> None:
    from click.testing import CliRunner

    from syncd.cli.main import main

    assert sync.run().code == 0
    sync.ldap.modify(f"dn: {user_dn(1)}\nchangetype: modify\nreplace: title\ntitle: Boss\n")
    res = CliRunner().invoke(main, ["run", "-c", str(sync.config), "--dry-run"])
    assert res.exit_code == 0, res.output
    old = user_attrs(1, SEED)["title"][0]
    assert f'title: "{old}" → "Boss"' in res.stdout
    assert f"~ update user {user_uid(1)}" in res.stdout
