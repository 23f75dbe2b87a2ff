"""Several `syncd daemon` processes sharing one PostgreSQL state store (issue 17 item 4): each
flow runs on exactly one instance, flows spread over the instances, and when the active one is
killed (-9) or its database session is cut mid-apply the other takes its flows over within one
interval (+10 s), the target converging with no duplicate and no lost change.

Real peers: slapd (tests/peers), scim2-server behind a delaying proxy on 127.0.0.1 (an apply
that lasts long enough to be interrupted), the machine's PostgreSQL in a throwaway database,
and two daemons as processes. Waits are on observable conditions (logs, the journal, the SCIM
server's contents), each with a deadline.
"""

from __future__ import annotations

import itertools
import json
import signal
import socket
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from syncd.state.locks import LEASE_TIMEOUT_S
from tests.e2e.conftest import Sync
from tests.e2e.test_daemon import (
    FLOW,
    DaemonProc,
    DelayProxy,
    configure,
    daemons,  # noqa: F401 (a fixture)
    schedule,
    wait_for,
)
from tests.e2e.test_flow_locks_postgres import terminate
from tests.e2e.test_postgres_store import pg_url  # noqa: F401 (a fixture)
from tests.peers.directory import write_ldif
from tests.peers.scim_servers import Scim2Server
from tests.peers.slapd import Slapd

USERS, GROUPS = 300, 6
INTERVAL = 2.0
#: The goal: a dead instance's flow runs again on another within one interval + 10 s.
FAILOVER_BOUND = INTERVAL + 10


@dataclass
class Run:
    flow: str
    start: datetime
    end: datetime | None
    result: str
    instance: str | None
    error: str | None
    summary: dict[str, Any]


def journal(url: str) -> list[Run]:
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        try:
            rows = conn.execute("SELECT flow, started_at, finished_at, result, summary, error "
                                "FROM run ORDER BY started_at").fetchall()
        except psycopg.errors.UndefinedTable:
            return []
    out = []
    for flow, start, end, result, summary, error in rows:
        doc = json.loads(summary or "{}")
        out.append(Run(flow, start, end, result, doc.get("instance"), error, doc))
    return out


def name_of(d: DaemonProc) -> str:
    return f"syncd daemon {socket.gethostname()}:{d.proc.pid}"


def log_time(d: DaemonProc, text: str) -> float | None:
    """The wall-clock time (epoch s) of the first log line of `d` containing `text`."""
    for line in d.lines():
        if text in line["msg"]:
            return datetime.fromisoformat(line["ts"]).timestamp()
    return None


@pytest.fixture
def ldap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    ldif = write_ldif(tmp_path_factory.mktemp("ha") / "ha.ldif", USERS, GROUPS, 20)
    with Slapd(ldif=ldif, size_limit=0) as server:
        yield server


@dataclass
class Setup:
    sync: Sync
    proxy: DelayProxy
    url: str


