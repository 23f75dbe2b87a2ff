"""pytest fixtures for the real SCIM peers (loaded through ``pytest_plugins``).

One server process per kind per test session (a Django start costs ~3 s with its migration),
reset to an empty directory before each test that asks for it:

 - ``scim2_server``: a `Scim2Server` (scim2-server + waitress), empty.
 - ``django_scim_server``: a `DjangoScimServer` (django-scim2-server + SQLite + waitress), empty.
 - ``scim_server``: parametrized over both (ids ``scim2-server`` and ``django``).
 - ``small_bulk_server``: a `Scim2Server` whose /Bulk takes at most `SMALL_BULK_OPS`
   operations and `SMALL_BULK_BYTES` bytes per request, empty.
 - ``acme_scim2_server``: a `Scim2Server` that also serves the custom User extension
   `ACME_SCHEMA` (`URN_ACME`: costCenter, badgeNumber, contractor, …), empty.

Every server accepts exactly the bearer token ``SCIM_TEST_TOKEN`` (``server.token``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.peers.scim_servers import DjangoScimServer, Scim2Server, _Peer

SCIM_TEST_TOKEN = "syncd-test-token-4711"
SMALL_BULK_OPS = 7
SMALL_BULK_BYTES = 4000
URN_ACME = "urn:ietf:params:scim:schemas:extension:acme:2.0:User"


def _attr(name: str, type_: str, **more: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, "multiValued": False, "required": False,
            "caseExact": False, "mutability": "readWrite", "returned": "default",
            "uniqueness": "none", **more}


#: A custom extension as an admin would load it: one attribute of each type syncd converts.
ACME_SCHEMA: dict[str, Any] = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
    "id": URN_ACME,
    "name": "AcmeUser",
    "description": "Acme's own user attributes",
    "attributes": [
        _attr("costCenter", "string"),
        _attr("badgeNumber", "integer"),
        _attr("contractor", "boolean"),
        _attr("hourlyRate", "decimal"),
        _attr("startDate", "dateTime"),
        _attr("accountExpires", "dateTime"),
        _attr("skills", "string", multiValued=True),
        _attr("sponsor", "complex", subAttributes=[_attr("value", "string"),
                                                   _attr("displayName", "string")]),
        _attr("badgeId", "string", mutability="readOnly"),
    ],
}


@pytest.fixture(scope="session")
def _scim2_server_process() -> Iterator[Scim2Server]:
    with Scim2Server(token=SCIM_TEST_TOKEN) as server:
        yield server


@pytest.fixture(scope="session")
def _django_scim_server_process() -> Iterator[DjangoScimServer]:
    with DjangoScimServer(token=SCIM_TEST_TOKEN) as server:
        yield server


@pytest.fixture(scope="session")
def _small_bulk_server_process() -> Iterator[Scim2Server]:
    server = Scim2Server(
        token=SCIM_TEST_TOKEN, bulk_max_operations=SMALL_BULK_OPS, bulk_max_payload=SMALL_BULK_BYTES
    )
    with server:
        yield server


@pytest.fixture(scope="session")
def _acme_scim2_server_process() -> Iterator[Scim2Server]:
    with Scim2Server(token=SCIM_TEST_TOKEN, user_extensions=[ACME_SCHEMA]) as server:
        yield server


@pytest.fixture
def acme_scim2_server(_acme_scim2_server_process: Scim2Server) -> Scim2Server:
    _acme_scim2_server_process.reset()
    return _acme_scim2_server_process


@pytest.fixture
def small_bulk_server(_small_bulk_server_process: Scim2Server) -> Scim2Server:
    _small_bulk_server_process.reset()
    return _small_bulk_server_process


@pytest.fixture
def scim2_server(_scim2_server_process: Scim2Server) -> Scim2Server:
    _scim2_server_process.reset()
    return _scim2_server_process


@pytest.fixture
def django_scim_server(_django_scim_server_process: DjangoScimServer) -> DjangoScimServer:
    _django_scim_server_process.reset()
    return _django_scim_server_process


@pytest.fixture(params=["scim2-server", "django"])
def scim_server(request: pytest.FixtureRequest) -> _Peer:
    name = "scim2_server" if request.param == "scim2-server" else "django_scim_server"
    server: _Peer = request.getfixturevalue(name)
    return server
