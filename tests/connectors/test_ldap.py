"""The LDAP connector against a real OpenLDAP (tests/peers/slapd.py), plus config unit tests.

Expected values come from tests/peers/directory.py (pure functions of the seed), and anchors
from an independent ldap3 search, so the connector is never checked against itself.
"""

from __future__ import annotations

import base64
import math
import ssl
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import ldap3
import pytest
from pydantic import ValidationError

import syncd_connectors.ldap.wire.paging as base_module
from syncd.connector import Connector
from syncd.errors import Fatal, Retriable
from syncd.model import Batch
from syncd_connectors.ldap.config import LdapConfig
from syncd_connectors.ldap.connector import LdapConnector
from syncd_connectors.ldap.values import anchor_string, normalize_dn, one_level_below
from tests.peers.directory import (
    BASE,
    PEOPLE,
    group_dn,
    group_member_indexes,
    user_attrs,
    user_dn,
    user_uid,
)
from tests.peers.ldap_fixtures import SEED, SMALL_GROUPS, SMALL_MEMBERS, SMALL_USERS, ldap_settings
from tests.peers.slapd import Slapd, free_port

pytestmark = pytest.mark.peers

USER_ATTRS = ["uid", "cn", "givenName", "sn", "mail", "title", "employeeNumber", "telephoneNumber"]


def connector(server: Slapd, **overrides: Any) -> LdapConnector:
    return LdapConnector("corp", LdapConfig(**ldap_settings(server, **overrides)))


@pytest.fixture
def corp(slapd_server: Slapd) -> Iterator[LdapConnector]:
    conn = connector(slapd_server)
    conn.open()
    yield conn
    conn.close()


def entry_uuids(server: Slapd) -> dict[str, str]:
    """DN (lower-case) -> entryUUID, read with plain ldap3, independently of the connector."""
    conn = ldap3.Connection(
        ldap3.Server(server.url), server.admin_dn, server.admin_password, auto_bind=True
    )
    conn.search(BASE, "(objectClass=*)", attributes=["entryUUID"])
    out = {e.entry_dn.lower(): str(e.entryUUID.value) for e in conn.entries}
    conn.unbind()
    return out


def all_entries(batches: list[Batch]) -> dict[str, Any]:
    return {e.name.lower(): e for b in batches for e in b.entries}


# ---- reading -------------------------------------------------------------------------------


def test_connector_satisfies_protocol(corp: LdapConnector) -> None:
    assert isinstance(corp, Connector)
    assert LdapConnector.config_model is LdapConfig
    assert corp.capabilities.write is True
    assert corp.capabilities.attribute_names_case_insensitive is True


@pytest.mark.parametrize("decoder", ["lean", "stock"])
def test_abandoned_paged_read_leaves_the_connector_usable(
    slapd_server: Slapd, decoder: str
) -> None:
    """The lean read requests page n+1 before handing out page n: a consumer that stops
    after one page (and searches meanwhile) must not see that reply in a later search."""
    conn = connector(slapd_server, page_size=4, decoder=decoder, incremental="none")
    conn.open()
    pages = conn.read("user", None, ["uid"])
    assert len(next(pages).entries) == 4
    assert len(conn.find("user", "uid", user_uid(3))) == 1  # a search between pages
    pages.close()  # abandoned with the next page in flight
    again = [e for b in conn.read("user", None, ["uid"]) for e in b.entries]
    assert len(again) == SMALL_USERS
    conn.close()


def test_paged_read_streams_pages_with_exact_values(slapd_server: Slapd) -> None:
    conn = connector(slapd_server, page_size=7)
    conn.open()
    pages = conn.read("user", None, USER_ATTRS)
    first = next(pages)  # a page arrives before the rest of the directory was fetched
    assert len(first.entries) == 7
    batches = [first, *pages]
    conn.close()

    assert len(batches) == math.ceil(SMALL_USERS / 7)
    assert all(len(b.entries) <= 7 for b in batches)
    assert all(b.kind == "user" and b.full for b in batches)
    assert all(b.cursor is None for b in batches[:-1])
    assert batches[-1].complete and batches[-1].cursor is not None

    uuids = entry_uuids(slapd_server)
    entries = all_entries(batches)
    assert len(entries) == SMALL_USERS
    for i in range(SMALL_USERS):
        entry = entries[user_dn(i).lower()]
        assert entry.external_id == uuids[user_dn(i).lower()]
        assert entry.members is None
        expected = {k: tuple(v) for k, v in user_attrs(i, SEED).items()}
        assert dict(entry.raw) == expected, user_dn(i)


