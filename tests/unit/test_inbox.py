"""The received directory in the state store (`syncd.state.inbox`) and the ``scim_inbox``
source over it: sequence, tombstones, uniqueness, members, secrets never stored, cursors."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import text

from syncd.model import Batch
from syncd.state.inbox import Inbox, InboxConflict, InboxNotFound, InboxVersionMismatch, Member
from syncd.state.inbox_source import InboxConfig, InboxConnector, flatten
from syncd.state.store import Store

ENT = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path}/state.db")
    yield s
    s.close()


@pytest.fixture
def inbox(store: Store) -> Inbox:
    assert store.engine is not None
    return Inbox(store.engine, "entra")


def user(user_name: str, /, **more: object) -> dict[str, object]:
    return {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": user_name,
            "active": True, **more}


def test_create_get_and_sequence(inbox: Inbox) -> None:
    a = inbox.create("user", "u1", user("alice", externalId="e1"))
    b = inbox.create("user", "u2", user("bob"))
    assert (a.seq, b.seq) == (1, 2) and inbox.head() == 2
    got = inbox.get("user", "u1")
    assert got.body["userName"] == "alice" and got.external_id == "e1" and got.version == 1
    assert [r.id for r in inbox.find("user", "name_key", "ALICE".lower())] == ["u1"]
    assert [r.id for r in inbox.find("user", "external_id", "e1")] == ["u1"]


def test_password_is_never_stored(inbox: Inbox, store: Store) -> None:
    inbox.create("user", "u1", user("alice", password="hunter2-secret"))
    inbox.replace("user", "u1", user("alice", password="hunter3-secret"))
    assert store.engine is not None
    with store.engine.connect() as conn:
        dump = json.dumps([list(map(str, r)) for r in conn.execute(text("SELECT * FROM inbox"))])
    assert "hunter" not in dump and "password" not in inbox.get("user", "u1").body


def test_user_name_unique_without_case(inbox: Inbox) -> None:
    inbox.create("user", "u1", user("Alice"))
    with pytest.raises(InboxConflict):
        inbox.create("user", "u2", user("alice"))
    inbox.create("user", "u3", user("carol"))
    with pytest.raises(InboxConflict):
        inbox.replace("user", "u3", user("ALICE"))
    inbox.delete("user", "u1")
    inbox.create("user", "u4", user("alice"))  # a deleted user's name is free again


def test_versions_and_tombstones(inbox: Inbox) -> None:
    inbox.create("user", "u1", user("alice"))
    r = inbox.replace("user", "u1", user("alice", title="Eng"), expected_version=1)
    assert r.version == 2
    with pytest.raises(InboxVersionMismatch):
        inbox.replace("user", "u1", user("alice"), expected_version=1)
    inbox.delete("user", "u1")
    with pytest.raises(InboxNotFound):
        inbox.get("user", "u1")
    assert [(x.id, x.deleted) for p in inbox.changes("user", 2) for x in p] == [("u1", True)]


def test_members_and_deleted_user_leaves_groups(inbox: Inbox) -> None:
    inbox.create("user", "u1", user("alice"))
    inbox.create("user", "u2", user("bob"))
    g = inbox.create("group", "g1", {"displayName": "Staff"},
                     [Member("u1", "User"), Member("u2", "User"), Member("u1", "User")])
    assert [m.value for m in g.members or ()] == ["u1", "u2"]
    r = inbox.replace("group", "g1", {"displayName": "Staff"}, [Member("u2", "User")])
    assert [m.value for m in r.members or ()] == ["u2"]
    assert [x.id for x in inbox.groups_naming(["u2"])] == ["g1"]
    assert inbox.get("group", "g1", members=False).members is None
    before = inbox.get("group", "g1").seq
    inbox.delete("user", "u2")
    after = inbox.get("group", "g1")
    assert after.members == () and after.seq > before  # the group changed: read again


def test_group_commit_one_transaction_each_write_its_own_fate(inbox: Inbox) -> None:
    """Writes queued during a commit are committed together: a taken userName fails alone,
    the others commit, sequence numbers stay gapless in queue order, and nobody returns
    before the group is committed."""
    inbox.create("user", "u0", user("taken"))
    release, in_commit = threading.Event(), threading.Event()
    slow_work = inbox.writes.run

    def blocker(conn: object) -> None:  # holds the commit while the others queue up
        in_commit.set()
        release.wait(10)

    results: dict[str, object] = {}

    def create(rid: str, name: str) -> None:
        try:
            results[rid] = inbox.create("user", rid, user(name)).seq
        except InboxConflict as exc:
            results[rid] = exc

    first = threading.Thread(target=slow_work, args=(blocker,))
    first.start()
    assert in_commit.wait(10)
    names = {"u1": "a", "u2": "taken", "u3": "b", "u4": "A"}
    threads = [threading.Thread(target=create, args=item) for item in names.items()]
    for t in threads:
        t.start()
    while len(inbox.writes._queue) < len(names):  # all four queued behind the blocker
        time.sleep(0.005)
    assert not results  # nothing answered before its commit
    release.set()
    for t in [first, *threads]:
        t.join(10)
    assert isinstance(results["u2"], InboxConflict)
    seqs = sorted(v for v in results.values() if isinstance(v, int))
    assert seqs == list(range(2, 2 + len(seqs))) and len(seqs) in (2, 3)
    assert inbox.head() == seqs[-1]
    # "a" and "A" are one userName: exactly one of u1/u4 holds it
    assert sum(isinstance(results[r], InboxConflict) for r in ("u1", "u4")) == 1
    live = sorted(r.id for p in inbox.all("user") for r in p)
    assert live == sorted(["u0", "u3"] + [r for r in ("u1", "u4")
                                          if not isinstance(results[r], InboxConflict)])


def test_concurrent_writes_gapless_sequence(inbox: Inbox) -> None:
    def work(i: int) -> None:
        inbox.create("user", f"u{i}", user(f"user{i}"))
        inbox.replace("user", f"u{i}", user(f"user{i}", title="x"))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(60)))
    got = [r for p in inbox.changes("user", 0) for r in p]
    assert len({r.seq for r in got}) == 60 and all(r.version == 2 for r in got)
    assert max(r.seq for r in got) == inbox.head() == 120  # 120 writes, 120 numbers


def test_source_reads_full_then_incremental(store: Store) -> None:
    conn = InboxConnector("entra", InboxConfig(type="scim_inbox", state_url=store.url))
    inbox = conn.inbox
    inbox.create("user", "u1", user("alice", name={"givenName": "Alice"},
                                    emails=[{"value": "a@example.com", "type": "work"}],
                                    **{ENT: {"department": "R&D", "manager": {"value": "u9"}}}))
    batches = list(conn.read("user"))
    assert batches[-1].cursor == "seq:1" and all(b.full for b in batches)
    (entry,) = [e for b in batches for e in b.entries]
    assert entry.raw["username"] == ("alice",) and entry.raw["name.givenname"] == ("Alice",)
    assert entry.raw["emails.work"] == ("a@example.com",)
    assert entry.raw["enterprise.department"] == ("R&D",)
    assert entry.raw[f"{ENT.lower()}:manager"] == ("u9",)
    assert entry.raw["active"] == ("true",)
    inbox.replace("user", "u1", user("alice", active=False))
    inbox.create("user", "u2", user("bob"))
    inbox.delete("user", "u2")
    inc: list[Batch] = list(conn.read("user", "seq:1"))
    assert not inc[-1].full and inc[-1].cursor == "seq:4"
    assert [e.raw["active"] for b in inc for e in b.entries] == [("false",)]
    assert [d for b in inc for d in b.deleted] == ["u2"]
    assert conn.confirm_gone("user", ["u1", "u2", "nope"]) == {"u2", "nope"}
    assert [e.external_id for e in conn.find("user", "userName", "ALICE")] == ["u1"]
    assert list(conn.read("user", "seq:4"))[-1].entries == ()
    conn.close()


def test_flatten_addresses_and_lists() -> None:
    raw = flatten({"addresses": [{"type": "work", "locality": "Oslo"}],
                   "phoneNumbers": [{"value": "+47", "type": "mobile", "primary": True}]}, "x")
    assert raw["addresses.work.locality"] == ("Oslo",)
    assert raw["phonenumbers.mobile"] == ("+47",) and raw["phonenumbers.primary"] == ("+47",)
