"""Tombstones of the received directory are pruned once every flow reading it has read past
them and they are older than ``[serve] tombstones_keep``; a reader whose cursor is older
than what was pruned reads in full, so a delete is never missed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from syncd.config import load
from syncd.config.flows import Config
from syncd.cycle import engine
from syncd.daemon.metrics import Metrics
from syncd.daemon.receiving import Receiver
from syncd.state import schema
from syncd.state.inbox import Inbox
from syncd.state.inbox_prune import prune_tombstones, pruned_upto
from syncd.state.inbox_source import InboxConfig, InboxConnector
from syncd.state.store import Store
from syncd.testing import directory

CONFIG = """
[state]
url = "sqlite:///{state}"

[connectors.entra]
type = "scim_inbox"

[connectors.dir]
type = "memory"
directory = "{target}"

[serve]
listen = "127.0.0.1:18443"
tokens = ["env:PRUNE_TOKEN"]
directory = "entra"
tombstones_keep = "7d"

[flows.one]
source = "entra"
target = "dir"
deprovision = "delete"
[flows.one.users.mapping]
userName = "userName"
{more}
"""

TWO = """
[flows.two]
source = "entra"
target = "dir"
[flows.two.groups.mapping]
displayName = "displayName"
"""


def config(tmp: Path, monkeypatch: pytest.MonkeyPatch, more: str = "") -> Config:
    monkeypatch.setenv("PRUNE_TOKEN", "t" * 20)
    path = tmp / "syncd.toml"
    path.write_text(CONFIG.format(state=tmp / "state.db", target=f"prune-{tmp.name}",
                                  more=more))
    return load(path, service=True)


def age(inbox: Inbox, days: float) -> None:
    """Make every row of the directory `days` old (tombstones carry their delete time)."""
    t = schema.inbox
    with inbox.engine.begin() as conn:
        conn.execute(update(t).values(modified=datetime.now(UTC) - timedelta(days=days)))


def test_prune_and_the_floor(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/state.db")
    assert store.engine is not None
    inbox = Inbox(store.engine, "entra")
    for i in range(4):
        inbox.create("user", f"u{i}", {"userName": f"u{i}"})
    inbox.delete("user", "u0")  # seq 5
    inbox.delete("user", "u1")  # seq 6
    inbox.create("group", "g", {"displayName": "g"})
    inbox.delete("group", "g")  # seq 8
    old = datetime.now(UTC) + timedelta(seconds=1)
    assert prune_tombstones(store.engine, "entra", "user", upto=5,
                            older_than=datetime.now(UTC) - timedelta(days=1)) == 0, "too young"
    assert prune_tombstones(store.engine, "entra", "user", upto=5, older_than=old) == 1
    assert pruned_upto(store.engine, "entra", "user") == 5
    assert pruned_upto(store.engine, "entra", "group") == 0
    assert prune_tombstones(store.engine, "entra", "user", upto=4, older_than=old) == 0
    assert pruned_upto(store.engine, "entra", "user") == 5, "the floor never goes down"

    conn = InboxConnector("entra", InboxConfig(type="scim_inbox", state_url=store.url))
    behind = list(conn.read("user", "seq:4"))  # would have missed u0's delete
    assert all(b.full for b in behind) and behind[-1].cursor == f"seq:{inbox.head()}"
    assert sorted(e.external_id for b in behind for e in b.entries) == ["u2", "u3"]
    inc = list(conn.read("user", "seq:5"))  # read past it: incremental, u1's tombstone left
    assert not inc[-1].full and [d for b in inc for d in b.deleted] == ["u1"]
    assert not list(conn.read("group", "seq:1"))[-1].full
    conn.close()
    store.close()


def test_receiver_prunes_what_every_flow_read(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config(tmp_path, monkeypatch, TWO)
    r = Receiver(lambda: cfg, lambda _name: None, Metrics())
    try:
        inbox, store = r.inbox, r.store
        for i in range(3):
            inbox.create("user", f"u{i}", {"userName": f"u{i}"})
        inbox.create("group", "g", {"displayName": "g"})
        inbox.delete("user", "u0")    # 5
        inbox.delete("group", "g")    # 6
        inbox.delete("user", "u1")    # 7
        age(inbox, 8)
        # flow one (users) has read up to 5, flow two (groups) has no cursor: a full read next
        store.save_cursor("one", "entra", "user", "seq:5", full=False)
        assert r.prune() == {"user": 1, "group": 1}
        assert pruned_upto(store.engine, "entra", "user") == 5  # type: ignore[arg-type]
        store.save_cursor("one", "entra", "user", "seq:7", full=False)
        inbox.delete("user", "u2")    # 8: too young
        assert r.prune() == {"user": 1, "group": 0}
        rows = [rec for page in inbox.changes("user", 0) for rec in page if rec.deleted]
        assert [x.id for x in rows] == ["u2"]
    finally:
        r.close()


def test_a_flow_behind_the_pruned_tombstones_still_deletes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config(tmp_path, monkeypatch)
    target = directory(f"prune-{tmp_path.name}")
    store = Store(cfg.state_url)
    assert store.engine is not None
    inbox = Inbox(store.engine, "entra")
    try:
        inbox.create("user", "u1", {"userName": "ann"})
        inbox.create("user", "u2", {"userName": "bob"})
        (res,) = engine.run(cfg)
        assert res.result == "ok", res.errors
        assert sorted(str(o.get("userName")) for o in target.objects["user"].values()) == \
            ["ann", "bob"]
        stale = store.cursor("one", "entra", "user").value
        assert stale == "seq:2"
        inbox.delete("user", "u1")
        inbox.create("user", "u3", {"userName": "cy"})
        age(inbox, 30)
        # pruned past the flow's cursor (as if it had been counted out): seq 3 goes
        assert prune_tombstones(store.engine, "entra", "user", upto=4,
                                older_than=datetime.now(UTC)) == 1
        (res,) = engine.run(cfg)
        assert res.result == "ok", res.errors
        assert sorted(str(o.get("userName")) for o in target.objects["user"].values()) == \
            ["bob", "cy"], "the delete was missed"
    finally:
        store.close()
