"""The received directory of ``syncd serve`` on the state store's second backend, PostgreSQL
(127.0.0.1:5432, a database created for each test and dropped after it).

The store's and the server's unit tests (`tests.unit.test_inbox`, `tests.unit.test_inbound`:
sequence, tombstones, case-insensitive userName uniqueness, members, secrets, the source's
cursors, Entra's request shapes, filters, pagination) run here again unchanged, with their
``store``/``inbox`` fixtures on PostgreSQL. Then concurrency over HTTP on both backends:
parallel creates of one userName give exactly one 201 and 409 for every other, and parallel
PATCHes of one group lose no member.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

import tests.unit.test_inbound as inbound_tests
import tests.unit.test_inbox as inbox_tests
from syncd.daemon.inbound.app import InboundApp
from syncd.state.inbox import Inbox
from syncd.state.store import Store
from tests.e2e.test_postgres_store import pg_url  # noqa: F401 (a fixture)

pytestmark = pytest.mark.peers
TOKEN = inbound_tests.TOKEN
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


@pytest.fixture
def store(pg_url: str) -> Iterator[Store]:  # noqa: F811 (uses the imported fixture)
    s = Store(pg_url)
    yield s
    s.close()


@pytest.fixture
def inbox(store: Store) -> Inbox:
    assert store.engine is not None
    return Inbox(store.engine, "entra")


http = inbound_tests.http

#: The unit tests of the store and the server, collected here with the fixtures above.
for _module in (inbox_tests, inbound_tests):
    for _name, _test in vars(_module).items():
        if _name.startswith("test_") and callable(_test):
            globals()[_name] = _test


def test_the_store_is_postgresql(inbox: Inbox) -> None:
    assert inbox.engine.dialect.name.startswith("postgres")


# -- concurrency over HTTP, both backends ----------------------------------------------------

@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Inbox]:
    url = (f"sqlite:///{tmp_path}/state.db" if request.param == "sqlite"
           else request.getfixturevalue("pg_url"))
    s = Store(url)
    assert s.engine is not None
    yield Inbox(s.engine, "entra")
    s.close()


def _clients(inbox: Inbox) -> Callable[[], httpx.Client]:
    """A client per thread over one app (the server's threads share the app too)."""
    app = InboundApp(inbox, [TOKEN])
    local = threading.local()

    def get() -> httpx.Client:
        if not hasattr(local, "c"):
            local.c = httpx.Client(transport=httpx.WSGITransport(app=app),
                                   base_url="http://scim.test/v2",
                                   headers={"Authorization": f"Bearer {TOKEN}"})
        client: httpx.Client = local.c
        return client

    return get


def _together(n: int, work: Callable[[int], Any]) -> list[Any]:
    """`work(0..n-1)` in n threads released at once."""
    gate = threading.Barrier(n)

    def run(i: int) -> Any:
        gate.wait()
        return work(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def test_parallel_creates_of_one_user_name(backend: Inbox) -> None:
    client = _clients(backend)

    def create(i: int) -> int:
        name = "Pat.Parallel" if i % 2 else "pat.parallel"  # any case: one userName
        r = client().post("/Users", json={"schemas": [USER], "userName": name,
                                          "externalId": f"e{i}"})
        if r.status_code == 409:
            assert r.json()["scimType"] == "uniqueness", r.text
        return r.status_code

    codes = _together(8, create)
    assert sorted(codes) == [201] + [409] * 7, codes
    assert backend.count("user") == 1
    assert backend.head() == 1  # the refused creates left nothing behind, not even a number


def test_parallel_member_patches_lose_nothing(backend: Inbox) -> None:
    client = _clients(backend)
    ids = [client().post("/Users", json={"schemas": [USER], "userName": f"m{i}"}).json()["id"]
           for i in range(8)]
    gid = client().post("/Groups", json={"schemas": [GROUP], "displayName": "g"}).json()["id"]

    def add(i: int) -> int:  # Entra sends these without If-Match
        return client().patch(f"/Groups/{gid}", json={"schemas": [PATCH], "Operations": [
            {"op": "add", "path": "members", "value": [{"value": ids[i]}]}]}).status_code

    assert set(_together(8, add)) <= {200, 204}
    got = client().get(f"/Groups/{gid}").json()
    assert sorted(m["value"] for m in got["members"]) == sorted(ids)