def test_non_ascii_multi_valued_and_missing_values(corp: LdapConnector) -> None:
    entries = all_entries(list(corp.read("user", None, USER_ATTRS)))
    zoe = entries[user_dn(0).lower()]
    assert zoe.raw["cn"] == ("Zoë Ångström",)
    assert zoe.raw["sn"] == ("Ångström",)
    assert "title" not in zoe.raw  # every 7th user has no title: absent, not empty
    three = entries[user_dn(3).lower()]
    assert len(three.raw["telephonenumber"]) == 2
    assert three.raw["telephonenumber"] == tuple(user_attrs(3, SEED)["telephonenumber"])


def spy_searches(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, list[str]]]:
    """Record (base, filter, attributes) of every search the connector sends, whichever
    decoder it uses."""
    calls: list[tuple[str, str, list[str]]] = []
    for name in ("lean_search", "stock_search", "send_search"):
        real = getattr(base_module, name)

        def spy(conn: Any, base: str, filter_: str, scope: str, attrs: Any, *a: Any,
                _real: Any = real) -> Any:  # fmt: skip
            calls.append((base, filter_, list(attrs)))
            return _real(conn, base, filter_, scope, attrs, *a)

        monkeypatch.setattr(base_module, name, spy)
    return calls


@pytest.mark.parametrize("decoder", ["lean", "stock"])
def test_only_requested_attributes_are_fetched(
    slapd_server: Slapd, monkeypatch: pytest.MonkeyPatch, decoder: str
) -> None:
    corp = connector(slapd_server, decoder=decoder, incremental="none")
    calls = spy_searches(monkeypatch)
    users = [e for b in corp.read("user", None, ["mail"]) for e in b.entries]
    requested = [c[2] for c in calls]
    # modifyTimestamp feeds Entry.modified (two-way "newest" rule)
    assert {a.lower() for a in requested[0]} == {"mail", "entryuuid", "modifytimestamp"}
    assert all(set(e.raw) == {"mail"} for e in users)  # the anchor is not echoed into raw

    calls.clear()
    groups = [e for b in corp.read("group", None, ["cn"]) for e in b.entries]
    requested = [c[2] for c in calls]
    assert {a.lower() for a in requested[0]} == {"cn", "entryuuid", "member",
                                                 "modifytimestamp"}
    assert all(set(e.raw) == {"cn"} for e in groups)


def test_binary_attribute_is_base64(slapd: Slapd) -> None:
    photo = bytes(range(256)) + b"\xff\xd8\xff\xe0 not utf-8"
    slapd.modify(
        f"dn: {user_dn(4)}\nchangetype: modify\nadd: jpegPhoto\n"
        f"jpegPhoto:: {base64.b64encode(photo).decode()}\n"
    )
    conn = connector(slapd)
    conn.open()
    entries = all_entries(list(conn.read("user", None, ["jpegPhoto", "uid"])))
    assert base64.b64decode(entries[user_dn(4).lower()].raw["jpegphoto"][0]) == photo
    assert "jpegphoto" not in entries[user_dn(5).lower()].raw


def test_empty_result_is_one_complete_batch(slapd_server: Slapd) -> None:
    conn = connector(slapd_server, users={"base": PEOPLE, "filter": "(uid=nobody-here)"})
    conn.open()
    batches = list(conn.read("user", None, ["uid"]))
    assert [(len(b.entries), b.complete) for b in batches] == [(0, True)]


# ---- groups --------------------------------------------------------------------------------