@pytest.fixture
def setup(tmp_path: Path, ldap: Slapd, scim2_server: Scim2Server, pg_url: str,  # noqa: F811
          monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    sync = Sync(tmp_path, ldap, scim2_server, monkeypatch)
    # one POST per user, 2 at a time, 20 ms each: the initial load lasts a few seconds
    proxy = DelayProxy(scim2_server, delay=0.02)
    try:
        configure(sync, proxy.url, schedule(f"{INTERVAL:g}s"), 'bulk = "never"\nconcurrency = 2')
        text = sync.config.read_text().replace(f'url = "sqlite:///{sync.state}"',
                                               f'url = "{pg_url}"')
        sync.config.write_text(text)
        yield Setup(sync, proxy, pg_url)
    finally:
        proxy.close()


def start_pair(s: Setup, tmp: Path, daemons: list[DaemonProc]  # noqa: F811
               ) -> tuple[DaemonProc, DaemonProc]:
    """A first, owning the flow and applying; then B, which sees the flow run on A."""
    a = DaemonProc(s.sync.config, tmp)
    daemons.append(a)
    wait_for(lambda: a.logged(f"flow {FLOW}: owned by this instance"), 60, "A owns the flow", a)
    b = DaemonProc(s.sync.config, tmp)
    daemons.append(b)
    wait_for(lambda: b.logged(f"flow {FLOW}: running on {name_of(a)}"), 60,
             "B to see the flow running on A", b)
    wait_for(lambda: len(s.sync.list("Users")) >= USERS // 5, 60, "A's apply under way", a)
    assert len(s.sync.list("Users")) < USERS, "A finished before it could be interrupted"
    assert {r.instance for r in journal(s.url)} == {name_of(a)}, \
        "B never runs the flow while A owns it (it ticked every interval meanwhile)"
    return a, b


def assert_converged(s: Setup, b: DaemonProc) -> None:
    """B brings the target to exactly the directory: every user and group once, members
    complete; then a run of B plans nothing."""
    def done() -> bool:
        quiet = [r for r in journal(s.url) if r.instance == name_of(b) and r.result == "ok"
                 and r.summary.get("applied") == 0]
        return bool(quiet) and len(s.sync.list("Users")) >= USERS
    try:
        wait_for(done, 120, "B to converge and then find nothing to do", b)
    except AssertionError as exc:
        runs = [(r.instance, r.result, r.summary.get("applied"), r.error)
                for r in journal(s.url)]
        raise AssertionError(f"{exc}; journal: {runs[-6:]}; B's log: "
                             f"{b.stderr.read_text()[-2000:]}") from None
    users = Counter(u["userName"] for u in s.sync.list("Users"))
    assert len(users) == USERS and max(users.values()) == 1, "a duplicate or a lost user"
    groups = s.sync.list("Groups")
    names = Counter(g["displayName"] for g in groups)
    assert len(names) == GROUPS and max(names.values()) == 1, "a duplicate or a lost group"
    assert all(len(g.get("members") or []) == 20 for g in groups), "lost memberships"


def test_kill_9_of_the_active_instance_mid_apply(
        tmp_path: Path, setup: Setup, daemons: list[DaemonProc]) -> None:  # noqa: F811
    a, b = start_pair(setup, tmp_path, daemons)
    killed = time.time()
    a.kill()  # SIGKILL
    wait_for(lambda: b.logged(f"flow {FLOW}: owned by this instance"), FAILOVER_BOUND + 5,
             "B to take the flow over", b)
    took = (log_time(b, f"flow {FLOW}: owned by this instance") or 0) - killed
    assert took <= FAILOVER_BOUND, f"failover took {took:.1f}s"
    assert_converged(setup, b)
    first, *later = journal(setup.url)
    assert first.result == "aborted" and "did not finish" in (first.error or ""), \
        "the killed run is closed by the instance that took the lock"
    assert first.instance == name_of(a)
    assert {r.instance for r in later} == {name_of(b)}, "only B ran the flow after the kill"
    spans = [(r.start, r.end) for r in (first, *later) if r.end is not None]
    assert all(e1 <= s2 for (_, e1), (s2, _) in itertools.pairwise(spans)), "runs overlap"


def test_cut_database_session_of_the_active_instance_mid_apply(
        tmp_path: Path, setup: Setup, daemons: list[DaemonProc]) -> None:  # noqa: F811
    a, b = start_pair(setup, tmp_path, daemons)
    database = setup.url.rsplit("/", 1)[1]
    assert terminate(name_of(a), database) == 1
    wait_for(lambda: a.logged("was lost"), 30, "A to notice it lost the lock", a)
    wait_for(lambda: b.logged(f"flow {FLOW}: owned by this instance"), FAILOVER_BOUND + 5,
             "B to take the flow over", b)
    assert_converged(setup, b)
    runs = journal(setup.url)
    cut = [r for r in runs if r.instance == name_of(a)]
    assert cut and cut[0].result == "aborted" and "was lost" in (cut[0].error or "")
    assert a.alive(), "losing the database session is not a reason to exit"
    wait_for(lambda: a.logged(f"flow {FLOW}: running on {name_of(b)}"), 30,
             "A, reconnected, to see the flow on B", a)
    assert not a.logged("Traceback") and not [x for x in a.lines()
                                              if x["level"] == "critical"]


SPREAD = """
[state]
url = "{url}"
[connectors.src]
type = "memory"
directory = "ha-src"
[connectors.dst]
type = "memory"
directory = "ha-dst"
"""


def test_flows_spread_over_instances_one_each_and_all_move_when_one_dies(
        tmp_path: Path, pg_url: str, daemons: list[DaemonProc]) -> None:  # noqa: F811
    """Four flows, two instances: two flows each, each flow on one instance only (its runs
    never overlap); kill -9 of one: the other runs all four within interval + 10 s. (The
    flows are in-memory and do nothing: what is tested is who runs them.)"""
    flows = [f"f{i}" for i in range(4)]
    config = tmp_path / "spread.toml"
    config.write_text(SPREAD.format(url=pg_url) + "".join(
        f'[flows.{f}]\nsource = "src"\ntarget = "dst"\n'
        f'[flows.{f}.schedule]\ninterval = "1s"\n'
        f'[flows.{f}.users.mapping]\nuserName = "uid"\n' for f in flows))
    a = DaemonProc(config, tmp_path)
    daemons.append(a)
    wait_for(lambda: all(a.logged(f"flow {f}: owned by this instance") for f in flows), 60,
             "A alone to own every flow", a)
    b = DaemonProc(config, tmp_path)
    daemons.append(b)

    def latest() -> dict[str, str | None]:
        last: dict[str, str | None] = {}
        for r in journal(pg_url):
            last[r.flow] = r.instance
        return last

    wait_for(lambda: sorted(Counter(latest().values()).values()) == [2, 2]
             and set(latest().values()) == {name_of(a), name_of(b)}, 60,
             "the flows to spread two and two", b)
    settled = datetime.now().astimezone()
    wait_for(lambda: all(sum(r.flow == f and r.start > settled for r in journal(pg_url)) >= 3
                         for f in flows), 60, "three more runs of each flow", b)
    for f in flows:
        runs = [r for r in journal(pg_url) if r.flow == f]
        after = {r.instance for r in runs if r.start > settled}
        assert len(after) == 1, f"flow {f} moved between live instances: {after}"
        spans = sorted((r.start, r.end) for r in runs if r.end is not None)
        for (_s1, e1), (s2, _e2) in itertools.pairwise(spans):
            assert e1 <= s2, f"two runs of {f} overlap"
    mine = [f for f, who in latest().items() if who == name_of(a)]
    assert all(b.logged(f"flow {f}: running on {name_of(a)}") for f in mine)
    assert not [x for x in a.lines() + b.lines() if x["level"] in ("error", "critical")]

    killed = time.time()
    a.kill()
    wait_for(lambda: all(b.logged(f"flow {f}: owned by this instance") for f in mine),
             FAILOVER_BOUND + 5, "B to take A's flows", b)
    took = max(log_time(b, f"flow {f}: owned by this instance") or 0 for f in mine) - killed
    assert took <= FAILOVER_BOUND, f"failover of {mine} took {took:.1f}s"
    wait_for(lambda: set(latest().values()) == {name_of(b)}, 30, "B to run every flow", b)


def test_a_frozen_instance_is_replaced_and_writes_nothing_more_when_thawed(
        tmp_path: Path, setup: Setup, daemons: list[DaemonProc]) -> None:  # noqa: F811
    """SIGSTOP mid-apply: a host that vanished without closing its connections, or a process
    paused. The server ends its silent lock session after LEASE_TIMEOUT_S, B takes the flow;
    thawed, A finds its lock gone before its next batch and writes nothing more."""
    a, b = start_pair(setup, tmp_path, daemons)
    frozen = time.time()
    a.signal(signal.SIGSTOP)
    bound = INTERVAL + LEASE_TIMEOUT_S
    wait_for(lambda: b.logged(f"flow {FLOW}: owned by this instance"), bound + 10,
             "B to take the flow over", b)
    took = (log_time(b, f"flow {FLOW}: owned by this instance") or 0) - frozen
    assert took <= bound + 1, f"takeover after {took:.1f}s (bound {bound}s)"
    a.signal(signal.SIGCONT)
    wait_for(lambda: a.logged("was lost"), 30, "A, thawed, to find its lock lost", a)
    assert_converged(setup, b)
    (cut,) = [r for r in journal(setup.url) if r.instance == name_of(a)]
    assert cut.result == "aborted" and "was lost" in (cut.error or "")
    assert a.alive()
