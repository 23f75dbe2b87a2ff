"""The Entra ID / Okta provisioning replay (tests/peers/entra_replay.py) against a real SCIM
service provider, scim2-server, and the runner's own checks.

Where scim2-server does not do what Entra or Okta need, the failing steps are listed in
`SCIM2_SERVER_DEVIATIONS` with the reason: the test asserts that exactly those steps fail, so
a new failure, or a deviation scim2-server stops having, shows up here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any

import httpx
import pytest

from tests.peers.entra_replay import (
    ENTRA_FLAVOURS,
    FLAVOURS,
    MISSING,
    OKTA_FLAVOURS,
    PHASES,
    StepResult,
    _check,
    failures,
    load,
    replay,
    report,
    resolve,
    same,
    steps_for,
)
from tests.peers.run_scim2_server import build_app
from tests.peers.scim_servers import Scim2Server

#: flavour -> {step id: why scim2-server 0.8.3 fails it}. Deviations of that peer, not of
#: the sequence: each is what the client really sends (see the step's source).
SCIM2_SERVER_DEVIATIONS: dict[str, dict[str, str]] = {
    "aadOptscim062020": {},
    "AzureAdScimPatch2017": {
        # Entra without the flag removes a member with path "members" and a value list
        # [{"value": id}] (Microsoft's own 'not SCIM compliant' example); scim2-server
        # answers 400 invalidValue "a remove operation carries no value".
        "group-remove-member": "400 on op Remove with a value list",
        # ... so the member is still there afterwards.
        "group-verify-removed": "the member the PATCH should have removed remains",
    },
    "oin": {},
    "aiw": {},
}


def _failed(results: Iterable[StepResult]) -> set[str]:
    return {r.id for r in failures(results)}


# -- against scim2-server ------------------------------------------------------------------

peers = pytest.mark.peers  # the tests below that start a server


@peers
@pytest.mark.parametrize("flavour", list(FLAVOURS))
def test_replay_twice_then_deprovision(scim2_server: Scim2Server, flavour: str) -> None:
    """Fresh server: the documented sequence; then the same sequence again, as the client
    sends it when the objects exist (the existence checks find them, no POST); then
    deprovisioning. Every step passes except the peer's known deviations."""
    known = set(SCIM2_SERVER_DEVIATIONS[flavour])
    ids: dict[str, str] = {}
    first = replay(scim2_server.url, scim2_server.token, flavour, phases=("provision",), ids=ids)
    assert _failed(first) == known, report(first)
    assert {"user1_id", "user2_id", "group_id"} <= ids.keys()
    assert not any(r.skipped for r in first)

    found: dict[str, str] = {}
    second = replay(scim2_server.url, scim2_server.token, flavour, phases=("provision",),
                    existing=True, ids=found)
    assert _failed(second) == known, report(second)
    assert found == ids, "the second replay found other objects than the first created"
    assert {r.id for r in second if r.skipped} == {
        s["id"] for s in steps_for(flavour, ("provision",)) if s.get("skip_when_existing")}
    assert all(r.method != "POST" for r in second if not r.skipped)

    last = replay(scim2_server.url, scim2_server.token, flavour, phases=("deprovision",), ids=ids)
    assert not failures(last), report(last)
    assert [r.status for r in last if r.id == "group-verify-gone"] == [404]


@peers
@pytest.mark.parametrize("flavour", ["aadOptscim062020", "oin"])
def test_one_call_both_phases_and_no_leftovers(scim2_server: Scim2Server, flavour: str) -> None:
    results = replay(scim2_server.url, scim2_server.token, flavour)
    assert not failures(results), report(results)
    assert {r.phase for r in results} == set(PHASES)
    users = httpx.get(scim2_server.url + "/Users", headers={
        "Authorization": f"Bearer {scim2_server.token}"}).json()
    # Entra deletes its users; Okta only deactivates them.
    left = users.get("totalResults")
    assert left == (0 if flavour in ENTRA_FLAVOURS else 2)


