"""Passwords never leave the LDAP connector: not requested, not kept, not searched by.

The test server's admin (the connector's bind DN here) may read ``userPassword``, as bind
accounts in the field often can; nothing the connector returns may carry it anyway, through
``*`` (attributes=None), an explicit request, `find`, or the writer's read-back.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd.errors import ConfigError
from syncd.model import Entry
from syncd_connectors.ldap.config import LdapConfig
from syncd_connectors.ldap.connector import LdapConnector
from syncd_connectors.ldap.values import PASSWORD_ATTRIBUTES, is_password_attribute
from syncd_connectors.ldap.wire.decode import Plan, row_from_event
from syncd_connectors.ldap.wire.events import SearchEntry
from tests.peers.directory import user_dn, user_uid
from tests.peers.ldap_fixtures import ldap_settings
from tests.peers.slapd import Slapd

pytestmark = pytest.mark.peers

HASH = "{SSHA}cGFzc3dvcmQtaGFzaC1vZi11c2VyMg=="
NAMES = ["userPassword", "unicodePwd", "dBCSPwd", "ntPwdHistory", "lmPwdHistory",
         "supplementalCredentials", "sambaNTPassword", "sambaLMPassword", "userPKCS12",
         "msDS-ManagedPassword", "clearTextPassword"]  # fmt: skip


@given(name=st.sampled_from(NAMES), data=st.data())
def test_password_names_in_any_case_and_with_options(name: str, data: st.DataObject) -> None:
    flips = data.draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    spelled = "".join(c.upper() if f else c.lower() for c, f in zip(name, flips, strict=True))
    option = data.draw(st.sampled_from(["", ";binary", ";lang-en"]))
    assert is_password_attribute(spelled + option)
    plan = Plan("user", None, frozenset(), "entryuuid", "member")
    assert plan.action(spelled.lower()) == 0
    assert not is_password_attribute("userPasswordHint") and not is_password_attribute("uid")


def test_every_listed_name_is_covered() -> None:
    assert {n.lower() for n in NAMES} <= PASSWORD_ATTRIBUTES


def test_both_decoders_drop_what_a_server_sends_anyway() -> None:
    item = SearchEntry("uid=a,dc=x", {"uid": [b"a"], "userpassword": [HASH.encode()],
                                      "entryuuid": [b"u-1"], "unicodepwd": [b"\x00\x01"]})
    for keep in (None, {"uid", "userpassword", "unicodepwd"}):
        plan = Plan("user", keep, frozenset({"unicodepwd"}), "entryuuid", "member")
        dn, anchor, raw, attrs, _m, _t = row_from_event(item, plan)
        assert (dn, anchor) == ("uid=a,dc=x", "u-1")
        assert set(raw) == set(attrs) == {"uid"} | ({"entryuuid"} if keep is None else set())


def connector(server: Slapd, **overrides: Any) -> LdapConnector:
    conn = LdapConnector("corp", LdapConfig(**ldap_settings(server, **overrides)))
    conn.open()
    return conn


def no_password(entries: list[Entry]) -> None:
    assert entries
    for e in entries:
        text = repr(e)
        assert HASH not in text and "userpassword" not in text.lower()


@pytest.mark.parametrize("decoder", ["lean", "stock"])
def test_reads_and_finds_never_carry_passwords(
    slapd: Slapd, decoder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    slapd.modify(f"dn: {user_dn(2)}\nchangetype: modify\nreplace: userPassword\n"
                 f"userPassword: {HASH}\n")
    conn = connector(slapd, decoder=decoder, incremental="none")
    sent: list[list[str]] = []
    real = conn._paged

    def spy(base: str, filter_: str, scope: str, attributes: list[str], plan: Any) -> Any:
        sent.append(list(attributes))
        return real(base, filter_, scope, attributes, plan)

    monkeypatch.setattr(conn, "_paged", spy)
    for attributes in (None, ["uid", "userPassword", "USERPASSWORD;binary", "unicodePwd"]):
        no_password([e for b in conn.read("user", None, attributes) for e in b.entries])
    no_password(conn.find("user", "uid", user_uid(2)))
    no_password(conn.find("user", "uid", user_uid(2), attributes=["uid", "userPassword"]))
    assert sent and all(not any(is_password_attribute(a) for a in s) for s in sent)
    with pytest.raises(ConfigError, match="password attribute"):
        conn.find("user", "userPassword", HASH)
    created = conn.create("user", {"uid": "new", "cn": "New", "sn": "N", "userPassword": HASH})
    no_password([created])
    conn.close()
