"""Creates the target would certainly refuse reach the SCIM sender as a 400: the LDAP
connector knows, without a connection, that an entry needs its RDN and the attributes its
object classes require; the SCIM service provider's refusal check asks the flow's target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from syncd.config import load
from syncd.daemon.inbound.refusal import Refusals
from syncd_connectors.ldap.config import LdapConfig
from syncd_connectors.ldap.connector import LdapConnector
from syncd_connectors.ldap.write.required import missing

LDAP: dict[str, Any] = {
    "type": "ldap", "url": "ldap://127.0.0.1:1", "bind_dn": "cn=admin,dc=example,dc=org",
    "bind_password": "x", "users": {"base": "ou=people,dc=example,dc=org"},
    "groups": {"base": "ou=groups,dc=example,dc=org"}}


def connector(**users: Any) -> LdapConnector:
    cfg = {**LDAP, "users": {**LDAP["users"], **({"write": users} if users else {})}}
    return LdapConnector("corp", LdapConfig(**cfg))  # never opened: no traffic at all


def test_an_entry_needs_its_rdn_and_what_its_classes_require() -> None:
    c = connector()
    assert c.refuses("user", {"uid": "ann", "cn": "Ann Lee", "sn": "Lee"}) is None
    why = c.refuses("user", {"uid": "ann", "cn": "Ann Lee"})
    assert why is not None and "requires sn" in why and "inetOrgPerson" in why
    why = c.refuses("user", {"cn": "Ann Lee", "sn": "Lee"})
    assert why is not None and "needs uid (its RDN)" in why
    assert c.refuses("user", {"uid": "ann", "cn": "Ann", "sn": ""}) is not None  # empty
    posix = connector(object_classes=["inetOrgPerson", "posixAccount"])
    why = posix.refuses("user", {"uid": "ann", "cn": "Ann", "sn": "Lee"})
    assert why is not None and "gidnumber, homedirectory, uidnumber" in why
    # a class syncd does not know: nothing is claimed, the server decides
    assert connector(object_classes=["acmePerson"]).refuses("user", {"uid": "a"}) is None
    assert c.refuses("group", {"cn": "staff"}) is None  # the placeholder fills member


def test_missing_is_case_insensitive() -> None:
    assert missing(["InetOrgPerson"], ["SN", "CN"]) == []
    assert missing(["posixGroup", "top"], ["cn"]) == ["gidnumber"]


CONFIG = """
[state]
url = "sqlite:///{state}"
[connectors.inbox]
type = "scim_inbox"
[connectors.corp]
type = "ldap"
url = "ldap://127.0.0.1:1"
bind_dn = "cn=admin,dc=example,dc=org"
bind_password = "x"
users = {{ base = "ou=people,dc=example,dc=org" }}
[flows.in]
source = "inbox"
target = "corp"
match = ["uid"]
[flows.in.users.mapping]
uid = "userName"
cn = "displayName"
{more}
"""


@pytest.mark.parametrize(("more", "body", "refused"), [
    ("", {"userName": "ann", "displayName": "Ann Lee"}, "requires sn"),
    ('sn = "name.familyName"', {"userName": "ann", "displayName": "Ann Lee"}, "requires sn"),
    ('sn = "name.familyName"', {"userName": "ann", "displayName": "Ann Lee",
                                "name": {"familyName": "Lee"}}, None),
])
def test_the_service_provider_refuses_what_the_directory_would(
        tmp_path: Path, more: str, body: dict[str, Any], refused: str | None) -> None:
    p = tmp_path / "c.toml"
    p.write_text(CONFIG.format(state=tmp_path / "s.db", more=more))
    cfg = load(p)
    check = Refusals(lambda: cfg, "inbox")
    why = check.why("user", "r1", body, create=True)
    if refused is None:
        assert why is None
    else:
        assert why is not None and refused in why and "flow 'in'" in why and "corp" in why
        assert check.why("user", "r1", body) is None  # an update: the cycle decides
