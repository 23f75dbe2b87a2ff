"""TLS warnings and certificate errors of the LDAP connector
(connectors/syncd_connectors/ldap/tls.py).

Unsafe settings must never be silent: ``tls_verify = false`` and a password sent in clear
text to another machine are logged at every `open()`. A certificate that fails verification
is named as the problem (with ``ca_file`` as the way out), not a generic "cannot connect".
The non-loopback case is checked on the decision function and on `open()` with its
connection stubbed: no traffic ever leaves 127.0.0.1.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.errors import Fatal
from syncd_connectors.ldap.config import LdapConfig
from syncd_connectors.ldap.connector import LdapConnector
from syncd_connectors.ldap.tls import is_loopback, tls_warnings
from tests.peers.directory import PEOPLE
from tests.peers.ldap_fixtures import ldap_settings
from tests.peers.slapd import Slapd

pytestmark = pytest.mark.peers

CLEAR = "clear text"
UNVERIFIED = "tls_verify = false"


def config(**settings: Any) -> LdapConfig:
    base = {"type": "ldap", "url": "ldap://ldap.example.org", "users": {"base": PEOPLE}}
    return LdapConfig.model_validate(base | settings)


BIND = {"bind_dn": "cn=sync,dc=example,dc=org", "bind_password": "pw"}


@pytest.mark.parametrize(
    ("settings", "clear"),
    [
        ({**BIND}, True),
        ({**BIND, "url": "ldap://10.1.2.3:389"}, True),
        ({**BIND, "url": "ldap://[2001:db8::1]"}, True),
        ({**BIND, "start_tls": True}, False),
        ({**BIND, "url": "ldaps://ldap.example.org"}, False),
        ({**BIND, "url": "ldap://127.0.0.1:389"}, False),
        ({**BIND, "url": "ldap://127.8.9.10"}, False),
        ({**BIND, "url": "ldap://localhost"}, False),
        ({**BIND, "url": "ldap://[::1]:389"}, False),
        ({}, False),  # anonymous: no password to leak
    ],
)
def test_password_bind_in_clear_text_to_another_host_is_warned(
    settings: dict[str, Any], clear: bool
) -> None:
    warnings = tls_warnings(config(**settings))
    assert any(CLEAR in w for w in warnings) is clear
    if clear:
        (w,) = warnings
        assert "cn=sync,dc=example,dc=org" in w and "pw" not in w.split()
        assert "ldaps://" in w and "start_tls" in w


def test_unverified_tls_is_warned_and_verified_is_not() -> None:
    (w,) = tls_warnings(config(url="ldaps://ldap.example.org", tls_verify=False, **BIND))
    assert UNVERIFIED in w and "ca_file" in w
    assert tls_warnings(config(url="ldaps://ldap.example.org", **BIND)) == []
    both = tls_warnings(config(tls_verify=False, **BIND))
    assert len(both) == 2


def test_loopback_hosts() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback, ["10.0.0.1", "ldap.example.org", "2001:db8::1", ""]))


def test_open_warns_every_time_before_connecting(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """`open()` itself logs the decision (connection stubbed: nothing leaves this host)."""
    conn = LdapConnector("corp", config(tls_verify=False, **BIND))
    monkeypatch.setattr(conn, "_connect", lambda: None)
    caplog.set_level(logging.WARNING, logger="syncd.connectors.ldap")
    conn.open()
    conn.open()
    texts = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum(CLEAR in t for t in texts) == 2
    assert sum(UNVERIFIED in t for t in texts) == 2
    assert all("corp" in t and "ldap://ldap.example.org" in t for t in texts)


@pytest.fixture(scope="module")
def tls_server(small_ldif: Path) -> Iterator[Slapd]:
    with Slapd(ldif=small_ldif, tls=True) as server:
        yield server


def test_unverified_open_against_a_real_server_warns_each_time(
    tls_server: Slapd, caplog: pytest.LogCaptureFixture
) -> None:
    lab = LdapConnector(
        "corp", LdapConfig(**ldap_settings(tls_server, url=tls_server.ldaps_url, tls_verify=False))
    )
    caplog.set_level(logging.WARNING, logger="syncd.connectors.ldap")
    for _ in range(2):
        lab.open()
    lab.close()
    texts = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum(UNVERIFIED in t for t in texts) == 2
    assert not any(CLEAR in t for t in texts)  # TLS, and loopback anyway
    caplog.clear()  # verified TLS, and a plain bind that stays on this host: quiet
    for extra in ({}, {"url": tls_server.ldaps_url, "ca_file": tls_server.ca_file}):
        conn = LdapConnector("corp", LdapConfig(**ldap_settings(tls_server, **extra)))
        conn.open()
        conn.close()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.parametrize("mode", ["ldaps", "start_tls"])
@pytest.mark.parametrize("side", ["read", "write"])
def test_untrusted_certificate_is_named_as_the_problem(
    tls_server: Slapd, mode: str, side: str
) -> None:
    url = tls_server.ldaps_url if mode == "ldaps" else tls_server.url
    extra: dict[str, Any] = {"url": url, "start_tls": mode == "start_tls"}
    conn = LdapConnector("corp", LdapConfig(**ldap_settings(tls_server, **extra)))
    with pytest.raises(Fatal) as info:
        if side == "read":
            conn.open()
        else:
            conn.create("user", {"uid": "x", "cn": "x", "sn": "x"})
    text = str(info.value)
    assert f"TLS certificate verification failed for {url}" in text
    assert "self-signed certificate" in text and "set ca_file" in text
    assert tls_server.admin_password not in text
