"""A state store that cannot be opened or written is one clear line and exit 1 — for `run`,
`status`, `validate` and `daemon` — never a traceback; a store this process created and could
not initialise is removed again; the store's files are private (0600) whatever the umask;
error texts the store keeps are capped.

Permission tests run as `nobody` (seteuid) when the suite runs as root, since root ignores
file modes. Disk full is tested twice: with a real full tmpfs (root only: mounted and
unmounted by the test) and, everywhere, by injecting SQLite's own
``sqlite3.OperationalError("database or disk is full")`` at SQLAlchemy's DBAPI execute hooks.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, event

from syncd.cli.main import main
from syncd.daemon.service import Daemon
from syncd.state.store import Store
from syncd.testing import DIRECTORIES, directory

CONFIG = """
[state]
url = "{url}"
[connectors.src]
type = "memory"
directory = "{src}"
[connectors.dst]
type = "memory"
directory = "{dst}"
[flows.f]
source = "src"
target = "dst"
[flows.f.users.mapping]
userName = "uid"
title = "title"
"""

COMMANDS = {
    "run": ["run"],
    "dry-run": ["run", "--dry-run"],
    "status": ["status"],
    "validate": ["validate"],
    "daemon": ["daemon"],
}


@pytest.fixture
def names() -> Iterator[tuple[str, str]]:
    src, dst = f"so-src-{uuid.uuid4().hex[:8]}", f"so-dst-{uuid.uuid4().hex[:8]}"
    directory(src).put("user", {"uid": "ann", "title": "t"}, "s1")
    directory(dst)
    yield src, dst
    DIRECTORIES.pop(src, None)
    DIRECTORIES.pop(dst, None)


@pytest.fixture(autouse=True)
def _daemon_never_schedules(monkeypatch: pytest.MonkeyPatch) -> None:
    """`syncd daemon` must stop before scheduling; if it got that far, fail, don't block."""

    def started(self: Daemon) -> int:
        raise AssertionError("the daemon started with a state store it cannot use")

    monkeypatch.setattr(Daemon, "run", started)


def write_config(where: Path, url: str, names: tuple[str, str]) -> Path:
    cfg = where / "syncd.toml"
    cfg.write_text(CONFIG.format(url=url, src=names[0], dst=names[1]))
    cfg.chmod(0o644)
    return cfg


def invoke(command: str, cfg: Path) -> Result:
    return CliRunner().invoke(main, [*COMMANDS[command], "--config", str(cfg)])


def assert_clear_failure(res: Result, *needles: str) -> None:
    """Exit 1 through our own handling (SystemExit, not an escaped exception)."""
    assert isinstance(res.exception, SystemExit), res.exc_info
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.stderr
    for needle in needles:
        assert needle in res.stderr, res.stderr


# -- corrupt file -------------------------------------------------------------------------------


@pytest.mark.parametrize("command", list(COMMANDS))
def test_corrupt_sqlite_file_is_a_clear_error(tmp_path: Path, names: tuple[str, str],
                                              command: str) -> None:
    state = tmp_path / "state.db"
    garbage = os.urandom(8192)
    state.write_bytes(garbage)
    res = invoke(command, write_config(tmp_path, f"sqlite:///{state}", names))
    assert_clear_failure(res, str(state), "not an SQLite database")
    assert state.read_bytes() == garbage  # nothing written into it


# -- permissions --------------------------------------------------------------------------------


