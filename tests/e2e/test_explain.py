"""`syncd explain`, `syncd run --only` and `syncd status` against real slapd + scim2-server."""

from __future__ import annotations

import json

from click.testing import CliRunner

from syncd.cli.main import main
from tests.e2e.conftest import Sync
from tests.peers.directory import PEOPLE, user_dn, user_uid


def cli(sync: Sync, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, [args[0], "-c", str(sync.config), *args[1:]])
    return res.exit_code, res.stdout


def test_explain_shows_every_stage_and_the_next_plan(sync_scim2: Sync) -> None:
    s = sync_scim2
    assert s.run().code == 0
    s.ldap.modify(f"dn: {user_dn(1)}\nchangetype: modify\nreplace: title\ntitle: Boss\n")
    code, out = cli(s, "explain", "-o", "json", user_uid(1))
    assert code == 0, out
    doc = json.loads(out)
    assert doc["state_store"] == f"sqlite:///{s.state}"  # which store explain read
    assert doc["kind"] == "user" and doc["in_scope"] is True
    assert doc["source"]["raw"]["title"] == ["Boss"]
    assert doc["mapping"]["title"]["result"] == "Boss"
    assert doc["mapping"]["title"]["rule"].startswith("from title")
    assert doc["link"]["status"] == "active" and doc["link"]["base"]["title"] != "Boss"
    assert doc["target"][0]["attrs"]["userName"] == user_uid(1)
    (change,) = doc["plan"]
    assert change["op"] == "update" and change["attrs"] == {"title": "Boss"}
    assert [h["op"] for h in doc["history"]] == ["create"]
    code, text = cli(s, "explain", user_uid(1))
    assert code == 0 and "title = \"Boss\"" in text and "next run would:" in text
    assert s.user(user_uid(1)).get("title") != "Boss", "explain writes nothing"


def test_run_only_provisions_one_object_now(sync_scim2: Sync) -> None:
    s = sync_scim2
    assert s.run().code == 0
    s.ldap.modify(f"dn: {user_dn(1)}\nchangetype: modify\nreplace: title\ntitle: One\n")
    s.ldap.modify(f"dn: {user_dn(2)}\nchangetype: modify\nreplace: title\ntitle: Two\n")
    res = s.run("--only", user_uid(1))
    assert res.code == 0, res.out
    assert s.user(user_uid(1))["title"] == "One"
    assert s.user(user_uid(2)).get("title") != "Two", "only the named object"
    s.ldap.add(f"dn: uid=fresh,{PEOPLE}\nobjectClass: inetOrgPerson\nuid: fresh\ncn: Fresh\n"
               f"sn: Person\nmail: fresh@example.com\n")
    res = s.run("--only", "fresh")
    assert res.code == 0, res.out
    assert s.user("fresh")["name"]["familyName"] == "Person"
    full = s.run()
    assert full.doc is not None
    assert [c["name"] for c in full.doc["changes"]] == [user_uid(2)]


def test_explain_unknown_object_is_a_clear_error(sync_scim2: Sync) -> None:
    assert sync_scim2.run().code == 0
    res = CliRunner().invoke(main, ["explain", "-c", str(sync_scim2.config), "nobody"])
    assert res.exit_code == 1 and "'nobody': not found" in res.output


def test_status_reports_runs_links_and_retries(sync_scim2: Sync) -> None:
    s = sync_scim2
    assert s.run().code == 0
    code, out = cli(s, "status", "-o", "json")
    assert code == 0
    doc = json.loads(out)["corp-to-app"]
    assert doc["links"]["user"]["active"] == 30
    assert doc["pending"] == 0 and doc["quarantined"] == 0
    assert doc["runs"][0]["result"] == "ok" and doc["runs"][0]["summary"]["applied"] > 30
    assert doc["cursor_age_s"] is not None
    code, text = cli(s, "status")
    assert "pending retries: 0; quarantined: 0" in text


def test_explain_never_shows_password_hashes(sync_scim2: Sync) -> None:
    """The e2e bind account (the rootdn) may read userPassword: explain must still never
    print it, and shows only the attributes the mapping and scope use."""
    s = sync_scim2
    hashed = "{SSHA}ZXhwbGFpbi1tdXN0LW5ldmVyLXByaW50LXRoaXM="
    s.ldap.modify(f"dn: {user_dn(1)}\nchangetype: modify\nreplace: userPassword\n"
                  f"userPassword: {hashed}\n")
    assert s.run().code == 0
    code, out = cli(s, "explain", "-o", "json", user_uid(1))
    assert code == 0, out
    doc = json.loads(out)
    mapped = {"uid", "cn", "givenname", "sn", "mail", "title", "employeenumber", "entryuuid"}
    assert set(doc["source"]["raw"]) <= mapped and "uid" in doc["source"]["raw"]
    code, text = cli(s, "explain", user_uid(1))
    assert code == 0, text
    for shown in (out, text):
        assert hashed not in shown and "ZXhwbGFpbi1tdXN0" not in shown
        assert "userpassword" not in shown.lower()


def _uuid_of(sync: Sync, dn: str) -> str:
    import ldap3

    conn = ldap3.Connection(ldap3.Server(sync.ldap.url), sync.ldap.admin_dn,
                            sync.ldap.admin_password, auto_bind=True)
    conn.search(dn, "(objectClass=*)", search_scope="BASE", attributes=["entryUUID"])
    value = str(conn.entries[0].entryUUID.value)
    conn.unbind()
    return value


def test_explain_finds_a_never_synced_object_by_anchor_or_dn(sync_scim2: Sync) -> None:
    s = sync_scim2
    assert s.run().code == 0
    s.ldap.add(f"dn: uid=newbie,{PEOPLE}\nobjectClass: inetOrgPerson\nuid: newbie\ncn: New\n"
               f"sn: Bie\n")
    dn = f"uid=newbie,{PEOPLE}"
    for who in (_uuid_of(s, dn), dn, "newbie"):
        code, out = cli(s, "explain", "-o", "json", who)
        assert code == 0, (who, out)
        doc = json.loads(out)
        assert doc["source"]["name"].lower() == dn.lower() and doc["link"] is None
        assert [c["op"] for c in doc["plan"]] == ["create"]
    code, text = cli(s, "explain", dn)
    assert "link: none (never synced)" in text


def test_explain_says_why_out_of_scope_and_when_a_disabled_object_goes(
        sync_scim2: Sync) -> None:
    s = sync_scim2
    s.write(extra='delete_after = "30d"',
            scope='[[flows.corp-to-app.users.scope]]\nattribute = "title"\n'
                  'equals = "gone"\nnot = true')
    assert s.run().code == 0
    s.ldap.modify(f"dn: {user_dn(3)}\nchangetype: modify\nreplace: title\ntitle: gone\n")
    code, text = cli(s, "explain", user_uid(3))
    assert code == 0, text
    assert "OUT OF SCOPE: title equals ['gone'], which the scope excludes" in text
    assert "left the scope" in text  # the planned deprovisioning says why
    assert s.run().code == 0
    code, out = cli(s, "explain", "-o", "json", user_uid(3))
    link = json.loads(out)["link"]
    assert link["status"] == "disabled" and link["delete_at"] is not None
    code, text = cli(s, "explain", user_uid(3))
    assert "DISABLED since" in text and "target object deleted at" in text
