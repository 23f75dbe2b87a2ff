"""The flow lock on PostgreSQL (syncd.state.locks), against the machine's server: who holds a
flow is named, and a run whose lock session is cut stops writing at its next batch."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import text

from syncd.errors import StoreLocked
from syncd.state.locks import DAEMON, LEASE_TIMEOUT_S, PgLockSession, lease_key, run_key
from syncd.state.store import Store
from tests.e2e.test_postgres_store import ADMIN, pg_env, pg_url  # noqa: F401 (fixtures)
from tests.unit.test_engine import Env

USERS = 60


def terminate(app_prefix: str, database: str) -> int:
    """pg_terminate_backend of the sessions whose application_name starts with the prefix,
    returning once they are gone: pg_terminate_backend only signals the backend, which can
    still answer a query for a moment (in memory, a run's remaining lock checks all fit in
    that moment: the run then rightly finished, the cut having not landed yet)."""
    query = ("FROM pg_stat_activity WHERE datname = %s AND application_name LIKE %s "
             "AND pid <> pg_backend_pid()")
    args = (database, f"{app_prefix}%")
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        rows = conn.execute(f"SELECT pg_terminate_backend(pid) {query}", args).fetchall()
        deadline = time.monotonic() + 10
        while conn.execute(f"SELECT count(*) {query}", args).fetchone() != (0,):
            assert time.monotonic() < deadline, "terminated sessions still there after 10 s"
            time.sleep(0.01)  # polling a condition with a deadline, not a fixed wait
    return len(rows)


def test_a_second_run_is_told_who_runs_the_flow(pg_env: Env) -> None:  # noqa: F811
    holder = Store(pg_env.cfg.state_url)
    holder.lock("f")
    try:
        with pytest.raises(StoreLocked, match=r"already running on syncd run \S+:\d+") as exc:
            pg_env.run()
        assert exc.value.holder is not None and exc.value.holder.startswith("syncd run ")
    finally:
        holder.close()
    assert pg_env.run().result == "ok", "released when the holder closed"


def test_a_run_that_loses_its_lock_stops_writing_and_does_not_advance(
        pg_env: Env, pg_url: str) -> None:  # noqa: F811
    for i in range(5, USERS):
        pg_env.src.put("user", {"uid": f"u{i}", "title": "t"}, f"s{i}")
    database = pg_url.rsplit("/", 1)[1]
    creates = itertools.count(1)  # next() is atomic: creates run on several threads
    cut = threading.Event()

    def cut_on_tenth(_oid: str) -> None:
        """The 10th create cuts the lock session; creates already past their batch's lock
        check wait for the cut (in memory they would all finish before it lands)."""
        n = next(creates)
        if n == 10:
            assert terminate("syncd run ", database) == 1
            cut.set()
        elif n > 10:
            assert cut.wait(30)

    pg_env.dst.faults["create"] = cut_on_tenth
    first = pg_env.run()
    assert first.result == "aborted", first.errors
    assert any("lock of flow 'f'" in e and "was lost" in e for e in first.errors), first.errors
    written = len(pg_env.dst.objects["user"])
    assert 10 <= written <= 10 + 8, "only the batches under way when the lock went"

    st = Store(pg_env.cfg.state_url)
    try:
        (run, *_) = st.recent_runs("f", 1)
        assert run["result"] == "aborted" and "was lost" in (run["error"] or "")
        assert st.cursor_age("f") is None, "the cursor must not advance"
    finally:
        st.close()

    del pg_env.dst.faults["create"]
    again = pg_env.run()
    assert again.result == "ok", again.errors
    names = Counter(str(u.get("userName")) for u in pg_env.dst.objects["user"].values())
    assert len(names) == USERS and max(names.values()) == 1, "no duplicate, nothing lost"
    assert pg_env.ops(pg_env.run()) == []


def test_lock_session_names_holders_counts_daemons_and_notices_loss(pg_url: str) -> None:  # noqa: F811
    st = Store(pg_url)
    database = pg_url.rsplit("/", 1)[1]
    a, b = st._lock_session(DAEMON), st._lock_session(DAEMON)
    try:
        assert a.try_lock(lease_key("x")) and not b.try_lock(lease_key("x"))
        assert not a.try_lock(lease_key("x")), "one process: taken once"
        assert b.holder(lease_key("x")) == a.name and b.holder(lease_key("y")) is None
        assert lease_key("x") != run_key("x")
        assert sorted(a.leases()) == [(a.name, 0), (a.name, 1)], "live daemons, their leases"
        assert a.holds(lease_key("x"))
        assert terminate(DAEMON, database) == 2
        assert not a.holds(lease_key("x")) and not a.alive
        assert b.try_lock(lease_key("x")), "released by PostgreSQL when the session ended"
        assert b.holds(lease_key("x")) and b.generation == 2
    finally:
        a.close()
        b.close()
        st.close()


@pytest.fixture
def session(pg_url: str) -> Iterator[PgLockSession]:  # noqa: F811
    st = Store(pg_url)
    s = st._lock_session(DAEMON)
    yield s
    s.close()
    st.close()


def test_the_lock_session_is_idle_and_ended_by_the_server_when_silent(
        session: PgLockSession) -> None:
    """An idle-in-transaction lock session would pin the vacuum horizon while it lives; and a
    session whose host vanished is ended by the server after LEASE_TIMEOUT_S."""
    assert session.try_lock(run_key("f"))
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        row = conn.execute("SELECT state FROM pg_stat_activity WHERE application_name = %s",
                           (session.name,)).fetchone()
    assert row is not None and row[0] == "idle"
    assert session._query(text("SHOW idle_session_timeout")) == f"{LEASE_TIMEOUT_S}s"


def test_the_status_page_says_which_instance_runs_a_flow(pg_env: Env) -> None:  # noqa: F811
    from syncd.daemon.status_data import gather
    from syncd.daemon.status_page import render

    pg_env.run()
    assert gather(pg_env.cfg).flows[0].runs_on is None, "nobody holds it between runs"
    st = Store(pg_env.cfg.state_url)
    owner = st._lock_session(DAEMON)
    try:
        assert owner.try_lock(lease_key("f"))
        snap = gather(pg_env.cfg)
        assert snap.flows[0].runs_on == owner.name
        assert f"runs on {owner.name}" in render(snap)
    finally:
        owner.close()
        st.close()