def expected_members(uuids: dict[str, str], j: int) -> frozenset[str]:
    indexes = group_member_indexes(j, SMALL_USERS, SMALL_MEMBERS, SEED)
    return frozenset(uuids[user_dn(i).lower()] for i in indexes)


@pytest.mark.parametrize("users_first", [True, False], ids=["users-read-first", "lookups"])
def test_group_members_resolve_to_user_anchors(slapd_server: Slapd, users_first: bool) -> None:
    uuids = entry_uuids(slapd_server)
    conn = connector(slapd_server, page_size=3)
    conn.open()
    if users_first:
        list(conn.read("user", None, ["uid"]))
    groups = all_entries(list(conn.read("group", None, ["cn"])))
    assert len(groups) == SMALL_GROUPS
    for j in range(SMALL_GROUPS):
        group = groups[group_dn(j).lower()]
        assert group.external_id == uuids[group_dn(j).lower()]
        assert group.members == expected_members(uuids, j)
        assert len(group.members) == SMALL_MEMBERS


def test_member_dns_outside_users_or_oddly_written(
    slapd: Slapd, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Differently-cased/spaced DN of a user, a nested group, an entry outside the users base
    # and a dangling DN inside it.
    slapd.modify(
        f"dn: {group_dn(0)}\nchangetype: modify\nreplace: member\n"
        "member: UID=user000011, OU=People,DC=example,DC=org\n"
        f"member: {group_dn(1)}\n"
        f"member: {slapd.admin_dn}\n"
        f"member: uid=ghost,{PEOPLE}\n"
    )
    uuids = entry_uuids(slapd)
    calls = spy_searches(monkeypatch)
    for users_first in (True, False):
        conn = connector(slapd, incremental="none")
        conn.open()
        if users_first:
            list(conn.read("user", None, []))
        calls.clear()
        groups = all_entries(list(conn.read("group", None, [])))
        assert groups[group_dn(0).lower()].members == {uuids[user_dn(11).lower()]}
        conn.close()
        lookups = [f for b, f, _a in calls if b.lower() == PEOPLE]
        if users_first:  # a complete users read is authoritative: no member lookups
            assert lookups == []
        else:  # one bulk lookup of the DNs inside the users base; not the admin, not groups
            (lookup,) = lookups
            assert "(uid=ghost)" in lookup and "(uid=user000011)" in lookup
            assert "admin" not in lookup and "group" not in lookup


def test_users_filter_limits_member_resolution(slapd_server: Slapd) -> None:
    only = "(&(objectClass=inetOrgPerson)(|(uid=user000000)(uid=user000001)(uid=user000002)))"
    uuids = entry_uuids(slapd_server)
    conn = connector(slapd_server, users={"base": PEOPLE, "filter": only})
    conn.open()
    groups = all_entries(list(conn.read("group", None, [])))
    allowed = {uuids[user_dn(i).lower()] for i in range(3)}
    for j in range(SMALL_GROUPS):
        assert groups[group_dn(j).lower()].members == expected_members(uuids, j) & allowed


def test_reading_groups_without_group_search_is_fatal(slapd_server: Slapd) -> None:
    conn = connector(slapd_server, groups=None)
    conn.open()
    with pytest.raises(Fatal, match="groups"):
        list(conn.read("group"))


# ---- find ----------------------------------------------------------------------------------


def test_find_matches_exactly(corp: LdapConnector) -> None:
    found = corp.find("user", "uid", "user000003")
    assert [e.name for e in found] == [user_dn(3)]
    assert found[0].raw["mail"] == ("user000003@example.com",)
    assert [e.name for e in corp.find("user", "cn", "Zoë Ångström")] == [user_dn(0)]


@pytest.mark.parametrize("value", ["*", "*)(uid=*", "user00000*", "x)(|(uid=*", "\\2a"])
def test_find_escapes_filter_characters(corp: LdapConnector, value: str) -> None:
    assert corp.find("user", "uid", value) == []


def test_find_matches_value_with_special_characters_literally(slapd: Slapd) -> None:
    slapd.modify(f"dn: {user_dn(2)}\nchangetype: modify\nreplace: title\ntitle: a*)(b\\c\n")
    conn = connector(slapd)
    conn.open()
    assert [e.name for e in conn.find("user", "title", "a*)(b\\c")] == [user_dn(2)]
    assert conn.find("user", "title", "a*") == []


def test_find_groups_resolves_members(corp: LdapConnector, slapd_server: Slapd) -> None:
    (group,) = corp.find("group", "cn", "group0001")
    assert group.members == expected_members(entry_uuids(slapd_server), 1)


@pytest.mark.parametrize("decoder", ["lean", "stock"])
def test_concurrent_finds_from_eight_threads(slapd_server: Slapd, decoder: str) -> None:
    """The engine adopts from several apply threads at once: each find must get its own
    answer. One shared connection would interleave the threads' replies (the lean decoder
    reads them straight off the socket): wrong entries or undecodable replies."""
    conn = connector(slapd_server, decoder=decoder)
    conn.open()
    uuids = entry_uuids(slapd_server)
    threads, rounds = 8, 12
    start = threading.Barrier(threads)

    def work(t: int) -> list[tuple[str, list[str], list[str]]]:
        start.wait()  # all threads search at the same moment
        seen = []
        for r in range(rounds):
            i = (t * rounds + r) % SMALL_USERS
            users = conn.find("user", "uid", f"user{i:06d}")
            groups = conn.find("group", "cn", f"group{i % SMALL_GROUPS:04d}") if r % 4 == 0 else []
            seen.append((user_dn(i), [e.name for e in users], [e.external_id for e in users]))
            for g in groups:
                assert g.members == expected_members(uuids, i % SMALL_GROUPS)
        return seen

    with ThreadPoolExecutor(threads) as pool:
        results = [item for chunk in pool.map(work, range(threads)) for item in chunk]
    assert len(results) == threads * rounds
    for dn, names, anchors in results:
        assert names == [dn]
        assert anchors == [uuids[dn.lower()]]
    opened = list(conn._conns)
    assert len(opened) > 1  # the threads had connections of their own
    conn.close()
    assert conn._conns == [] and all(c.closed for c in opened)  # close ends every thread's


# ---- failures ------------------------------------------------------------------------------

SECRET = "s3cr3t-PASSWORD-do-not-log"


def test_bind_failure_is_fatal_without_the_password(slapd_server: Slapd) -> None:
    conn = connector(slapd_server, bind_password=SECRET)
    with pytest.raises(Fatal, match="bind failed") as info:
        conn.open()
    text = f"{info.value} {info.value!r} {info.value.args}"
    assert SECRET not in text
    assert slapd_server.url in str(info.value)
    assert info.value.connector == "corp"


def test_unreachable_server_is_fatal(slapd_server: Slapd) -> None:
    url = f"ldap://127.0.0.1:{free_port()}"
    conn = connector(slapd_server, url=url, bind_password=SECRET, timeout=2)
    with pytest.raises(Fatal) as info:
        conn.open()
    assert url in str(info.value)
    assert "corp" in str(info.value)
    assert SECRET not in str(info.value)


def test_missing_base_is_fatal_and_named(slapd_server: Slapd) -> None:
    base = f"ou=nowhere,{BASE}"
    conn = connector(slapd_server, users={"base": base})
    conn.open()
    with pytest.raises(Fatal, match="ou=nowhere,dc=example,dc=org"):
        list(conn.read("user", None, ["uid"]))


def test_size_limit_marks_read_incomplete(small_ldif: Any) -> None:
    with Slapd(ldif=small_ldif, size_limit=5) as server:
        server.add(f"dn: cn=reader,{BASE}\nobjectClass: person\ncn: r\nsn: r\nuserPassword: pw\n")
        conn = connector(server, bind_dn=f"cn=reader,{BASE}", bind_password="pw", page_size=3)
        conn.open()
        batches = list(conn.read("user", None, ["uid"]))
        assert sum(len(b.entries) for b in batches) < SMALL_USERS
        assert batches[-1].complete is False
        # the admin is not limited: the same read is complete
        admin = connector(server, page_size=3)
        admin.open()
        assert list(admin.read("user", None, ["uid"]))[-1].complete is True


def test_entry_without_anchor_makes_read_incomplete(slapd: Slapd) -> None:
    slapd.add(f"dn: uid=noemp,{PEOPLE}\nobjectClass: inetOrgPerson\nuid: noemp\ncn: n\nsn: n\n")
    conn = connector(slapd, anchor="employeeNumber")
    conn.open()
    batches = list(conn.read("user", None, ["uid"]))
    assert sum(len(b.entries) for b in batches) == SMALL_USERS
    assert batches[-1].complete is False
    assert {e.external_id for b in batches for e in b.entries} == {
        str(100000 + i) for i in range(SMALL_USERS)
    }


def test_timeout_during_read_is_retriable(slapd: Slapd) -> None:
    conn = connector(slapd, page_size=5, timeout=1)
    conn.open()
    pages = conn.read("user", None, ["uid"])
    next(pages)
    # the rest: the next page may already be on our socket (requested while the previous
    # one was decoded), the one after cannot be
    with slapd.paused(), pytest.raises(Retriable, match="interrupted"):
        list(pages)
    # the next read reconnects and is whole again
    assert sum(len(b.entries) for b in conn.read("user", None, ["uid"])) == SMALL_USERS


def test_server_killed_mid_read(slapd: Slapd) -> None:
    conn = connector(slapd, page_size=5)
    conn.open()
    pages = conn.read("user", None, ["uid"])
    next(pages)
    slapd.kill()
    with pytest.raises(Retriable):
        list(pages)  # never a silently shortened read
    with pytest.raises(Fatal, match="cannot connect"):
        list(conn.read("user", None, ["uid"]))




def test_anonymous_bind_reads(slapd_server: Slapd) -> None:
    conn = connector(slapd_server, bind_dn=None, bind_password=None)
    conn.open()
    assert sum(len(b.entries) for b in conn.read("user", None, ["uid"])) == SMALL_USERS


# ---- TLS -----------------------------------------------------------------------------------


def test_tls_verifies_by_default(tmp_path: Path) -> None:
    import certifi

    ca = tmp_path / "ca.pem"  # checked at config load: it must hold a PEM certificate
    ca.write_bytes(Path(certifi.where()).read_bytes())

    def tls(**settings: Any) -> ldap3.Tls | None:
        cfg = LdapConfig.model_validate({"type": "ldap", "users": {"base": PEOPLE}, **settings})
        return LdapConnector("c", cfg).build_tls()

    default = tls(url="ldaps://h")
    assert default is not None and default.validate == ssl.CERT_REQUIRED
    start = tls(url="ldap://h", start_tls=True, ca_file=str(ca))
    assert start is not None and start.validate == ssl.CERT_REQUIRED
    assert start.ca_certs_file == str(ca)
    lab = tls(url="ldaps://h", tls_verify=False)
    assert lab is not None and lab.validate == ssl.CERT_NONE
    assert tls(url="ldap://h") is None


def test_missing_ca_file_is_a_config_error(slapd_server: Slapd) -> None:
    """Caught at config load (exit 2 naming the key), not at the first connection."""
    with pytest.raises(ValueError, match=r"ca_file\n.*/nonexistent/ca\.pem: not found"):
        connector(slapd_server, start_tls=True, ca_file="/nonexistent/ca.pem")


@pytest.fixture(scope="module")
def tls_server(small_ldif: Any) -> Iterator[Slapd]:
    with Slapd(ldif=small_ldif, tls=True) as server:
        yield server


@pytest.mark.parametrize("mode", ["ldaps", "start_tls"])
def test_tls_against_real_server(tls_server: Slapd, mode: str) -> None:
    if mode == "ldaps":
        base: dict[str, Any] = {"url": tls_server.ldaps_url}
    else:
        base = {"url": tls_server.url, "start_tls": True}
    untrusted = connector(tls_server, **base)
    with pytest.raises(Fatal):  # self-signed CA not trusted: refused by default
        untrusted.open()
    trusted = connector(tls_server, ca_file=tls_server.ca_file, **base)
    trusted.open()
    assert sum(len(b.entries) for b in trusted.read("user", None, ["uid"])) == SMALL_USERS
    lab = connector(tls_server, tls_verify=False, **base)
    lab.open()  # explicitly unverified works, only when asked
    lab.close()


def test_tls_checks_the_host_name(small_ldif: Any) -> None:
    with Slapd(ldif=small_ldif, tls=True, cert_names=("DNS:elsewhere.example.org",)) as server:
        wrong_name = connector(server, url=server.ldaps_url, ca_file=server.ca_file)
        with pytest.raises(Fatal, match=r"TLS certificate verification failed .* host name"):
            wrong_name.open()
        lab = connector(server, url=server.ldaps_url, ca_file=server.ca_file, tls_verify=False)
        lab.open()
        lab.close()


# ---- config and pure helpers ---------------------------------------------------------------


def config_error(**overrides: Any) -> str:
    settings = {"type": "ldap", "url": "ldap://h", "users": {"base": PEOPLE}, **overrides}
    with pytest.raises(ValidationError) as info:
        LdapConfig(**settings)
    return str(info.value)


def test_config_rejects_bad_url() -> None:
    assert "ldap:// or ldaps://" in config_error(url="http://ldap.example.org")
    assert "ldap:// or ldaps://" in config_error(url="ldap.example.org")
    assert "needs a host" in config_error(url="ldap://")
    assert "start_tls" in config_error(url="ldaps://h", start_tls=True)


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("(objectClass=person", "missing ')'"),
        ("objectClass=person", "expected '('"),
        ("(a=b)(c=d)", "combine several filters"),
        ("(&)", "at least one"),
        ("(cn=a(b)", "unescaped '('"),
        ("(cn=a\\zz)", "invalid escape"),
        ("(=x)", "invalid attribute"),
    ],
)
def test_config_rejects_bad_filters_clearly(bad: str, says: str) -> None:
    text = config_error(users={"base": PEOPLE, "filter": bad})
    assert "invalid LDAP filter" in text and says in text