@peers
def test_two_runs_do_not_collide(scim2_server: Scim2Server) -> None:
    a = replay(scim2_server.url, scim2_server.token, "aadOptscim062020",
               phases=("provision",), run="0000000a")
    b = replay(scim2_server.url, scim2_server.token, "aadOptscim062020",
               phases=("provision",), run="0000000b")
    assert not failures(a) and not failures(b), report(a) + "\n" + report(b)


@peers
def test_wrong_token_fails_every_step(scim2_server: Scim2Server) -> None:
    results = replay(scim2_server.url, "not-the-token", "aadOptscim062020",
                     phases=("provision",))
    assert results[0].status == 401 and not results[0].ok
    sent = [r for r in results if r.status is not None]
    assert sent and all(r.status == 401 for r in sent)
    # steps that need an id the server never gave are reported, not sent
    assert any("never learned" in p for r in results for p in r.problems)


# -- the runner catches what a lenient server gets wrong (in-process scim2-server) --------


def _rewriting_app(rewrite: Callable[[Any], Any]) -> Any:
    """scim2-server's WSGI app, every JSON response body passed through `rewrite`."""
    app = build_app(["tok"])

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        seen: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            seen["status"], seen["headers"] = status, headers
            return lambda data: None

        body = b"".join(app(environ, capture))
        if body:
            body = json.dumps(rewrite(json.loads(body))).encode()
        headers = [(k, v) for k, v in seen["headers"] if k.lower() != "content-length"]
        start_response(seen["status"], [*headers, ("Content-Length", str(len(body)))])
        return [body]

    return wrapped


def _active_as_string(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: (str(v) if k == "active" and isinstance(v, bool) else _active_as_string(v))
                for k, v in doc.items()}
    if isinstance(doc, list):
        return [_active_as_string(v) for v in doc]
    return doc


def test_active_must_come_back_as_a_boolean() -> None:
    """A server that stores what Entra's old flavour sends ("False") and returns it as a
    string fails the check: Entra and the directory behind it need the boolean."""
    transport = httpx.WSGITransport(app=_rewriting_app(_active_as_string))
    results = replay("http://sp.invalid/v2", "tok", "AzureAdScimPatch2017",
                     phases=("provision",), transport=transport)
    bad = {r.id: r for r in failures(results)}
    assert "user1-verify-disabled" in bad
    disabled = bad["user1-verify-disabled"].problems
    assert any('active = "False", expected false' in p for p in disabled)
    assert any('active = "True", expected true' in p for p in bad["user1-create"].problems)


def test_duplicated_member_is_caught() -> None:
    def duplicate_members(doc: Any) -> Any:
        if isinstance(doc, dict) and isinstance(doc.get("members"), list) and doc["members"]:
            doc["members"] = doc["members"] + doc["members"][:1]
        return doc

    transport = httpx.WSGITransport(app=_rewriting_app(duplicate_members))
    results = replay("http://sp.invalid/v2", "tok", "aadOptscim062020",
                     phases=("provision",), transport=transport)
    assert {"group-verify-added", "group-verify-removed"} <= _failed(results)


# -- the sequences and the runner's pieces (no server) ------------------------------------


@pytest.mark.parametrize("flavour", list(FLAVOURS))
def test_every_step_is_sourced_and_fillable(flavour: str) -> None:
    doc = load(flavour)
    steps = steps_for(flavour)
    ids = [s["id"] for s in steps]
    assert len(ids) == len(set(ids))
    known = {"run", "probe", *doc["vars"]}
    for step in steps:
        assert step["kind"] in ("request", "verify") and step["phase"] in PHASES
        assert step.get("source"), step["id"]
        assert step["method"] in ("GET", "POST", "PUT", "PATCH", "DELETE")
        if step["method"] in ("POST", "PUT", "PATCH"):
            assert "body" in step, step["id"]
        if step["kind"] == "verify":
            assert step["method"] == "GET"
        text = json.dumps({k: step.get(k) for k in ("path", "query", "body", "expect")})


        for name in re.findall(r"\{([A-Za-z_]\w*)\}", text):
            assert name in known, f"{step['id']} uses {{{name}}} before it is known"
        known |= set(step.get("save", {})) | set(step.get("save_existing", {}))


