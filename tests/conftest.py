"""Fixtures for real peers live in tests/peers; they start servers on 127.0.0.1 free ports
and stop them by PID."""

pytest_plugins = [
    "tests.peers.ldap_fixtures",
    "tests.peers.scim_fixtures",
    "tests.peers.ad_fixtures",
    "tests.peers.ds389_fixtures",
]