@pytest.mark.parametrize(
    "good",
    ["(objectClass=*)", "(&(a=b)(|(c~=d)(!(e>=5))))", "(cn=a\\2a*b*)", "(cn:dn:2.5.13.5:=x)"],
)
def test_config_accepts_valid_filters(good: str) -> None:
    cfg = LdapConfig.model_validate(
        {"type": "ldap", "url": "ldap://h", "users": {"base": PEOPLE, "filter": good}}
    )
    assert cfg.users.filter == good


def test_config_other_checks() -> None:
    assert "not a valid DN" in config_error(users={"base": "not a dn"})
    assert "extra" in config_error(colour="blue").lower()
    assert "bind_password" in config_error(bind_dn="cn=a,dc=b")
    assert "valid LDAP attribute" in config_error(anchor="entry UUID")
    secret_error = config_error(bind_dn="cn=a", bind_password=SECRET, url="ftp://h")
    assert SECRET not in secret_error


def test_dn_helpers_and_object_guid() -> None:
    assert normalize_dn("UID=a, OU=People ,dc=X") == "uid=a,ou=people,dc=x"
    assert normalize_dn("uid=a,ou=people,dc=x") == "uid=a,ou=people,dc=x"
    assert one_level_below("uid=a,ou=p,dc=x", "ou=p,dc=x")
    assert not one_level_below("uid=a,ou=sub,ou=p,dc=x", "ou=p,dc=x")
    assert one_level_below("cn=a\\,b,ou=p,dc=x", "ou=p,dc=x")
    guid = uuid.UUID("6f9619ff-8b86-d011-b42d-00c04fc964ff")
    assert anchor_string("objectGUID", guid.bytes_le) == str(guid)
    assert anchor_string("entryUUID", b"abc") == "abc"