@contextlib.contextmanager
def unprivileged() -> Iterator[None]:
    """Act as `nobody` while inside (root bypasses file modes); ordinary users just are."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.fixture
def world() -> Iterator[Path]:
    """A directory `nobody` can reach (pytest's tmp_path is private to root)."""
    d = Path(tempfile.mkdtemp(prefix="syncd-perm-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("command", ["run", "validate", "daemon"])
def test_unwritable_directory_is_a_clear_error(world: Path, names: tuple[str, str],
                                               command: str) -> None:
    locked = world / "locked"
    locked.mkdir(mode=0o555)
    locked.chmod(0o555)
    cfg = write_config(world, f"sqlite:///{locked / 'state.db'}", names)
    with unprivileged():
        res = invoke(command, cfg)
    assert_clear_failure(res, str(locked / "state.db"), "not writable")
    assert list(locked.iterdir()) == []


@pytest.mark.parametrize("command", ["run", "validate", "daemon"])
def test_unwritable_store_file_is_a_clear_error(world: Path, names: tuple[str, str],
                                                command: str) -> None:
    open_dir = world / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    state = open_dir / "state.db"
    Store(f"sqlite:///{state}").close()  # a valid store, owned by us
    state.chmod(0o444)
    before = state.read_bytes()
    cfg = write_config(world, f"sqlite:///{state}", names)
    with unprivileged():
        res = invoke(command, cfg)
    assert_clear_failure(res, str(state), "not writable")
    assert state.read_bytes() == before


# -- disk full ----------------------------------------------------------------------------------


@contextlib.contextmanager
def disk_full_on(statements: tuple[str, ...]) -> Iterator[None]:
    """SQLite's own "disk full" error, raised where the DBAPI would execute these
    statements (matched on their start), for every engine while inside."""

    def boom(*args: Any) -> None:
        statement = args[1]
        if statement.lstrip().upper().startswith(statements):
            raise sqlite3.OperationalError("database or disk is full")

    hooks = ("do_execute", "do_execute_no_params", "do_executemany")
    for hook in hooks:
        event.listen(Engine, hook, boom)
    try:
        yield
    finally:
        for hook in hooks:
            event.remove(Engine, hook, boom)


@pytest.mark.parametrize("command", ["run", "daemon"])
def test_disk_full_when_creating_the_store_leaves_nothing(tmp_path: Path,
                                                          names: tuple[str, str],
                                                          command: str) -> None:
    state = tmp_path / "state.db"
    cfg = write_config(tmp_path, f"sqlite:///{state}", names)
    with disk_full_on(("CREATE",)):
        res = invoke(command, cfg)
    assert_clear_failure(res, str(state), "disk full")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["syncd.toml"]  # no half store


def test_disk_full_during_a_run_is_a_clear_error(tmp_path: Path,
                                                 names: tuple[str, str]) -> None:
    state = tmp_path / "state.db"
    cfg = write_config(tmp_path, f"sqlite:///{state}", names)
    Store(f"sqlite:///{state}").close()
    with disk_full_on(("INSERT INTO LINK",)):
        res = invoke("run", cfg)
    assert_clear_failure(res, str(state), "disk full")
    st = Store(f"sqlite:///{state}", readonly=True)
    try:
        (run,) = st.recent_runs("f")
        assert run["result"] == "failed" and "disk full" in run["error"]
        assert st.link_counts("f") == {}  # the failed write left no partial rows
    finally:
        st.close()


@pytest.fixture
def full_tmpfs() -> Iterator[Path]:
    """A real, full filesystem: a 256 KiB tmpfs filled up (needs root; unmounted after)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    d = Path(tempfile.mkdtemp(prefix="syncd-full-"))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs",
                           str(d)], capture_output=True)
    if done.returncode != 0:
        d.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        with contextlib.suppress(OSError), (d / "filler").open("wb", buffering=0) as fh:
            while True:
                fh.write(b"\0" * 4096)
        yield d
    finally:
        if subprocess.run(["umount", str(d)]).returncode != 0:
            subprocess.run(["umount", "-l", str(d)])
        d.rmdir()


def test_a_really_full_disk_is_a_clear_error(full_tmpfs: Path, tmp_path: Path,
                                             names: tuple[str, str]) -> None:
    state = full_tmpfs / "state.db"
    res = invoke("run", write_config(tmp_path, f"sqlite:///{state}", names))
    assert_clear_failure(res, str(state), "disk full")
    assert sorted(p.name for p in full_tmpfs.iterdir()) == ["filler"]


# -- PostgreSQL down ----------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once the socket is closed


@pytest.mark.parametrize("command", ["run", "dry-run", "status", "daemon"])
def test_postgresql_down_is_a_clear_error_without_the_password(
        tmp_path: Path, names: tuple[str, str], command: str) -> None:
    url = f"postgresql+psycopg://syncd:Hunter2-pw@127.0.0.1:{closed_port()}/syncd"
    res = invoke(command, write_config(tmp_path, url, names))
    assert_clear_failure(res, "syncd:***@127.0.0.1", "cannot connect")
    assert "Hunter2-pw" not in res.output


def test_a_password_a_driver_echoes_is_masked_in_store_errors() -> None:
    from pydantic import SecretStr

    from syncd.state.opening import reason

    echoed = Exception('FATAL:  password "Hunter2-pw" rejected for user "syncd"')
    text = reason(echoed, SecretStr("Hunter2-pw"))
    assert "Hunter2-pw" not in text and 'password "***"' in text


# -- private files ------------------------------------------------------------------------------


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o277])
def test_store_files_are_private_whatever_the_umask(tmp_path: Path, names: tuple[str, str],
                                                    umask: int) -> None:
    state = tmp_path / "state.db"
    cfg = write_config(tmp_path, f"sqlite:///{state}", names)
    old = os.umask(umask)
    try:
        assert invoke("run", cfg).exit_code == 0
        watcher = Store(f"sqlite:///{state}")  # keeps -wal and -shm around after the run
        try:
            assert watcher.link_counts("f") == {"user": {"active": 1}}
            directory(names[0]).put("user", {"uid": "bob", "title": "t"}, "s2")
            assert invoke("run", cfg).exit_code == 0
            files = [state, tmp_path / "state.db-wal", tmp_path / "state.db-shm",
                     tmp_path / "state.db.f.lock"]
            assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}
        finally:
            watcher.close()
    finally:
        os.umask(old)


# -- error texts the store keeps ----------------------------------------------------------------


def test_error_texts_are_capped_in_the_store(tmp_path: Path) -> None:
    st = Store(f"sqlite:///{tmp_path / 's.db'}")
    huge = "<html>" + "x" * 50_000 + "</html>"
    try:
        run_id = st.start_run("f")
        st.log_changes([{"run_id": run_id, "flow": "f", "kind": "user", "op": "create",
                         "source_id": "s1", "target_id": None, "name": "ann", "detail": "{}",
                         "result": "failed", "error": huge}])
        st.record_failures("f", [{"kind": "user", "source_id": "s1", "name": "ann",
                                  "op": "create", "error_class": "Rejected", "error": huge}])
        st.finish_run(run_id, "failed", {}, huge)
        kept = [st.recent_runs("f")[0]["error"], st.history("f", "s1")[0]["error"],
                st.pending("f")["s1"].error]
    finally:
        st.close()
    for text in kept:
        assert len(text) <= 2000
        assert text.startswith("<html>xxx") and "truncated, 50013 characters" in text
