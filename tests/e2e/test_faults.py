"""Fault tolerance, CLI against real slapd + a fault-injecting proxy + real scim2-server.

The proxy (tests/peers/fault_proxy.py) sits between syncd and the SCIM server; the test
reads the server directly (not through the proxy) to count what really exists. Timing
claims (Retry-After honoured) are asserted from the proxy's own timestamps, never by
sleeping. Retry waits stay short: Retry-After 1 s, small `max_retries`, sub-second timeouts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Result, Sync
from tests.peers.directory import group_cn, group_member_indexes, user_dn, user_uid
from tests.peers.fault_proxy import Event, Fault, FaultProxy
from tests.peers.ldap_fixtures import SEED, SMALL_GROUPS, SMALL_MEMBERS, SMALL_USERS
from tests.peers.scim_servers import _Peer
from tests.peers.slapd import Slapd

pytestmark = pytest.mark.peers
_TOKEN_LINE = 'token = "env:E2E_SCIM_TOKEN"\n'


class FaultSync(Sync):
    """A `Sync` whose SCIM connector goes through the proxy, with extra connector settings
    (retries, timeouts, bulk) appended to its ``[connectors.app]`` table."""

    def __init__(self, tmp: Path, ldap: Slapd, scim: _Peer, mp: pytest.MonkeyPatch,
                 proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.settings = "max_retries = 5\ntimeout = 5\n"
        super().__init__(tmp, ldap, scim, mp)

    def write(self, **kwargs: Any) -> None:
        super().write(**kwargs)
        text = self.config.read_text()
        old = f'url = "{self.scim.url}"\n{_TOKEN_LINE}'
        assert old in text, "the e2e config template changed: update FaultSync"
        self.config.write_text(
            text.replace(old, f'url = "{self.proxy.url}"\n{_TOKEN_LINE}{self.settings}'))

    def connector(self, settings: str) -> None:
        self.settings = settings
        self.write()

    def assert_converged(self) -> None:
        """Exactly the directory on the real server: no duplicate, nothing missing."""
        names = Counter(u["userName"] for u in self.list("Users"))
        assert names == Counter({user_uid(i): 1 for i in range(SMALL_USERS)})
        groups = Counter(g["displayName"] for g in self.list("Groups"))
        assert groups == Counter({group_cn(j): 1 for j in range(SMALL_GROUPS)})
        for j in range(SMALL_GROUPS):
            want = {user_uid(i) for i in group_member_indexes(j, SMALL_USERS, SMALL_MEMBERS,
                                                               SEED)}
            assert self.member_names(group_cn(j)) == want


@pytest.fixture
def proxy(scim2_server: _Peer) -> Iterator[FaultProxy]:
    with FaultProxy(scim2_server.url) as p:
        yield p


@pytest.fixture
def fsync(tmp_path: Path, slapd: Slapd, scim2_server: _Peer, proxy: FaultProxy,
          monkeypatch: pytest.MonkeyPatch) -> FaultSync:
    # The engine holds a failed change back (1 min, 2, 4, ...) before its next attempt; here
    # the next run must retry at once (the CLI runs in this process, like its unit tests do).
    monkeypatch.setattr("syncd.state.records.BACKOFF_BASE", 0.0)
    return FaultSync(tmp_path, slapd, scim2_server, monkeypatch, proxy)


def failed(res: Result, op: str | None = None, kind: str | None = None) -> list[str]:
    """Names of the failed changes of a run (optionally of one op and kind)."""
    assert res.doc is not None, res.out
    by_id = {c["id"]: c for c in res.doc["changes"]}
    out = []
    for f in res.doc["flows"][0]["failures"]:
        c = by_id[f["change"]]
        if (op is None or c["op"] == op) and (kind is None or c["kind"] == kind):
            out.append(f["name"])
    return sorted(out)


def retried_too_early(events: list[Event]) -> list[str]:
    """Requests resent before the Retry-After their previous attempt was given had passed
    (a resend is the next request with the same method, path and body)."""
    bad = []
    for i, e in enumerate(events):
        if e.retry_after is None:
            continue
        nxt = next((n for n in events[i + 1:] if n.key == e.key), None)
        if nxt is None:
            bad.append(f"{e.method} {e.path}: never resent")
        elif nxt.at < e.replied + e.retry_after:
            bad.append(f"{e.method} {e.path}: resent after {nxt.at - e.replied:.3f}s")
    return bad


def test_429_bursts_converge_and_retry_after_is_honoured(fsync: FaultSync) -> None:
    fsync.proxy.add(
        # fewer than max_retries (5) each: even if one request (a /Bulk) takes them all
        Fault("status", status=429, retry_after="1", method="POST", times=3),
        Fault("status", status=429, retry_after="1", method="PATCH", times=2),
        Fault("status", status=429, retry_after="1", method="GET", skip=5, times=2),
    )
    res = fsync.run()
    assert res.code == 0, res.out
    counts = fsync.proxy.counts()
    assert counts["status:429"] == 7, counts
    events = sorted(fsync.proxy.events(), key=lambda e: e.at)
    assert retried_too_early(events) == []
    fsync.assert_converged()
    again = fsync.run()
    assert again.code == 0 and again.doc is not None and again.doc["changes"] == []


def test_503_500_and_resets_then_a_second_run_converges(fsync: FaultSync) -> None:
    # 4 retries: one request could meet every 503 of the burst in a row and still pass.
    # One POST per create (no /Bulk) so each fault hits exactly one create.
    fsync.connector('max_retries = 4\ntimeout = 5\nbulk = "never"\nconcurrency = 1\n')
    users = r"/Users$"
    fsync.proxy.add(
        Fault("status", status=503, retry_after="1", method="POST", times=4, skip=6),
        Fault("status", status=500, method="POST", path=users, times=3, skip=2),
        Fault("status", status=500, method="PATCH", times=2),
        Fault("reset", method="POST", path=users, times=2, skip=10),
        Fault("drop_response", method="POST", path=users, times=2, skip=15),
        Fault("reset", method="GET", times=2, skip=5),
        Fault("reset", method="PATCH", times=1, skip=1),
    )
    first = fsync.run()
    assert first.code == 1, first.out
    counts = fsync.proxy.counts()
    assert (counts["status:503"], counts["status:500"], counts["reset"],
            counts["drop_response"]) == (4, 5, 5, 2), counts
    lost_posts = failed(first, "create", "user")
    # POSTs answered 500, reset or dropped fail (never resent); PATCH/GET faults are retried
    assert len(lost_posts) == 3 + 2 + 2, first.out
    assert failed(first, "update") == []

    fsync.proxy.clear()
    second = fsync.run()
    assert second.code == 0, second.out
    assert second.doc is not None
    summary = second.doc["summary"]["user"]
    assert summary["adopt"] == 2, "the two dropped POSTs were applied: adopted, not recreated"
    assert summary["create"] == 5
    fsync.assert_converged()
    assert fsync.run().doc["changes"] == []  # type: ignore[index]


def test_patch_timeouts_fail_and_the_next_run_repeats_exactly_them(fsync: FaultSync) -> None:
    fsync.connector("max_retries = 1\ntimeout = 0.5\n")
    assert fsync.run().code == 0
    for i in (1, 2, 3):
        fsync.ldap.modify(f"dn: {user_dn(i)}\nchangetype: modify\nreplace: title\n"
                          f"title: Timed {i}\n")
    slow = [fsync.user(user_uid(i))["id"] for i in (1, 3)]
    fsync.proxy.add(Fault("delay", delay=2.0, method="PATCH", path="|".join(slow), times=4))
    second = fsync.run()
    assert second.code == 1, second.out
    assert failed(second) == [user_uid(1), user_uid(3)]
    assert fsync.proxy.counts()["delay"] == 4  # each tried twice (max_retries = 1)
    assert fsync.user(user_uid(2))["title"] == "Timed 2"
    assert fsync.user(user_uid(1)).get("title") != "Timed 1"
    third = fsync.run()
    assert third.code == 0, third.out
    assert third.doc is not None
    assert sorted((c["op"], c["name"]) for c in third.doc["changes"]) == [
        ("update", user_uid(1)), ("update", user_uid(3))]
    assert [fsync.user(user_uid(i))["title"] for i in (1, 3)] == ["Timed 1", "Timed 3"]


@pytest.mark.parametrize("bulk", ["never", "auto"])
def test_post_applied_but_answer_lost_is_adopted_never_duplicated(
        fsync: FaultSync, bulk: str) -> None:
    """The proxy forwards the create and drops the answer: the object exists but syncd never
    learnt its id. With `bulk = "auto"` the request may be a /Bulk holding many creates."""
    fsync.connector(f'max_retries = 2\ntimeout = 5\nbulk = "{bulk}"\n')
    fsync.proxy.add(Fault("drop_response", method="POST", path=r"/(Users|Bulk)$",
                          body=f'"{user_uid(7)}"'))
    first = fsync.run()
    assert first.code == 1, first.out
    assert fsync.proxy.counts()["drop_response"] == 1
    lost = failed(first, "create", "user")
    assert user_uid(7) in lost
    assert len(fsync.list("Users")) == SMALL_USERS, "the lost answer's create was applied"
    second = fsync.run()
    assert second.code == 0, second.out
    assert second.doc is not None
    summary = second.doc["summary"]["user"]
    assert (summary["adopt"], summary["create"]) == (len(lost), 0)
    fsync.assert_converged()
    assert fsync.run().doc["changes"] == []  # type: ignore[index]
