"""`syncd log` and `syncd status --runs/--hide-empty` through the real CLI, on the journal of
real runs with in-memory connectors: creates, an update that went through and one the target
rejected, a run refused by the safety check, a second flow, a run that never finished.

The store's filters against a plain Python filter over random journals are in
test_journal.py; here: what an operator types and reads."""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from syncd.cli.log import parse_when
from syncd.cli.main import main
from syncd.errors import Rejected
from syncd.state.store import Store
from syncd.testing import DIRECTORIES, Directory, directory, fail_with

_n = itertools.count()

CONFIG = """
[state]
url = "sqlite:///{state}"
{keep}
[connectors.src]
type = "memory"
directory = "{src}"
[connectors.dst]
type = "memory"
directory = "{dst}"
[connectors.src2]
type = "memory"
directory = "{src2}"
[connectors.dst2]
type = "memory"
directory = "{dst2}"
[flows.f]
source = "src"
target = "dst"
[flows.f.safety]
max_deprovision = 0
[flows.f.users.mapping]
userName = "uid"
title = "title"
password = {{ const = "{password}" }}
[flows.g]
source = "src2"
target = "dst2"
[flows.g.users.mapping]
userName = "uid"
"""
PASSWORD = "Sup3r-Secret-pw"
TOKEN = "abcdefghijklmnopqrstuvwxyz0123"
#: Source entries s0..s3 (the memory target names its objects u1, u2, ...: no name is an id)
USERS = ("ann", "bob", "cid", "dan")