def _ops(flavour: str, step_id: str) -> list[dict[str, Any]]:
    [step] = [s for s in steps_for(flavour) if s["id"] == step_id]
    ops: list[dict[str, Any]] = step["body"]["Operations"]
    return ops


def test_entra_flavours_differ_as_microsoft_documents() -> None:
    new, old = ENTRA_FLAVOURS
    assert _ops(new, "user1-disable") == [{"op": "replace", "path": "active", "value": False}]
    assert _ops(old, "user1-disable") == [{"op": "Replace", "path": "active", "value": "False"}]
    assert [o["op"] for o in _ops(old, "user1-update")] == ["Replace"] * 5
    value_object = [o for o in _ops(new, "user1-update") if "path" not in o]
    assert len(value_object) == 1 and "name.givenName" in value_object[0]["value"]
    assert _ops(new, "group-remove-member") == [
        {"op": "remove", "path": 'members[value eq "{user2_id}"]'}]
    assert _ops(old, "group-remove-member")[0]["value"] == [{"value": "{user2_id}"}]


def test_okta_flavours_differ_as_okta_documents() -> None:
    oin = {s["id"]: s for s in steps_for("oin")}
    aiw = {s["id"]: s for s in steps_for("aiw")}
    assert oin["user1-update"]["method"] == aiw["user1-update"]["method"] == "PUT"
    assert oin["user1-deactivate"]["method"] == "PATCH"
    assert oin["user1-deactivate"]["body"]["Operations"] == [
        {"op": "replace", "value": {"active": False}}]
    assert aiw["user1-deactivate"]["method"] == "PUT"
    assert aiw["user1-deactivate"]["body"]["active"] is False
    assert {aiw[i]["method"] for i in aiw if i.startswith("group-") and aiw[i]["kind"] == "request"
            and i not in ("group-find", "group-create", "group-get", "group-delete")} == {"PUT"}
    assert all(s["method"] != "DELETE" or s["path"].startswith("/Groups") for s in oin.values())
    assert set(OKTA_FLAVOURS) == {"oin", "aiw"}


def test_resolve() -> None:
    doc = {"Resources": [{"id": "1", "emails": [{"type": "home", "value": "h"},
                                                {"type": "work", "value": "w"}]}],
           "urn:x:2.0:User": {"employeeNumber": "7"}}
    assert resolve(doc, ["resources", 0, "id"]) == "1"  # keys case-insensitive
    assert resolve(doc, ["Resources", 0, "emails", {"type": "work"}, "value"]) == "w"
    assert resolve(doc, ["urn:x:2.0:User", "employeeNumber"]) == "7"
    assert resolve(doc, ["Resources", 1]) is MISSING
    assert resolve(doc, ["Resources", 0, "emails", {"type": "other"}]) is MISSING


def test_same_keeps_booleans_apart() -> None:
    assert same(False, False) and not same("False", False) and not same(0, False)
    assert not same(1, True) and same({"a": [True]}, {"a": [True]})


@pytest.mark.parametrize(("data", "check", "ok"), [
    ({"totalResults": 0}, {"path": ["Resources"], "absent_or_empty": True}, True),
    ({"Resources": []}, {"path": ["Resources"], "absent_or_empty": True}, True),
    ({"Resources": [{}]}, {"path": ["Resources"], "absent_or_empty": True}, False),
    ({"members": None}, {"path": ["members"], "absent": True}, True),
    ({"members": []}, {"path": ["members"], "absent": True}, False),
    ({"members": [{"value": "a"}, {"value": "b"}]}, {"path": ["members"], "values": ["b", "a"]},
     True),
    ({"members": [{"value": "a"}, {"value": "a"}]}, {"path": ["members"], "values": ["a"]},
     False),
    ({"totalResults": "1"}, {"path": ["totalResults"], "type": "integer"}, False),
    ({"totalResults": True}, {"path": ["totalResults"], "type": "integer"}, False),
    ({"emails": [1, 2]}, {"path": ["emails"], "len": 2}, True),
    ({"schemas": ["x"]}, {"path": ["schemas"], "contains": "x"}, True),
])
def test_checks(data: Any, check: dict[str, Any], ok: bool) -> None:
    assert (_check(data, check) is None) is ok
