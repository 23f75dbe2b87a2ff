"""Large groups converge in one call: adaptive member PATCHes, no blind resend, If-Match replace.

The rules are in `syncd_connectors.scim.members`. Pure rules (the chunk sizer, what a call sends
against a scripted target) are Hypothesis properties; the rest runs against both real servers
(scim2-server and django-scim2-server), with the fault proxy delaying a member PATCH beyond the
client's timeout while forwarding it, so the server applies it late.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from syncd.errors import Rejected, Retriable
from syncd_connectors.scim.connector import ScimConnector
from syncd_connectors.scim.discovery import PatchLimits, patch_limits
from syncd_connectors.scim.http import _mark
from syncd_connectors.scim.members import MAX_UNANSWERED, MemberChange, Sizer, says_too_large
from tests.connectors.test_scim import Recording, connect, fake_time
from tests.peers.fault_proxy import Fault, FaultProxy
from tests.peers.scim_servers import _Peer

pytestmark = pytest.mark.peers
__all__ = ["connect"]
PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def sent_values(content: bytes) -> tuple[list[str], list[str]]:
    """(added, removed) member values of one member PATCH body."""
    adds: list[str] = []
    removes: list[str] = []
    for op in json.loads(content)["Operations"]:
        if op["op"] == "add":
            adds += [m["value"] for m in op["value"]]
        elif op["op"] == "remove" and op["path"].startswith("members["):
            removes.append(json.loads(op["path"][len("members[value eq "):-1]))
    return adds, removes


# --- the sizer: a rule, so a property -----------------------------------------------------

events = st.lists(st.tuples(st.sampled_from(["fast", "slow", "mid", "too_large", "timeout"]),
                            st.integers(1, 5000)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(initial=st.integers(1, 5000), ceiling=st.integers(1, 20000), seq=events)
def test_chunk_size_grows_only_when_fast_and_accepted_and_shrinks_on_trouble(
    initial: int, ceiling: int, seq: list[tuple[str, int]]
) -> None:
    s = Sizer(initial, ceiling, fast=3.0, slow=10.0)
    for what, sent in seq:
        sent = min(sent, s.size)  # a chunk never carries more than the size
        before = s.size
        if what == "too_large":
            s.too_large(sent)
        elif what == "timeout":
            s.timed_out(sent)
        else:
            s.answered(sent, {"fast": 0.1, "mid": 5.0, "slow": 20.0}[what])
        assert 1 <= s.size <= max(1, ceiling)
        if what in ("too_large", "timeout", "slow") and sent > 1:
            assert s.size < sent  # the next chunk is strictly smaller than the troubled one
        if s.size > before:
            assert what == "fast" and sent == before  # grew: a full chunk, accepted fast
    # fast full chunks reach the ceiling by doubling
    for _ in range(20):
        s.answered(s.size, 0.1)
    assert s.size == max(1, ceiling)


def test_too_large_is_read_from_the_answer() -> None:
    assert says_too_large(413, "")
    assert says_too_large(400, "tooMany: too many operations")
    assert says_too_large(400, "Request payload exceeds the limit")
    assert not says_too_large(400, "invalidValue: no such user")
    assert not says_too_large(500, "too large")


def test_limits_come_from_the_service_provider_config() -> None:
    assert patch_limits({"bulk": {"supported": True, "maxPayloadSize": 1048576},
                         "etag": {"supported": True}}) == PatchLimits(1048576, None, True)
    assert patch_limits({"patch": {"supported": True, "maxOperations": 100,
                                   "maxPayloadSize": 65536},
                         "bulk": {"maxPayloadSize": 1048576}}) == PatchLimits(65536, 100, False)
    assert patch_limits({"patch": {"maxOperations": "many"}, "bulk": None}) == PatchLimits()


# --- what one call sends, against a scripted target: a property ---------------------------


class ScriptedGroup:
    """A group on a target that answers member PATCHes from a script: ``ok`` (applied),
    ``late`` (applied, but the answer never came: a timeout), ``lost`` (not applied, no
    answer), ``413`` (not applied; only for more than one value), ``foreign`` (someone else
    adds a member just before this PATCH arrives; then applied). Bodies over `limit` bytes
    always get 413; values in `bad` make a PATCH 400. GETs answer the members with an ETag;
    a PATCH with a stale If-Match gets 412. Every request takes `step` seconds. Records the
    values a PATCH sent that were already in effect when it arrived."""

    FOREIGN = "zz-foreign"

    def __init__(self, members: set[str], script: list[str], limit: int, bad: set[str],
                 step: float = 0.01) -> None:
        self.members = set(members)
        self.script = list(script)
        self.limit, self.bad, self.step = limit, bad, step
        self.ineffective: list[str] = []  # values a PATCH sent that were already in effect
        self.patches = self.version = 0
        self.now = 0.0

    def request(self, method: str, url: str, *, resend: bool = True, **kw: Any
                ) -> httpx.Response:
        self.now += self.step
        if method == "GET":
            doc = {"id": "g", "members": [{"value": v} for v in sorted(self.members)]}
            return httpx.Response(200, json=doc, headers={"ETag": f'W/"{self.version}"'})
        assert method == "PATCH" and resend is False  # a member PATCH is never resent
        self.patches += 1
        content: bytes = kw["content"]
        if len(content) > self.limit:
            return httpx.Response(413)
        adds, removes = sent_values(content)
        if self.bad & {*adds, *removes}:
            return httpx.Response(400, json={"detail": "invalidValue: no such member"})
        outcome = self.script.pop(0) if self.script else "ok"
        if outcome == "foreign":
            self.members.add(self.FOREIGN)
            self.version += 1
            outcome = "ok"
        if outcome == "413":  # for one value it would be final: then it is an "ok"
            if len(adds) + len(removes) > 1:
                return httpx.Response(413)
            outcome = "ok"
        match = kw.get("headers", {}).get("If-Match")
        if match is not None and match != f'W/"{self.version}"':
            return httpx.Response(412)
        if outcome in ("ok", "late"):
            self.ineffective += [v for v in adds if v in self.members]
            self.ineffective += [v for v in removes if v not in self.members]
            for op in json.loads(content)["Operations"]:
                if op["op"] == "replace":  # the members replace (sent with If-Match only)
                    assert match is not None
                    self.members = {m["value"] for m in op["value"]}
                elif op == {"op": "remove", "path": "members"}:
                    assert match is not None
                    self.members = set()
            self.members |= set(adds)
            self.members -= set(removes)
            self.version += 1
        if outcome in ("late", "lost"):
            raise _mark(Retriable("PATCH: ReadTimeout (not resent)"))
        return httpx.Response(204)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(0, 300),
    data=st.data(),
    script=st.lists(st.sampled_from(["ok", "ok", "late", "lost", "413", "foreign"]),
                    max_size=12).filter(
        lambda s: "lost," * MAX_UNANSWERED not in ",".join(s) + ","),
    limit=st.integers(600, 20000),
    initial=st.integers(1, 64),
    max_ops=st.none() | st.integers(1, 50),
    etag=st.booleans(),
    slow=st.booleans(),
)
def test_one_call_applies_everything_and_never_resends_what_is_in_effect(
    n: int, data: st.DataObject, script: list[str], limit: int, initial: int,
    max_ops: int | None, etag: bool, slow: bool,
) -> None:
    """Whatever the target answers — timeouts after applying or not, 413, someone else
    adding a member meanwhile — one call ends with exactly the wanted members (and the other
    writer's); no PATCH carries a value already in effect when it was sent (no blind resend);
    bodies stay under the declared byte limit and operations under `patch.maxOperations`;
    values the server refuses (400) fail alone, the rest lands. On a slow target with ETags
    many removals may go as a members replace, only ever under If-Match."""
    ids = [f"u{i:04d}" for i in range(n)]

    def some(of: list[str]) -> set[str]:  # small sets, or most of them (large changes)
        if not of:
            return set()
        return set(data.draw(st.sets(st.sampled_from(of))
                             | st.builds(lambda k: set(of[k:]), st.integers(0, len(of)))))

    have = some(ids)
    add = sorted(some(ids) - have)
    remove = sorted(some(sorted(have)))
    bad = set(data.draw(st.sets(st.sampled_from(add)), label="bad") if add else set())
    target = ScriptedGroup(have, script, limit, bad, step=5.0 if slow else 0.01)
    bodies: list[bytes] = []

    class Http:
        def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
            if method == "PATCH":
                bodies.append(kw["content"])
            return target.request(method, url, **kw)

    change = MemberChange(
        http=Http(), endpoint="/Groups", group="g", add=add, remove=remove,  # type: ignore[arg-type]
        initial=initial, timeout=30.0, limits=PatchLimits(limit, max_ops, etag=etag),
        connector="t", sleep=lambda s: None, clock=lambda: target.now)
    if bad:
        with pytest.raises(Rejected, match="refused") as info:
            change.run()
        done_add, done_remove = info.value.members_done  # type: ignore[attr-defined]
        assert done_add == set(add) - bad and done_remove == set(remove)
    else:
        change.run()
    event(f"members replace: {change.replaced}")
    foreign = {ScriptedGroup.FOREIGN} & target.members
    assert target.members == ((have | set(add)) - set(remove) - bad) | foreign
    assert target.ineffective == []
    for b in bodies:
        adds, removes = sent_values(b)
        assert len(b) <= limit or len(adds) + len(removes) == 1
        if max_ops is not None:
            assert len(removes) <= max_ops


def test_a_target_that_never_answers_a_patch_ends_the_call() -> None:
    """PATCHes whose answers are lost and that change nothing: the call gives up after
    `MAX_UNANSWERED` of them in a row (each followed by a read), instead of running forever."""
    target = ScriptedGroup(set(), ["lost"] * 50, 10**6, set())
    change = MemberChange(
        http=target, endpoint="/Groups", group="g", add=["a", "b"], remove=[],  # type: ignore[arg-type]
        initial=2, timeout=30.0, limits=PatchLimits(), connector="t", sleep=lambda s: None,
        clock=lambda: target.now)
    with pytest.raises(Retriable, match="got no answer") as info:
        change.run()
    assert target.patches == MAX_UNANSWERED and target.members == set()
    assert info.value.members_done == (frozenset(), frozenset())  # type: ignore[attr-defined]


# --- real servers ------------------------------------------------------------------------


@pytest.fixture
def proxied(scim_server: _Peer) -> Iterator[FaultProxy]:
    with FaultProxy(scim_server.url) as proxy:
        yield proxy


def make_users(conn: ScimConnector, n: int, prefix: str = "m") -> list[str]:
    return [conn.create("user", {"userName": f"{prefix}{i:04d}"}).external_id for i in range(n)]


def raw_members(server: _Peer, group: str) -> list[str]:
    """The group's member values as the server lists them (duplicates kept)."""
    r = httpx.get(f"{server.url}/Groups/{group}", params={"attributes": "members"},
                  headers={"Authorization": f"Bearer {server.token}"}, timeout=30)
    r.raise_for_status()
    return [m["value"] for m in r.json().get("members", [])]


@pytest.mark.parametrize("read_after_late", [True, False], ids=["applied-before-read",
                                                                "applied-after-read"])
def test_a_member_patch_applied_late_is_not_resent_blind(
    scim_server: _Peer, proxied: FaultProxy, connect: Callable[..., ScimConnector],
    read_after_late: bool,
) -> None:
    """The first member PATCH is held by the proxy past the client's timeout, then forwarded:
    the server applies it late. The connector never sends that PATCH again: it reads the
    group's members and sends only what is still missing or present. When the late PATCH
    landed before the read, none of its values is sent again; either way one call ends with
    exactly the wanted members, none duplicated."""
    setup = connect(scim_server)
    users = make_users(setup, 14)
    group = setup.create("group", {"displayName": "late"}).external_id
    setup.set_members(group, users[:6], [])
    rec = Recording()  # sees the bodies; the proxy sees what reached the server and when
    conn = connect(scim_server, transport=rec, url=proxied.url, timeout=2.0,
                   members_per_patch=4)
    fake_time(conn)  # the connector's own waits are instant; the proxy's are real
    add, remove = users[6:], users[:4]
    # held 2.6 s > the 2 s timeout, then forwarded; a held read waits ~0.6 s of its 2 s
    proxied.add(Fault("delay", method="PATCH", path="/Groups/", delay=2.6, forward=True))
    if read_after_late:  # the server is done with it by the time we look
        proxied.add(Fault("hold", method="GET", path="/Groups/", until="late"))
    conn.set_members(group, add, remove)
    proxied.wait_for("late", 1, timeout=30)
    patches = [e for e in proxied.events("PATCH", "/Groups/") if e.action != "late"]
    delayed, later = patches[0], patches[1:]
    assert delayed.action == "delay"
    reads = proxied.events("GET", "/Groups/")
    assert reads and reads[0].at > delayed.at, "it must look before sending more"
    assert all(e.at > reads[0].at for e in later)
    bodies = [r.content for r in rec.sent("PATCH")]
    assert sent_values(bodies[0]) == (add[:4], [])  # the delayed chunk
    if read_after_late:
        assert all(e.key != delayed.key for e in later), "the timed-out PATCH was resent"
        again = {v for b in bodies[1:] for v in sent_values(b)[0]}
        assert not again & set(add[:4]), "values the late PATCH applied were sent again"
    members = raw_members(scim_server, group)
    assert sorted(members) == sorted(users[4:]), "the group must end exactly right"


def test_large_membership_change_in_one_call_with_growing_chunks(
    scim_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    """150 members added, then 120 removed, each in one call starting from chunks of 4:
    chunks grow while the server answers fast, so the requests are few (fixed chunks of 4
    would take 38 and 30), and the group ends exactly right on both servers."""
    rec = Recording()
    conn = connect(scim_server, transport=rec, members_per_patch=4)
    users = make_users(conn, 150)
    group = conn.create("group", {"displayName": "all staff"}).external_id
    conn.set_members(group, users, [])
    adds = [len(sent_values(r.content)[0]) for r in rec.sent("PATCH")]
    assert sum(adds) == 150 and adds[0] == 4 and len(adds) <= 7
    assert sorted(raw_members(scim_server, group)) == sorted(users)
    conn.set_members(group, [], users[:120])
    removes = [len(sent_values(r.content)[1]) for r in rec.sent("PATCH")][len(adds):]
    assert sum(removes) == 120 and len(removes) <= 9
    assert sorted(raw_members(scim_server, group)) == sorted(users[120:])


def test_a_413_splits_the_chunk_and_everything_lands(
    scim_server: _Peer, proxied: FaultProxy, connect: Callable[..., ScimConnector]
) -> None:
    """A 413 for a member PATCH (nothing applied) halves the chunk and sends it again."""
    setup = connect(scim_server)
    users = make_users(setup, 20)
    group = setup.create("group", {"displayName": "big"}).external_id
    conn = connect(scim_server, url=proxied.url, members_per_patch=16)
    fake_time(conn)
    proxied.add(Fault("status", method="PATCH", path="/Groups/", status=413, times=2))
    conn.set_members(group, users, [])
    sizes = [e.action for e in proxied.events("PATCH", "/Groups/")]
    assert sizes[:2] == ["status", "status"] and sizes[2:] and "status" not in sizes[2:]
    assert sorted(raw_members(scim_server, group)) == sorted(users)


def test_many_removals_on_a_slow_server_become_one_if_match_replace(
    scim2_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    """scim2-server declares ETags. When removal chunks show the rest would take long, the
    removals go as one members replace with If-Match; a member someone else added meanwhile
    makes the first replace fail (412), is read again and kept."""
    rec = Recording()
    conn = connect(scim2_server, transport=rec, members_per_patch=40)
    users = make_users(conn, 60)
    outsider = conn.create("user", {"userName": "outsider"}).external_id
    group = conn.create("group", {"displayName": "slow"}).external_id
    conn.set_members(group, users, [])
    now = [0.0]
    conn.clock = lambda: now[0]
    conn.sleep = lambda s: None

    def slow_then_foreign(request: httpx.Request) -> httpx.Response | None:
        now[0] += 5.0  # every request looks slow: removal chunks project a long rest
        if request.method == "PATCH" and "If-Match" in request.headers and not foreign:
            foreign.append(outsider)  # someone adds a member between our read and write
            r = httpx.patch(f"{scim2_server.url}/Groups/{group}", headers={
                "Authorization": f"Bearer {scim2_server.token}"}, json={
                "schemas": [PATCH_URN], "Operations": [
                    {"op": "add", "path": "members", "value": [{"value": outsider}]}]})
            assert r.status_code == 204
        return None

    foreign: list[str] = []
    rec.faults.append(slow_then_foreign)  # answers None: stays, sees every request
    conn.set_members(group, [], users[:50])
    replaces = [r for r in rec.sent("PATCH") if "If-Match" in r.headers]
    assert len(replaces) == 2  # 412 on the first (the group changed), then applied
    assert sorted(raw_members(scim2_server, group)) == sorted([*users[50:], outsider])


def test_partial_progress_is_reported_on_failure(
    scim_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    """A call that fails after some chunks were applied says which values were applied."""
    rec = Recording()
    conn = connect(scim_server, transport=rec, members_per_patch=2, max_retries=0)
    fake_time(conn)
    users = make_users(conn, 6)
    group = conn.create("group", {"displayName": "partial"}).external_id
    calls = [0]

    def second_patch_busy(request: httpx.Request) -> httpx.Response | None:
        if request.method == "PATCH":
            calls[0] += 1
            if calls[0] == 2:
                return httpx.Response(503)
        return None

    rec.faults.append(second_patch_busy)
    with pytest.raises(Retriable) as info:
        conn.set_members(group, users, [])
    done_add, done_remove = info.value.members_done  # type: ignore[attr-defined]
    assert done_add == set(users[:2]) and done_remove == set()
    assert sorted(raw_members(scim_server, group)) == sorted(users[:2])
