"""The SCIM service provider in-process (httpx over WSGI): Entra ID's two PATCH flavours and
Okta's shapes normalised at the edge, bearer tokens, limits, error bodies."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from syncd.daemon.inbound import dialect
from syncd.daemon.inbound.app import InboundApp
from syncd.state.inbox import Inbox
from syncd.state.store import Store

TOKEN = "s3cret-token-value"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


@pytest.fixture
def inbox(tmp_path: Path) -> Iterator[Inbox]:
    store = Store(f"sqlite:///{tmp_path}/state.db")
    assert store.engine is not None
    yield Inbox(store.engine, "entra")
    store.close()


def client(inbox: Inbox, token: str | None = TOKEN, **kw: object) -> httpx.Client:
    app = InboundApp(inbox, [TOKEN, "other-token"], **kw)  # type: ignore[arg-type]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(transport=httpx.WSGITransport(app=app),
                        base_url="http://scim.test/v2", headers=headers)


@pytest.fixture
def http(inbox: Inbox) -> Iterator[httpx.Client]:
    with client(inbox) as c:
        yield c


def patch(http: httpx.Client, path: str, *ops: dict[str, object]) -> httpx.Response:
    return http.patch(path, json={"schemas": [PATCH], "Operations": list(ops)})


def new_user(http: httpx.Client, user_name: str, /, **more: object) -> str:
    r = http.post("/Users", json={"schemas": [USER], "userName": user_name, "active": True,
                                  "externalId": f"ext-{user_name}", **more})
    assert r.status_code == 201, r.text
    assert r.headers["Location"].endswith(f"/Users/{r.json()['id']}")
    return str(r.json()["id"])


def test_normalise_pure() -> None:
    ops = dialect.patch_body({"Operations": [
        {"op": "Replace", "path": "active", "value": "False"},
        {"op": "Remove", "path": "members", "value": [{"value": "a"}, {"value": "b"}]},
        {"op": "replace", "value": {"id": "x", "displayName": "D", "name.givenName": "G",
                                    "emails[type eq \"work\"].value": "w@example.com"}}]})
    assert ops["Operations"] == [
        {"op": "replace", "path": "active", "value": False},
        {"op": "remove", "path": 'members[value eq "a"]'},
        {"op": "remove", "path": 'members[value eq "b"]'},
        {"op": "replace", "value": {"displayName": "D"}},
        {"op": "replace", "path": "name.givenName", "value": "G"},
        {"op": "replace", "path": 'emails[type eq "work"].value', "value": "w@example.com"}]
    assert dialect.clean_query("aadOptscim062020&filter=x") == "filter=x"
    assert dialect.resource_body({"active": "False"}) == {"active": False}


def test_auth(inbox: Inbox) -> None:
    for token in (None, "wrong", TOKEN + "x"):
        with client(inbox, token) as c:
            r = c.get("/Users")
            assert r.status_code == 401 and r.json()["status"] == "401"
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
    with client(inbox, "other-token") as c:
        assert c.get("/Users").status_code == 200
    with client(inbox, None) as c:  # RFC 7643 §5: the config is open
        assert c.get("/ServiceProviderConfig").status_code == 200


def test_entra_user_lifecycle_both_flavours(http: httpx.Client, inbox: Inbox) -> None:
    # create, with the filter check first: zero results is a 200 with an empty list
    r = http.get("/Users", params={"filter": 'userName eq "alice@example.com"'})
    assert r.status_code == 200 and r.json()["totalResults"] == 0 and r.json()["Resources"] == []
    uid = new_user(http, "alice@example.com", password="never-stored-pw",
                   name={"givenName": "Alice", "familyName": "A"})
    assert "password" not in inbox.get("user", uid).body
    for flt in ('userName eq "ALICE@example.com"', 'externalId eq "ext-alice@example.com"'):
        r = http.get("/Users", params={"filter": flt})
        assert [x["id"] for x in r.json()["Resources"]] == [uid], flt
    # newer flavour: several attributes in one value object, path keys included
    r = patch(http, f"/Users/{uid}", {"op": "replace", "value": {
        "displayName": "Alice A", "name.familyName": "Anders", "title": "Eng",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "R&D"}})
    assert r.status_code in (200, 204), r.text
    body = inbox.get("user", uid).body
    assert body["name"]["familyName"] == "Anders" and body["title"] == "Eng"
    assert body["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"] == {
        "department": "R&D"}
    # disable: older flavour (string), newer flavour (boolean in a value object), Okta (id)
    assert patch(http, f"/Users/{uid}", {"op": "Replace", "path": "active",
                                         "value": "False"}).status_code in (200, 204)
    assert inbox.get("user", uid).body["active"] is False
    patch(http, f"/Users/{uid}", {"op": "replace", "value": {"active": True}})
    assert inbox.get("user", uid).body["active"] is True
    patch(http, f"/Users/{uid}", {"op": "replace", "value": {"id": uid, "active": False}})
    assert inbox.get("user", uid).body["active"] is False
    # duplicate userName: 409 uniqueness, RFC 7644 §3.12 body
    r = http.post("/Users", json={"schemas": [USER], "userName": "Alice@Example.com"})
    assert r.status_code == 409 and r.json()["scimType"] == "uniqueness"
    assert http.delete(f"/Users/{uid}").status_code == 204
    assert http.get(f"/Users/{uid}").status_code == 404


def test_entra_group_members_both_flavours(http: httpx.Client, inbox: Inbox) -> None:
    a, b, c = (new_user(http, n) for n in ("a", "b", "c"))
    r = http.post("/Groups", json={"schemas": [GROUP], "displayName": "Staff",
                                   "externalId": "g-ext"})
    gid = r.json()["id"]
    assert patch(http, f"/Groups/{gid}", {"op": "Add", "path": "members", "value": [
        {"value": a}, {"value": b}, {"value": c}]}).status_code in (200, 204)
    # older flavour removal, then the newer one
    patch(http, f"/Groups/{gid}", {"op": "Remove", "path": "members", "value": [{"value": a}]})
    patch(http, f"/Groups/{gid}", {"op": "remove", "path": f'members[value eq "{b}"]'})
    assert [m.value for m in inbox.get("group", gid).members or ()] == [c]
    r = http.get(f"/Groups/{gid}", params={"excludedAttributes": "members"})
    assert r.status_code == 200 and "members" not in r.json()
    r = http.get("/Groups", params={"filter": 'displayName eq "staff"',
                                    "excludedAttributes": "members"})
    assert [g["id"] for g in r.json()["Resources"]] == [gid]
    r = http.get("/Groups", params={"filter": 'externalId eq "g-ext" and displayName eq "Staff"'})
    assert r.json()["totalResults"] == 1


def test_pagination_and_filters(http: httpx.Client) -> None:
    for i in range(5):
        new_user(http, f"user{i}", title="Eng" if i % 2 else "Ops")
    r = http.get("/Users", params={"startIndex": 2, "count": 2})
    assert r.json()["totalResults"] == 5 and len(r.json()["Resources"]) == 2
    assert r.json()["startIndex"] == 2
    r = http.get("/Users", params={"filter": 'title eq "Eng" and userName sw "user"'})
    assert r.json()["totalResults"] == 2
    r = http.get("/Users", params={"filter": "userName eq"})
    assert r.status_code == 400 and r.json()["scimType"] == "invalidFilter"


def test_body_and_rate_limits(inbox: Inbox) -> None:
    with client(inbox, max_body=2048) as c:
        r = c.post("/Users", json={"schemas": [USER], "userName": "x", "title": "t" * 4096})
        assert r.status_code == 413
    with client(inbox, rate_limit=1.0) as c:
        codes = [c.get("/Users").status_code for _ in range(5)]
        assert codes[0] == 200 and 429 in codes
        r = c.get("/Users")
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1


def test_changes_notify(inbox: Inbox) -> None:
    seen: list[int] = []
    with client(inbox, on_change=lambda: seen.append(1)) as c:
        c.get("/Users")
        new_user(c, "z")
        c.post("/Users", json={"schemas": [USER], "userName": "z"})  # 409: no change
    assert seen == [1]


def test_tokens_never_logged(inbox: Inbox, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    with client(inbox) as c:
        new_user(c, "logged", password="pw-in-a-create")
        c.post("/Users", json={"schemas": [USER], "userName": "logged", "password": "pw2"})
    with client(inbox, "bad-token-shown?") as c:
        c.get("/Users")
    text = caplog.text
    assert TOKEN not in text and "bad-token-shown" not in text and "pw-in-a-create" not in text


def test_patch_redone_when_a_delete_changed_the_group(inbox: Inbox) -> None:
    """A group PATCH read before a member's delete (which changes the group) is redone on the
    new version, not answered 412 (Entra sends no If-Match) and not writing the member back;
    a client that sent If-Match gets its 412. PATCHes of one group never lose each other."""
    app = InboundApp(inbox, [TOKEN])
    storage = app.handler.storage
    read = storage.get
    pending: list[str] = []

    def get_then_delete(*args: object, **kw: object) -> object:
        got = read(*args, **kw)  # type: ignore[arg-type]
        while pending:  # the member is deleted between the PATCH's read and its write
            inbox.delete("user", pending.pop())
        return got

    storage.get = get_then_delete  # type: ignore[method-assign]
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://scim.test/v2",
                      headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        alice, bob = new_user(http, "alice@example.com"), new_user(http, "bob@example.com")
        gid = http.post("/Groups", json={"schemas": [GROUP], "displayName": "Staff",
                                         "members": [{"value": alice}]}).json()["id"]
        pending.append(alice)
        r = patch(http, f"/Groups/{gid}", {"op": "add", "path": "members",
                                           "value": [{"value": bob}]})
        assert r.status_code == 204, r.text
        assert [m.value for m in inbox.get("group", gid).members or ()] == [bob]
        version = http.get(f"/Groups/{gid}").headers["ETag"]
        pending.append(bob)
        r = http.patch(f"/Groups/{gid}", headers={"If-Match": version}, json={
            "schemas": [PATCH], "Operations": [{"op": "replace", "value": {"displayName": "X"}}]})
        assert r.status_code == 412
        assert inbox.get("group", gid).body["displayName"] == "Staff"

        storage.get = read  # type: ignore[method-assign]
        users = [new_user(http, f"u{i}@example.com") for i in range(12)]

        def add(uid: str) -> int:
            return patch(http, f"/Groups/{gid}", {"op": "add", "path": "members",
                                                  "value": [{"value": uid}]}).status_code

        with ThreadPoolExecutor(6) as pool:
            assert set(pool.map(add, users)) == {204}
    assert sorted(m.value for m in inbox.get("group", gid).members or ()) == sorted(users)


def test_patch_answers_204_with_the_new_etag(http: httpx.Client) -> None:
    uid = new_user(http, "carol@example.com")
    r = patch(http, f"/Users/{uid}", {"op": "replace", "path": "title", "value": "Eng"})
    assert r.status_code == 204 and not r.content
    assert r.headers["ETag"] == http.get(f"/Users/{uid}").headers["ETag"] == 'W/"2"'
    r = http.patch(f"/Users/{uid}", params={"attributes": "title"}, json={
        "schemas": [PATCH], "Operations": [{"op": "replace", "path": "title", "value": "Ops"}]})
    assert r.status_code == 200 and r.json()["title"] == "Ops"
