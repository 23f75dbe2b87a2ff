"""The state store's second backend: the engine on PostgreSQL (127.0.0.1:5432, the machine's
server), in a database created for the test and dropped after it. Same scenarios as SQLite:
links and upserts, cursors, pending retries, the per-flow advisory lock, conflicts."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from syncd import config
from syncd.errors import Rejected, StoreLocked
from syncd.state.store import Store
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
    monkeypatch.setattr("syncd.state.records.BACKOFF_BASE", 0.0)
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


# -- the password as a secret reference ---------------------------------------------------------


def _with_state(env: Env, url: str, password: str | None) -> Path:
    """Env's config pointed at `url`, the password (if any) as ``[state] password``."""
    path = env.tmp / "c.toml"
    state = f'url = "{url}"' + (f'\npassword = "{password}"' if password else "")
    path.write_text(path.read_text().replace(f'url = "sqlite:///{env.state}"', state))
    return path


@pytest.fixture
def pw_env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    e.src.put("user", {"uid": "u0", "title": "t"}, "s0")
    yield e
    DIRECTORIES.pop(e.src_name, None)
    DIRECTORIES.pop(e.dst_name, None)


def test_password_from_env_on_the_local_server(pw_env: Env,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A role with a password and its own database on the machine's server. (That server
    trusts 127.0.0.1, so a wrong password is tested on a private instance below.)"""
    role, secret = f"syncd_pw_{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{secret}'")
        conn.execute(f'CREATE DATABASE "{role}" OWNER "{role}"')
    try:
        monkeypatch.setenv("PGPASS", secret)
        cfg = config.load(_with_state(
            pw_env, f"postgresql+psycopg://{role}@127.0.0.1:5432/{role}", "env:PGPASS"))
        assert secret not in cfg.state_url
        pw_env.cfg = cfg
        assert pw_env.run().result == "ok"
        st = Store(cfg.state_url)
        try:
            assert st.link_counts("f") == {"user": {"active": 1}}
            assert secret not in st.url and secret not in st.url_safe
        finally:
            st.close()
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{role}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None)
PRIVATE_PASSWORD = f"Pg-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def scram_server() -> Iterator[str]:
    """A private PostgreSQL that checks passwords (scram-sha-256) on a free 127.0.0.1 port;
    `pg_ctl -w` returns once it accepts connections. Stopped and removed afterwards."""
    if PG_BIN is None or os.geteuid() != 0:
        pytest.skip("needs PostgreSQL's server binaries and root (to run them as postgres)")
    import pwd
    import shutil
    import socket
    import subprocess
    import tempfile

    try:
        pg = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no postgres user")
    base = Path(tempfile.mkdtemp(prefix="syncd-pg-"))
    os.chown(base, pg.pw_uid, pg.pw_gid)
    (base / "pw").write_text(PRIVATE_PASSWORD)
    os.chown(base / "pw", pg.pw_uid, pg.pw_gid)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    as_pg = ["runuser", "-u", "postgres", "--"]
    data = base / "data"
    try:
        subprocess.run([*as_pg, str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres",
                        "--auth=scram-sha-256", f"--pwfile={base / 'pw'}"],
                       check=True, capture_output=True)
        subprocess.run([*as_pg, str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-l",
                        str(base / "log"), "-o",
                        f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off",
                        "start"], check=True, capture_output=True)
        try:
            admin = f"postgresql://postgres:{PRIVATE_PASSWORD}@127.0.0.1:{port}/postgres"
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute("CREATE DATABASE syncd")
            yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/syncd"
        finally:
            subprocess.run([*as_pg, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m",
                            "immediate", "stop"], capture_output=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_password_from_env_is_used_and_a_wrong_one_is_a_clear_error(
        scram_server: str, pw_env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from syncd.cli.main import main

    path = _with_state(pw_env, scram_server, "env:PGPASS")
    monkeypatch.setenv("PGPASS", PRIVATE_PASSWORD)
    res = CliRunner().invoke(main, ["run", "--config", str(path)])
    assert res.exit_code == 0, res.output
    wrong = "Wrong-" + PRIVATE_PASSWORD[::-1]
    monkeypatch.setenv("PGPASS", wrong)
    for command in (["run"], ["status"]):
        res = CliRunner().invoke(main, [*command, "--config", str(path)])
        assert isinstance(res.exception, SystemExit) and res.exit_code == 1, res.output
        assert "authentication failed" in res.stderr and scram_server in res.stderr
        assert wrong not in res.output and PRIVATE_PASSWORD not in res.output
