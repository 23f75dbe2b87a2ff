"""Nested groups flattened end to end: slapd (groupOfNames containing groupOfNames) ->
scim2-server, through the CLI. A change to a nested group reaches the group containing it in
an incremental cycle (the outer group is not read again), a full reconcile then plans
nothing, and a cycle in the graph is a note naming the groups."""

from __future__ import annotations

from tests.e2e.conftest import Sync
from tests.peers.directory import GROUPS, user_dn, user_uid

OUTER, INNER, LOOP = (f"cn={n},{GROUPS}" for n in ("nest-outer", "nest-inner", "nest-loop"))
FLATTEN = 'groups.nested = "flatten"'


def add_groups(sync: Sync) -> None:
    sync.ldap.add(f"dn: {INNER}\nobjectClass: groupOfNames\ncn: nest-inner\n"
                  f"member: {user_dn(1)}\nmember: {user_dn(2)}\n")
    sync.ldap.add(f"dn: {OUTER}\nobjectClass: groupOfNames\ncn: nest-outer\n"
                  f"member: {user_dn(0)}\nmember: {INNER}\n")


def test_nested_groups_flattened_full_then_incremental(sync_scim2: Sync) -> None:
    sync = sync_scim2
    sync.write(extra=FLATTEN)
    add_groups(sync)
    first = sync.run()
    assert first.code == 0, first.out
    assert sync.member_names("nest-outer") == {user_uid(0), user_uid(1), user_uid(2)}
    assert sync.member_names("nest-inner") == {user_uid(1), user_uid(2)}
    sync.ldap.modify(f"dn: {INNER}\nchangetype: modify\nadd: member\nmember: {user_dn(3)}\n"
                     f"-\ndelete: member\nmember: {user_dn(1)}\n")
    second = sync.run()
    assert second.code == 0, second.out
    assert second.doc is not None
    assert second.doc["flows"][0]["reads"]["group"] == "incremental"
    assert sorted((c["op"], c["name"]) for c in second.doc["changes"]) == [
        ("set_members", "nest-inner"), ("set_members", "nest-outer")]
    assert sync.member_names("nest-outer") == {user_uid(0), user_uid(2), user_uid(3)}
    full = sync.run("--full")
    assert full.doc is not None and full.doc["changes"] == [], full.out


def test_a_cycle_is_a_note_and_direct_stays_the_default(sync_scim2: Sync) -> None:
    sync = sync_scim2
    sync.write()  # nested not configured: direct members only, as before
    add_groups(sync)
    sync.ldap.add(f"dn: {LOOP}\nobjectClass: groupOfNames\ncn: nest-loop\n"
                  f"member: {user_dn(4)}\nmember: {OUTER}\n")
    sync.ldap.modify(f"dn: {INNER}\nchangetype: modify\nadd: member\nmember: {LOOP}\n")
    plain = sync.run()
    assert plain.code == 0, plain.out
    assert sync.member_names("nest-outer") == {user_uid(0)}
    sync.write(extra=FLATTEN)  # the flow's fingerprint changes: groups are read in full
    nested = sync.run()
    assert nested.code == 0, nested.out
    assert nested.doc is not None
    everyone = {user_uid(i) for i in (0, 1, 2, 4)}
    for g in ("nest-outer", "nest-inner", "nest-loop"):
        assert sync.member_names(g) == everyone
    notes = " ".join(nested.doc["flows"][0]["notes"])
    assert "cycle (nest-inner, nest-loop, nest-outer)" in notes, notes


PRESERVE = 'groups.nested = "preserve"'


def group_members(sync: Sync, name: str) -> tuple[set[str], set[str]]:
    """(user names, group names) of a SCIM group, by the members' ids and types."""
    listed = sync.group(name).get("members") or []
    users = {u["id"]: u["userName"] for u in sync.list("Users")}
    groups = {g["id"]: g["displayName"] for g in sync.list("Groups")}
    return ({users[m["value"]] for m in listed if m["value"] in users},
            {groups[m["value"]] for m in listed
             if m["value"] in groups and m.get("type") == "Group"})


def test_nested_groups_preserved_or_refused_clearly(sync: Sync) -> None:
    """preserve: the inner group is a member of the outer one on scim2-server (typed
    "Group"), created in the same run, dropped when it leaves the outer group in an
    incremental run. django-scim2-server declares no group members (and drops them): the
    flow is refused naming the reason, nothing is written."""
    sync.write(extra=PRESERVE)
    add_groups(sync)
    first = sync.run()
    if type(sync.scim).__name__ == "DjangoScimServer":
        assert first.code != 0
        assert "does not take them" in first.out and "flatten" in first.out, first.out
        assert sync.list("Groups") == []
        return
    assert first.code == 0, first.out
    assert group_members(sync, "nest-outer") == ({user_uid(0)}, {"nest-inner"})
    assert group_members(sync, "nest-inner") == ({user_uid(1), user_uid(2)}, set())
    sync.ldap.modify(f"dn: {OUTER}\nchangetype: modify\ndelete: member\nmember: {INNER}\n")
    second = sync.run()
    assert second.code == 0, second.out
    assert second.doc is not None
    assert second.doc["flows"][0]["reads"]["group"] == "incremental"
    assert group_members(sync, "nest-outer") == ({user_uid(0)}, set())
    full = sync.run("--full")
    assert full.doc is not None and full.doc["changes"] == [], full.out
