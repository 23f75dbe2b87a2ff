"""The provisioning log and journal pruning on PostgreSQL (127.0.0.1:5432, a database created
for each test and dropped after it): the same properties as on SQLite (names in ASCII: SQL
lower() folds only ASCII letters on SQLite, every letter on PostgreSQL), the indexes created
on a store from before them, and `syncd log` on the journal of real runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import text

from syncd.cli.main import main
from syncd.errors import Rejected
from syncd.state.journal import LogQuery
from syncd.state.store import Store
from syncd.testing import fail_with
from tests.e2e.test_postgres_store import pg_env, pg_url  # noqa: F401  (fixtures)
from tests.unit.test_engine import Env
from tests.unit.test_journal import (
    NEW_INDEXES,
    Journal,
    check_log_equals_python_filter,
    check_prune,
    load,
)

ASCII_NAMES = ("ann", "Ann", "ANN", "bob", "uid=ann,ou=people,dc=example,dc=com",
               "UID=ANN,OU=People,dc=example,dc=com", "")


def test_log_equals_a_python_filter_on_postgresql(pg_url: str) -> None:  # noqa: F811
    check_log_equals_python_filter(pg_url, ASCII_NAMES)


def test_prune_on_postgresql(pg_url: str) -> None:  # noqa: F811
    check_prune(pg_url)


def test_prune_keeps_each_flows_last_run_on_postgresql(pg_url: str) -> None:  # noqa: F811
    now = datetime.now(UTC)
    runs = [{"id": f"r{i}", "flow": flow, "started_at": now - timedelta(days=days),
             "finished_at": None, "result": "ok", "summary": "{}", "error": None}
            for i, (flow, days) in enumerate([("a", 200), ("a", 100), ("a", 1), ("b", 300)])]
    changes = [{"id": i, "run_id": f"r{i % 4}", "flow": "a" if i % 4 < 3 else "b",
                "kind": "user", "op": "update", "source_id": f"s{i}", "target_id": None,
                "name": f"u{i}", "detail": "{}", "result": "applied", "error": None,
                "at": now - timedelta(days=1)} for i in range(1, 41)]
    store = Store(pg_url)
    try:
        load(store, Journal(runs, changes))
        assert store.prune_journal(now - timedelta(days=90)) == (2, 20)
        assert {e.run_id for e in store.log(LogQuery(limit=None))} == {"r2", "r3"}
    finally:
        store.close()


def test_a_store_from_before_the_indexes_gets_them_on_postgresql(
        pg_url: str) -> None:  # noqa: F811
    def names(store: Store) -> set[str]:
        assert store.engine is not None
        with store.engine.connect() as conn:
            return {r[0] for r in conn.execute(text(
                "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"))}

    store = Store(pg_url)
    assert store.engine is not None
    with store.engine.begin() as conn:
        for name in NEW_INDEXES:
            conn.execute(text(f"DROP INDEX {name}"))
    assert not NEW_INDEXES & names(store)
    store.close()
    store = Store(pg_url)
    try:
        assert names(store) >= NEW_INDEXES
    finally:
        store.close()


def test_syncd_log_on_postgresql(pg_env: Env) -> None:  # noqa: F811
    assert pg_env.run().result == "ok"  # creates u0..u4
    pg_env.src.put("user", {"uid": "u1", "title": "boss"}, "s1")
    pg_env.dst.faults["update"] = fail_with(lambda: Rejected("no"))
    assert pg_env.run().result == "failed"
    config = str(Path(pg_env.tmp) / "c.toml")
    res = CliRunner().invoke(main, ["log", "--config", config, "-o", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["state_store"].startswith("postgresql")
    got = [(e["op"], e["name"], e["result"]) for e in doc["entries"]]
    assert got[:2] == [("run", "", "failed"), ("update", "u1", "failed")]
    assert sorted(got[2:]) == [("create", f"u{i}", "ok") for i in range(5)]
    res = CliRunner().invoke(main, ["log", "--config", config, "-o", "json",
                                    "--object", "U1", "--result", "failed"])
    assert [e["op"] for e in json.loads(res.stdout)["entries"]] == ["update"]
