"""The state store's second backend: the engine on PostgreSQL (127.0.0.1:5432, the machine's
server), in a database created for the test and dropped after it. Same scenarios as SQLite:
links and upserts, cursors, pending retries, the per-flow advisory lock, conflicts."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from syncd import config
from syncd.errors import Rejected, StoreLocked
from syncd.store import Store
from syncd.testing import DIRECTORIES, fail_with
from tests.unit.test_engine import Env

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def pg_url() -> Iterator[str]:
    name = f"syncd_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_env(tmp_path: Path, pg_url: str) -> Iterator[Env]:
    e = Env(tmp_path)
    text = (tmp_path / "c.toml").read_text()
    (tmp_path / "c.toml").write_text(text.replace(f'url = "sqlite:///{e.state}"',
                                                  f'url = "{pg_url}"'))
    e.cfg = config.load(tmp_path / "c.toml")
    for i in range(5):
        e.src.put("user", {"uid": f"u{i}", "title": "t"}, f"s{i}")
    yield e
    DIRECTORIES.pop(e.src_name, None)
    DIRECTORIES.pop(e.dst_name, None)


def test_engine_on_postgresql(pg_env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("syncd.store_state.BACKOFF_BASE", 0.0)
    assert pg_env.cfg.state_url.startswith("postgresql")
    first = pg_env.run()
    assert first.result == "ok" and len(pg_env.dst.objects["user"]) == 5
    pg_env.src.put("user", {"uid": "u1", "title": "boss"}, "s1")
    pg_env.dst.faults["update"] = fail_with(lambda: Rejected("no"), times=1)
    assert pg_env.run().result == "failed"
    retried = pg_env.run()
    assert retried.reads["user"] == "incremental"
    assert pg_env.ops(retried) == [("update", "u1")]
    assert pg_env.target_user("u1")["title"] == "boss"
    assert pg_env.ops(pg_env.run()) == []
    st = Store(pg_env.cfg.state_url)
    try:
        assert st.link_counts("f") == {"user": {"active": 5}}
        assert st.pending("f") == {}
        assert st.cursor_age("f") is not None
        assert [r["result"] for r in st.recent_runs("f", 10)].count("ok") == 3
    finally:
        st.close()


def test_advisory_lock_keeps_one_run_per_flow(pg_env: Env) -> None:
    holder = Store(pg_env.cfg.state_url)
    holder.lock("f")
    try:
        with pytest.raises(StoreLocked, match="already running"):
            pg_env.run()
    finally:
        holder.close()
    assert pg_env.run().result == "ok"