def cli(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(main, list(args))
    return res.exit_code, res.stdout, res.stderr


@dataclass
class Journal:
    """A config, its store, and what happened in it (run ids by what they did)."""

    config: str
    state: Path
    src: Directory
    dst: Directory
    runs: dict[str, str]

    def log(self, *args: str) -> list[dict[str, Any]]:
        code, out, err = cli("log", "--config", self.config, "-o", "json", *args)
        assert code == 0, (out, err)
        doc = json.loads(out)
        assert doc["state_store"] == f"sqlite:///{self.state}"
        entries: list[dict[str, Any]] = doc["entries"]
        return entries

    def run(self, *args: str) -> int:
        return cli("run", "--config", self.config, *args)[0]


def last_run(state: Path, flow: str) -> str:
    st = Store(f"sqlite:///{state}", readonly=True)
    try:
        return str(st.recent_runs(flow, 1)[0]["id"])
    finally:
        st.close()


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    n = next(_n)
    names = {k: f"log-{k}-{n}" for k in ("src", "dst", "src2", "dst2")}
    state = tmp_path / "state.db"
    path = tmp_path / "syncd.toml"
    path.write_text(CONFIG.format(state=state, keep="", password=PASSWORD, **names))
    src, dst = directory(names["src"]), directory(names["dst"])
    j = Journal(str(path), state, src, dst, {})
    for i, uid in enumerate(USERS):
        src.put("user", {"uid": uid, "title": "t"}, f"s{i}")
    directory(names["src2"]).put("user", {"uid": "gus"}, "gs0")
    assert j.run("--flow", "f") == 0
    j.runs["create"] = last_run(state, "f")
    assert j.run("--flow", "g") == 0
    j.runs["g"] = last_run(state, "g")
    assert j.run("--flow", "f") == 0  # nothing to do: an empty run
    j.runs["empty"] = last_run(state, "f")
    src.put("user", {"uid": "bob", "title": "boss"}, "s1")
    src.put("user", {"uid": "cid", "title": "boss"}, "s2")
    (t2,) = [k for k, v in dst.objects["user"].items() if v["userName"] == "cid"]
    dst.faults["update"] = fail_with(
        lambda: Rejected(f"no: Authorization: Bearer {TOKEN}"), only=t2)
    assert j.run("--flow", "f") == 1
    j.runs["update"] = last_run(state, "f")
    dst.faults.clear()
    src.remove("user", "s3")
    assert j.run("--flow", "f") == 3  # refused: max_deprovision = 0
    j.runs["refused"] = last_run(state, "f")
    yield j
    for name in names.values():
        DIRECTORIES.pop(name, None)


def brief(entries: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    return [(e["op"], e["name"], e["result"], e["run_id"]) for e in entries]


def test_log_shows_every_change_and_the_refused_run_newest_first(journal: Journal) -> None:
    r = journal.runs
    entries = journal.log()
    # changes of one run are applied concurrently: journaled in any order
    got = brief(entries)
    assert got[:2] == [("run", "", "refused", r["refused"]), ("run", "", "failed", r["update"])]
    assert sorted(got[2:4]) == [("update", "bob", "ok", r["update"]),
                                ("update", "cid", "failed", r["update"])]
    assert got[4] == ("create", "gus", "ok", r["g"])
    assert sorted(got[5:]) == [("create", uid, "ok", r["create"]) for uid in USERS]
    refused = entries[0]
    assert refused["flow"] == "f" and "max_deprovision" in refused["error"]
    assert refused["summary"]["plan"]["user"]["deprovision"] == 1
    ats = [e["at"] for e in entries]
    assert ats == sorted(ats, reverse=True)
    update = next(e for e in entries if e["name"] == "bob" and e["op"] == "update")
    assert (update["attrs"], update["before"]) == ({"title": "boss"}, {"title": "t"})
    assert update["source_id"] == "s1" and update["target_id"]
    assert update["result"] == "ok" and update["error"] is None
    failed = next(e for e in entries if e["name"] == "cid" and e["op"] == "update")
    assert failed["error"].startswith("Rejected: no")


def test_each_filter_and_their_combination(journal: Journal) -> None:
    r = journal.runs
    ops = lambda es: [(e["op"], e["name"]) for e in es]  # noqa: E731
    assert {e["flow"] for e in journal.log("--flow", "g")} == {"g"}
    assert ops(journal.log("--flow", "g")) == [("create", "gus")]
    assert sorted(ops(journal.log("--run", r["update"]))) == [
        ("run", ""), ("update", "bob"), ("update", "cid")]
    assert journal.log("--run", r["empty"]) == []  # an ok run that did nothing: no entry
    # an object by name (any case), source id, target id
    bob = [("update", "bob"), ("create", "bob")]
    assert ops(journal.log("--object", "bob")) == bob
    assert ops(journal.log("--object", "BoB")) == bob
    assert ops(journal.log("--object", "s1")) == bob
    target = journal.log("--object", "bob")[0]["target_id"]
    assert ops(journal.log("--object", target)) == bob
    assert journal.log("--object", "nobody") == []
    assert sorted(ops(journal.log("--op", "update"))) == [("update", "bob"), ("update", "cid")]
    assert [e["op"] for e in journal.log("--op", "update", "--op", "run")] == [
        "run", "run", "update", "update"]
    assert [(e["op"], e["result"]) for e in journal.log("--result", "failed")] == [
        ("run", "failed"), ("update", "failed")]
    assert [e["result"] for e in journal.log("--result", "refused")] == ["refused"]
    assert len(journal.log("--result", "ok")) == 6
    assert journal.log("--kind", "group") == []
    assert [e["kind"] for e in journal.log("--kind", "run")] == ["run", "run"]
    # combined: all must hold
    assert ops(journal.log("--flow", "f", "--op", "update", "--result", "ok",
                           "--object", "bob")) == [("update", "bob")]
    assert journal.log("--flow", "g", "--object", "bob") == []
    assert journal.log("--object", "bob", "--op", "run") == []  # runs are not objects


def test_since_until_and_limit(journal: Journal) -> None:
    everything = journal.log()
    update_at = next(e["at"] for e in everything if e["op"] == "update")
    newer = journal.log("--since", update_at)
    assert newer == [e for e in everything if e["at"] >= update_at]
    assert brief(journal.log("--until", update_at)) == brief(
        [e for e in everything if e["at"] < update_at])
    # durations count back from now
    assert journal.log("--since", "1h") == everything
    assert journal.log("--until", "1h") == []
    assert journal.log("--since", "1h", "--until", update_at, "--op", "update") == []
    # limit: the newest N
    assert journal.log("--limit", "3") == everything[:3]
    assert journal.log("--limit", "0") == everything
    assert [e["op"] for e in journal.log("--limit", "1", "--object", "bob")] == ["update"]


def test_text_and_csv_outputs(journal: Journal) -> None:
    code, out, err = cli("log", "--config", journal.config)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"state store: sqlite:///{journal.state}"
    assert "refused" in lines[1] and "max_deprovision" in lines[1]
    assert any("update user bob" in line and '"t" -> "boss"' in line for line in lines)
    assert lines[-1] == 'runs older than 90d and their changes are pruned ' \
                        '(state.journal_keep = "90d")'
    code, out, _ = cli("log", "--config", journal.config, "--limit", "2")
    assert "(the newest 2: --limit N for more, --limit 0 for all)" in out
    code, out, _ = cli("log", "--config", journal.config, "--object", "nobody")
    assert "no entries" in out.splitlines()
    code, out, err = cli("log", "--config", journal.config, "-o", "csv")
    assert code == 0 and f"state store: sqlite:///{journal.state}" in err
    rows = list(csv.DictReader(io.StringIO(out)))
    as_json = journal.log()
    assert [(r["at"], r["op"], r["name"], r["result"], r["run_id"]) for r in rows] == [
        (e["at"], e["op"], e["name"], e["result"], e["run_id"]) for e in as_json]
    assert list(rows[0]) == ["at", "flow", "run_id", "kind", "op", "name", "source_id",
                             "target_id", "result", "error", "reason", "detail"]
    update = next(r for r in rows if r["op"] == "update" and r["result"] == "ok")
    assert json.loads(update["detail"]) == {"attrs": {"title": "boss"},
                                            "before": {"title": "t"}}


def test_no_secret_and_no_password_is_ever_shown(journal: Journal) -> None:
    for fmt in ("text", "json", "csv"):
        code, out, err = cli("log", "--config", journal.config, "-o", fmt, "--limit", "0")
        assert code == 0
        assert PASSWORD not in out + err and TOKEN not in out + err
    creates = journal.log("--op", "create", "--flow", "f")
    assert {e["attrs"]["password"] for e in creates} == {"[redacted]"}
    (failed,) = journal.log("--result", "failed", "--op", "update")
    assert "Bearer [redacted]" in failed["error"] or "[redacted]" in failed["error"]


def test_a_run_that_never_finished_is_in_the_log_as_running(journal: Journal) -> None:
    st = Store(f"sqlite:///{journal.state}")
    try:
        run_id = st.start_run("f")  # a process killed mid-run leaves this behind
    finally:
        st.close()
    (entry,) = journal.log("--result", "running")
    assert (entry["run_id"], entry["op"], entry["flow"]) == (run_id, "run", "f")
    assert journal.log()[0]["run_id"] == run_id


def test_bad_usage_exits_2(journal: Journal) -> None:
    for args in (["--since", "yesterday"], ["--op", "explode"], ["--limit", "-1"],
                 ["--result", "maybe"], ["-o", "xml"]):
        code, _out, err = cli("log", "--config", journal.config, *args)
        assert code == 2, args
    code, _out, err = cli("log", "--config", journal.config, "--since", "yesterday")
    assert "neither a duration" in err


def test_when_forms() -> None:
    now = datetime(2025, 3, 2, 12, 0, tzinfo=UTC)
    assert parse_when("2h", now) == now - timedelta(hours=2)
    assert parse_when("7d", now) == now - timedelta(days=7)
    assert parse_when("1h30m", now) == now - timedelta(minutes=90)
    assert parse_when("2025-03-01", now) == datetime(2025, 3, 1, tzinfo=UTC)
    assert parse_when("2025-03-01T08:00", now) == datetime(2025, 3, 1, 8, tzinfo=UTC)
    assert parse_when("2025-03-01T08:00:00Z", now) == datetime(2025, 3, 1, 8, tzinfo=UTC)
    assert parse_when("2025-03-01T10:00+02:00", now) == datetime(2025, 3, 1, 8, tzinfo=UTC)


def test_log_reads_the_store_without_connector_secrets(tmp_path: Path) -> None:
    """Like status: a shell without the service's credentials can read the log."""
    path = tmp_path / "syncd.toml"
    path.write_text(f'[state]\nurl = "sqlite:///{tmp_path / "s.db"}"\n'
                    '[connectors.corp]\ntype = "ldap"\nurl = "ldap://127.0.0.1:1"\n'
                    'bind_dn = "cn=x"\nbind_password = "file:nowhere"\n'
                    'users = { base = "dc=x" }\n')
    code, out, err = cli("log", "--config", str(path))
    assert code == 0, err
    assert out.splitlines()[:2] == [f"state store: sqlite:///{tmp_path / 's.db'}",
                                    "no entries"]
    assert not (tmp_path / "s.db").exists()  # read-only: nothing created


def test_status_runs_and_hide_empty(journal: Journal) -> None:
    def runs(*args: str) -> list[str]:
        code, out, err = cli("status", "--config", journal.config, "-o", "json", *args)
        assert code == 0, err
        return [r["id"] for r in json.loads(out)["f"]["runs"]]

    r = journal.runs
    assert runs() == [r["refused"], r["update"], r["empty"], r["create"]]
    assert runs("--runs", "2") == [r["refused"], r["update"]]
    assert runs("--hide-empty") == [r["refused"], r["update"], r["create"]]
    assert runs("--hide-empty", "--runs", "3") == [r["refused"], r["update"], r["create"]]
    assert runs("--runs", "0") == []
    for _ in range(6):  # more empty runs than a page of --runs 5
        assert journal.run("--flow", "f", "--allow-deletes") in (0, 1)
    assert len(runs()) == 5
    shown = runs("--hide-empty")
    assert r["update"] in shown and all(x not in shown for x in (r["empty"],))
    code, out, _ = cli("status", "--config", journal.config, "--hide-empty", "--runs", "1")
    assert code == 0 and out.count(" applied, ") == 2  # one run per flow
