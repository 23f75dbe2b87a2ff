"""The SCIM connector against two real SCIM servers (scim2-server and django-scim2-server).

Faults (429, 503, resets) are injected by an httpx transport wrapper in front of the real
server; waits are recorded through the connector's `sleep` hook instead of being slept.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from syncd.connector import Connector
from syncd.errors import Conflict, Fatal, Rejected, Retriable
from syncd.model import Value
from syncd_connectors.scim.config import ScimConfig
from syncd_connectors.scim.connector import ScimConnector, parse_retry_after
from tests.peers.scim_servers import DjangoScimServer, _Peer

pytestmark = pytest.mark.peers

Fault = Callable[[httpx.Request], "httpx.Response | Exception | None"]


class Recording(httpx.BaseTransport):
    """Records requests and plays queued faults before reaching the real server;
    `on_response` may rewrite real responses (e.g. their Date header)."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.requests: list[httpx.Request] = []
        self.faults: list[Fault] = []
        self.on_response: Callable[[httpx.Response], httpx.Response] | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        for fault in list(self.faults):
            outcome = fault(request)
            if outcome is not None:
                self.faults.remove(fault)
                if isinstance(outcome, Exception):
                    raise outcome
                return outcome
        response = self.inner.handle_request(request)
        if self.on_response is not None:
            response.read()
            response = self.on_response(response)
        return response

    def close(self) -> None:
        self.inner.close()

    def sent(self, method: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method]


def once(method: str, path_part: str, make: Callable[[httpx.Request], Any]) -> Fault:
    def fault(request: httpx.Request) -> Any:
        if request.method == method and path_part in request.url.path:
            return make(request)
        return None

    return fault


def fake_time(conn: ScimConnector) -> list[float]:
    """Make the connector's waits instant and recorded, on a clock they advance."""
    waits: list[float] = []
    now = [0.0]

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    conn.sleep = sleep
    conn.clock = lambda: now[0]
    return waits


@pytest.fixture
def connect(request: pytest.FixtureRequest) -> Iterator[Callable[..., ScimConnector]]:
    opened: list[ScimConnector] = []

    def make(
        server: _Peer, transport: httpx.BaseTransport | None = None, **cfg: Any
    ) -> ScimConnector:
        cfg.setdefault("token", server.token)
        cfg.setdefault("url", server.url)  # a fault proxy's URL instead
        conn = ScimConnector("scim-test", ScimConfig(**cfg), transport=transport)
        conn.open()
        opened.append(conn)
        return conn

    yield make
    for conn in opened:
        conn.close()


@pytest.fixture
def conn(scim_server: _Peer, connect: Callable[..., ScimConnector]) -> ScimConnector:
    return connect(scim_server)


def raw_get(server: _Peer, path: str) -> httpx.Response:
    return httpx.get(f"{server.url}/{path}", headers={"Authorization": f"Bearer {server.token}"})


ALL_USER: dict[str, Value] = {
    "userName": "zoë.ünal",
    "displayName": "Zoë Ünal",
    "name.givenName": "Zoë",
    "name.familyName": "Ünal",
    "name.formatted": "Zoë Ünal",
    "emails.work": "zoe@example.com",
    "emails.home": "zoe.home@example.com",
    "phoneNumbers.mobile": "+49 170 000",
    "phoneNumbers.work": "+49 30 000",
    "title": "Ingénieure",
    "active": True,
    "externalId": "ext-ü-1",
    "nickName": "Zö",
    "preferredLanguage": "de-DE",
    "locale": "de-DE",
    "userType": "Employee",
    "enterprise.employeeNumber": "0042",
    "enterprise.department": "Forschung & Entwicklung",
    "enterprise.costCenter": "CC-7",
    "enterprise.organization": "Ökö GmbH",
    "enterprise.division": "Süd",
}


def expected(conn: ScimConnector, attrs: dict[str, Value]) -> dict[str, Value]:
    return {k: v for k, v in attrs.items() if k not in conn.capabilities.unsupported("user")}


# --- discovery ---------------------------------------------------------------------------


def test_is_a_connector(conn: ScimConnector) -> None:
    assert isinstance(conn, Connector)
    assert ScimConnector.config_model is ScimConfig


def test_discovery_scim2_server(scim2_server: _Peer, connect: Callable[..., ScimConnector]) -> None:
    caps = connect(scim2_server).capabilities
    assert caps.write and caps.patch and caps.bulk
    assert caps.bulk_max_operations > 0 and caps.bulk_max_payload > 0
    assert caps.unsupported("user") == frozenset()
    assert connect(scim2_server, bulk="never").capabilities.bulk is False


def test_discovery_django(django_scim_server: _Peer, connect: Callable[..., ScimConnector]) -> None:
    caps = connect(django_scim_server).capabilities
    assert caps.write and caps.patch
    assert not caps.bulk
    enterprise = {p for p in ScimConnector.known_paths("user") if p.startswith("enterprise.")}
    assert enterprise <= caps.unsupported("user")
    assert {"userName", "name.givenName", "emails.work", "active"}.isdisjoint(
        caps.unsupported("user")
    )


def test_known_paths_and_undeclared_dropped(conn: ScimConnector) -> None:
    """A path the server's /Schemas does not declare is reported (capabilities, check) and
    not sent: the entry is written without it."""
    assert {"userName", "emails.work", "enterprise.costCenter"} <= ScimConnector.known_paths("user")
    assert ScimConnector.known_paths("group") == {"displayName", "externalId"}
    with pytest.raises(ValueError, match=r"emails\.fax"):
        ScimConnector.check_paths("user", ["userName", "emails.fax"])
    unsupported = conn.capabilities.unsupported("user", ["userName", "favouriteColour"])
    assert "favouriteColour" in unsupported and "userName" not in unsupported
    assert set(conn.path_problems("user", ["userName", "favouriteColour"])) == {
        "favouriteColour"}
    made = conn.create("user", {"userName": "x", "favouriteColour": "blue"})
    assert "favouriteColour" not in made.attrs and made.attrs["userName"] == "x"


# --- users -------------------------------------------------------------------------------


def test_body_validation_is_remembered_per_shape_never_per_value(
    scim_server: _Peer, conn: ScimConnector
) -> None:
    """Bodies of a shape that validated unchanged are sent as built; any new shape (other
    keys, types or emptiness) is validated again and refused before a request is sent."""
    made = [conn.create("user", {**ALL_USER, "userName": f"shape{i}", "emails.work":
                                 f"shape{i}@example.org"}) for i in range(3)]
    assert len(conn._valid_shapes) == 1
    assert [e.attrs["userName"] for e in made] == ["shape0", "shape1", "shape2"]
    assert made[2].attrs == expected(conn, {**ALL_USER, "userName": "shape2",
                                            "emails.work": "shape2@example.org"})
    for bad, where in (({"userName": "shape9", "active": "maybe"}, "active"),
                       ({"userName": "shape9", "name.givenName": ("a", "b")}, "givenName"),
                       ({"userName": "", "displayName": "x"}, "userName")):
        with pytest.raises(Rejected, match=where):
            conn.create("user", bad)
    assert not conn.find("user", "userName", "shape9")


def test_create_all_paths_and_read_back(scim_server: _Peer, conn: ScimConnector) -> None:
    created = conn.create("user", ALL_USER)
    want = expected(conn, ALL_USER)
    assert created.external_id
    assert dict(created.attrs) == want
    assert created.name == "zoë.ünal"
    [found] = conn.find("user", "userName", "zoë.ünal")
    assert found.external_id == created.external_id and dict(found.attrs) == want
    [listed] = [e for b in conn.read("user") for e in b.entries]
    assert dict(listed.attrs) == want
    assert raw_get(scim_server, f"Users/{created.external_id}").json()["userName"] == "zoë.ünal"


def test_find_escapes_quote_and_backslash(conn: ScimConnector) -> None:
    tricky = 'o"brien\\x'
    decoy = conn.create("user", {"userName": 'o"brien'})
    user = conn.create("user", {"userName": tricky, "externalId": 'e"\\1'})
    assert [e.external_id for e in conn.find("user", "userName", tricky)] == [user.external_id]
    assert [e.external_id for e in conn.find("user", "externalId", 'e"\\1')] == [user.external_id]
    assert [e.external_id for e in conn.find("user", "userName", 'o"brien')] == [decoy.external_id]
    assert conn.find("user", "userName", "nobody") == []


def test_find_by_typed_email(conn: ScimConnector) -> None:
    user = conn.create("user", {"userName": "mail", "emails.work": "w@example.com"})
    assert [e.external_id for e in conn.find("user", "emails.work", "w@example.com")] == [
        user.external_id
    ]
    assert conn.find("user", "emails.work", "other@example.com") == []


def test_update_sends_only_changes_and_clears(
    scim_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    rec = Recording()
    conn = connect(scim_server, transport=rec)
    user = conn.create(
        "user",
        {"userName": "upd", "name.givenName": "Ana", "name.familyName": "Ört", "active": True},
    )
    conn.update("user", user.external_id, {"name.familyName": "Öztürk", "name.givenName": None})
    [patch] = rec.sent("PATCH")
    ops = json.loads(patch.content)["Operations"]
    assert sorted((o["op"], o["path"]) for o in ops) == [
        ("remove", "name.givenName"),
        ("replace", "name.familyName"),
    ]
    body = raw_get(scim_server, f"Users/{user.external_id}").json()
    assert body["name"]["familyName"] == "Öztürk"
    assert not body["name"].get("givenName")
    assert body["userName"] == "upd" and body.get("active") is True
    [again] = conn.find("user", "userName", "upd")
    assert "name.givenName" not in again.attrs


def test_typed_email_change(scim_server: _Peer, conn: ScimConnector) -> None:
    user = conn.create(
        "user",
        {"userName": "mails", "emails.work": "a@example.com", "emails.home": "h@example.com"},
    )
    conn.update("user", user.external_id, {"emails.work": "b@example.com"})
    [found] = conn.find("user", "userName", "mails")
    assert found.attrs["emails.work"] == "b@example.com"
    if "emails.home" not in conn.capabilities.unsupported("user"):
        assert found.attrs["emails.home"] == "h@example.com"
        emails = raw_get(scim_server, f"Users/{user.external_id}").json()["emails"]
        assert sorted((e["type"], e.get("primary", False)) for e in emails) == [
            ("home", False),
            ("work", True),
        ]
    conn.update("user", user.external_id, {"emails.work": None})
    [found] = conn.find("user", "userName", "mails")
    assert "emails.work" not in found.attrs


def test_update_falls_back_to_put_without_patch(conn: ScimConnector) -> None:
    user = conn.create(
        "user", {"userName": "putme", "name.givenName": "A", "emails.work": "a@example.com"}
    )
    conn._caps = type(conn._caps)(**{**conn._caps.__dict__, "patch": False})
    conn.update("user", user.external_id, {"name.givenName": "B", "emails.work": "b@example.com"})
    [found] = conn.find("user", "userName", "putme")
    assert found.attrs["name.givenName"] == "B" and found.attrs["emails.work"] == "b@example.com"


def test_update_of_missing_user_is_rejected_gone(conn: ScimConnector, scim_server: _Peer) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    with pytest.raises(Rejected, match="gone"):
        conn.update("user", missing, {"name.givenName": "x"})


def test_deactivate(scim_server: _Peer, conn: ScimConnector) -> None:
    user = conn.create("user", {"userName": "leaver", "active": True})
    conn.deactivate("user", user.external_id)
    assert raw_get(scim_server, f"Users/{user.external_id}").json()["active"] is False
    group = conn.create("group", {"displayName": "g"})
    with pytest.raises(Rejected):
        conn.deactivate("group", group.external_id)


def test_delete_twice(scim_server: _Peer, conn: ScimConnector) -> None:
    user = conn.create("user", {"userName": "gone"})
    conn.delete("user", user.external_id)
    conn.delete("user", user.external_id)  # 404 (or soft delete again) is fine
    after = raw_get(scim_server, f"Users/{user.external_id}")
    if isinstance(scim_server, DjangoScimServer):
        assert conn.capabilities.delete_is_soft
        assert after.status_code == 200 and after.json()["active"] is False
    else:
        assert not conn.capabilities.delete_is_soft
        assert after.status_code == 404
    group = conn.create("group", {"displayName": "temp"})
    conn.delete("group", group.external_id)
    conn.delete("group", group.external_id)
    assert raw_get(scim_server, f"Groups/{group.external_id}").status_code == 404


def test_duplicate_create_raises_conflict(conn: ScimConnector) -> None:
    conn.create("user", {"userName": "twin"})
    with pytest.raises(Conflict, match="twin"):
        conn.create("user", {"userName": "twin"})


def test_unsupported_enterprise_dropped_on_django(
    django_scim_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    rec = Recording()
    conn = connect(django_scim_server, transport=rec)
    user = conn.create("user", {"userName": "ent", "enterprise.department": "R&D", "title": "x"})
    assert dict(user.attrs) == {"userName": "ent", "active": True}
    [post] = rec.sent("POST")
    assert b"enterprise" not in post.content and b"title" not in post.content
    conn.update("user", user.external_id, {"enterprise.department": "Sales"})
    assert rec.sent("PATCH") == []


# --- groups ------------------------------------------------------------------------------


def patch_values(request: httpx.Request) -> int:
    """Member values a member PATCH carries (added or removed)."""
    ops = json.loads(request.content)["Operations"]
    return sum(len(op["value"]) if op["op"] == "add" else 1 for op in ops)


def test_group_members_in_chunks(scim_server: _Peer, connect: Callable[..., ScimConnector]) -> None:
    rec = Recording()
    conn = connect(scim_server, transport=rec, members_per_patch=2)
    users = [conn.create("user", {"userName": f"member{i}"}).external_id for i in range(5)]
    group = conn.create("group", {"displayName": "Ünits", "externalId": "g-1"})
    assert group.members == frozenset() and dict(group.attrs) == {
        "displayName": "Ünits",
        "externalId": "g-1",
    }
    conn.set_members(group.external_id, users, [])
    # members_per_patch is the first chunk's size; a fast, accepted chunk doubles it
    assert [patch_values(r) for r in rec.sent("PATCH")] == [2, 3]
    conn.set_members(group.external_id, [], users[:3])
    assert [patch_values(r) for r in rec.sent("PATCH")][2:] == [1, 2]  # removals start at 1
    [listed] = [e for b in conn.read("group") for e in b.entries]
    assert listed.members == frozenset(users[3:])
    assert listed.name == "Ünits"
    [found] = conn.find("group", "displayName", "Ünits")
    assert found.members == frozenset(users[3:])


# --- listing -----------------------------------------------------------------------------


def test_paged_read_returns_everything(
    scim_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    conn = connect(scim_server, page_size=3)
    ids = {conn.create("user", {"userName": f"p{i:02d}"}).external_id for i in range(8)}
    batches = list(conn.read("user"))
    assert [len(b.entries) for b in batches] == [3, 3, 2]
    assert all(b.kind == "user" and b.full and b.complete for b in batches)
    assert {e.external_id for b in batches for e in b.entries} == ids


def test_concurrent_use_from_a_thread_pool(conn: ScimConnector) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        created = list(pool.map(lambda i: conn.create("user", {"userName": f"c{i}"}), range(40)))
        list(
            pool.map(lambda e: conn.update("user", e.external_id, {"name.givenName": "T"}), created)
        )
    assert len({e.external_id for e in created}) == 40
    listed = [e for b in conn.read("user") for e in b.entries]
    assert len(listed) == 40 and all(e.attrs.get("name.givenName") == "T" for e in listed)


# --- errors ------------------------------------------------------------------------------


def busy(status: int, retry_after: str) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(status, headers={"Retry-After": retry_after})


def test_429_retry_after_is_honoured(
    scim_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    rec = Recording()
    conn = connect(scim_server, transport=rec)
    waits = fake_time(conn)
    rec.faults += [once("POST", "/Users", busy(429, "2")), once("POST", "/Users", busy(429, "3"))]
    user = conn.create("user", {"userName": "patient"})
    assert waits == [2.0, 3.0]
    assert conn.stats["http_429"] == 2 and conn.stats["retries"] == 2
    assert len(rec.sent("POST")) == 3
    assert conn.find("user", "userName", "patient")[0].external_id == user.external_id


def test_retries_exhausted_raise_retriable(
    scim_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    rec = Recording()
    conn = connect(scim_server, transport=rec, max_retries=2)
    waits = fake_time(conn)
    rec.faults += [once("GET", "/Users", busy(503, "7")) for _ in range(3)]
    with pytest.raises(Retriable) as info:
        conn.find("user", "userName", "x")
    assert info.value.retry_after == 7.0
    assert waits == [7.0, 7.0]


def test_retry_after_http_date_and_cap() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    date = format_datetime(now + timedelta(seconds=12), usegmt=True)
    assert parse_retry_after(date, now=now.timestamp()) == pytest.approx(12.0)
    assert parse_retry_after("3600") == 60.0
    assert parse_retry_after("soon") is None


def test_connection_reset_on_get_is_retried(
    scim_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    rec = Recording()
    conn = connect(scim_server, transport=rec)
    waits = fake_time(conn)
    conn.create("user", {"userName": "r"})
    rec.faults.append(
        once("GET", "/Users", lambda r: httpx.ReadError("connection reset", request=r))
    )
    assert len(conn.find("user", "userName", "r")) == 1
    assert len(waits) == 1


def test_wrong_token_is_fatal_without_leaking_it(scim_server: _Peer) -> None:
    secret = "wrong-but-secret-token-123"
    conn = ScimConnector(
        "scim-test", ScimConfig.model_validate({"url": scim_server.url, "token": secret})
    )
    with pytest.raises(Fatal, match="authentication failed") as info:
        conn.open()
    assert secret not in str(info.value) and secret not in repr(info.value)
    assert secret not in repr(conn.config)


def test_opening_proves_the_token_without_listing_users(
    scim_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    """A listing (even ?count=1) makes some servers scan every user on each cycle's open."""
    rec = Recording()
    connect(scim_server, transport=rec)
    paths = [r.url.path for r in rec.sent("GET")]
    assert not any(p.rstrip("/").endswith("/Users") for p in paths), paths
    assert any("/Users/" in p for p in paths), paths


def test_unreachable_is_fatal() -> None:
    from tests.peers.scim_servers import free_port

    conn = ScimConnector("scim-test", ScimConfig(url=f"http://127.0.0.1:{free_port()}/v2"))
    with pytest.raises(Fatal, match="unreachable"):
        conn.open()


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        ScimConfig(url="ftp://x/scim")
    with pytest.raises(ValueError):
        ScimConfig(url="http://x/scim", colour="red")  # type: ignore[call-arg]
    cfg = ScimConfig.model_validate({"url": "https://idp.example.com/scim/v2/", "token": "literal"})
    assert cfg.url == "https://idp.example.com/scim/v2" and "literal" not in repr(cfg)


def test_retry_after_holds_back_every_thread(
    scim2_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    """The server's Retry-After is about the client, not one request: the next request,
    whoever sends it, waits for it too."""
    rec = Recording()
    conn = connect(scim2_server, transport=rec, max_retries=0)
    waits = fake_time(conn)
    rec.faults.append(once("GET", "/Users", busy(429, "5")))
    with pytest.raises(Retriable) as info:
        conn.find("user", "userName", "x")
    assert info.value.retry_after == 5.0 and waits == []
    conn.create("user", {"userName": "later"})
    assert waits == [5.0]


def test_post_timeout_is_not_resent(
    scim2_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    """A POST that timed out may have been applied: resending it could duplicate."""
    rec = Recording()
    conn = connect(scim2_server, transport=rec)
    fake_time(conn)
    rec.faults.append(once("POST", "/Users", lambda r: httpx.ReadTimeout("slow", request=r)))
    with pytest.raises(Retriable, match="not resent"):
        conn.create("user", {"userName": "slow"})
    assert len(rec.sent("POST")) == 1
    assert conn.stats["timeouts"] == 1 and conn.stats["retries"] == 0
