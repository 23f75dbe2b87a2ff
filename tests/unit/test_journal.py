"""The run journal as the provisioning log: `Store.log` returns exactly what a plain Python
filter over all entries returns (Hypothesis, random journals and queries), pruning deletes
exactly the old runs and their changes but never a flow's last run, the queries use indexes
(also on a store made before the indexes existed), and `[state] journal_keep` is checked at
load. The daemon's pruning: test_daemon_prune.py.

The journals are written through the store: runs as rows, changes through `log_changes` (its
bulk insert, with their own ids and times). `check_*` take a store URL, so the PostgreSQL tests
(tests/e2e/test_postgres_log.py) run the same properties there."""

from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, event, text

from syncd import config
from syncd.errors import ConfigError
from syncd.plan.value import OPS
from syncd.state import schema
from syncd.state.journal import RESULTS, LogEntry, LogQuery
from syncd.state.store import Store

T0 = datetime(2025, 3, 1, tzinfo=UTC)
FLOWS = ("a", "b", "c")
RUN_RESULTS = ("ok", "failed", "refused", "aborted", "running")
NAMES = ("ann", "Ann", "ANN", "bob", "uid=ann,ou=people,dc=example,dc=com",
         "UID=ANN,OU=People,dc=example,dc=com", "", "Émile", "émile")
IDS = ("s1", "s2", "t1", "ann", "bob")
_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
PROPERTY = settings(max_examples=150, derandomize=True, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def at(k: int) -> datetime:
    return T0 + timedelta(seconds=k)


@dataclass
class Journal:
    runs: list[dict[str, Any]] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)


@st.composite
def journals(draw: st.DrawFn, names: tuple[str, ...] = NAMES) -> Journal:
    j = Journal()
    seq = 0
    for i in range(draw(st.integers(0, 8))):
        started = draw(st.integers(0, 20))  # few distinct times: ties happen
        result = draw(st.sampled_from(RUN_RESULTS))
        finished = None if result == "running" else started + draw(st.integers(0, 4))
        run = {"id": f"r{i}", "flow": draw(st.sampled_from(FLOWS)), "started_at": at(started),
               "finished_at": None if finished is None else at(finished), "result": result,
               "summary": "{}", "error": draw(st.sampled_from([None, f"why {i}"]))}
        j.runs.append(run)
        for _ in range(draw(st.integers(0, 5))):
            seq += 1
            j.changes.append({
                "id": seq, "run_id": run["id"], "flow": run["flow"],
                "kind": draw(st.sampled_from(["user", "group"])),
                "op": draw(st.sampled_from(OPS)),
                "source_id": draw(st.sampled_from(IDS)),
                "target_id": draw(st.sampled_from([None, *IDS])),
                "name": draw(st.sampled_from(names)), "detail": "{}",
                "result": draw(st.sampled_from(["applied", "failed"])),
                "error": draw(st.sampled_from([None, "Rejected: no"])),
                "at": at(started + draw(st.integers(0, 1)))})  # ties
    return j


def subsets(values: tuple[str, ...]) -> st.SearchStrategy[frozenset[str]]:
    return st.frozensets(st.sampled_from(values), min_size=1, max_size=3)


def sometimes(values: st.SearchStrategy[Any], empty: Any = None) -> st.SearchStrategy[Any]:
    """A filter that is mostly absent: queries with every filter set match nothing."""
    return st.sampled_from([False, False, True]).flatmap(
        lambda on: values if on else st.just(empty))


@st.composite
def queries(draw: st.DrawFn, names: tuple[str, ...] = NAMES) -> LogQuery:
    since = draw(sometimes(st.integers(0, 25)))
    until = draw(sometimes(st.integers(0, 25)))
    return LogQuery(
        flow=draw(sometimes(st.sampled_from([*FLOWS, "zzz"]))),
        run_id=draw(sometimes(st.sampled_from(["r0", "r1", "r2", "r9"]))),
        object=draw(sometimes(st.sampled_from([*names, *IDS, "nobody"]))),
        ops=draw(sometimes(subsets((*OPS, "run")), frozenset())),
        results=draw(sometimes(subsets(RESULTS), frozenset())),
        kinds=draw(sometimes(subsets(("user", "group", "run")), frozenset())),
        since=None if since is None else at(since), until=None if until is None else at(until),
        limit=draw(st.none() | st.integers(1, 12)))


def entries(j: Journal) -> list[LogEntry]:
    """Every entry of the provisioning log, by its definition: each change, and each run that
    did not end ok (at its end, or its start while it runs)."""
    out = [LogEntry(c["at"], c["flow"], c["run_id"], c["kind"], c["op"], c["name"],
                    c["source_id"], c["target_id"],
                    "ok" if c["result"] == "applied" else c["result"], c["error"], {}, c["id"])
           for c in j.changes]
    out += [LogEntry(r["finished_at"] or r["started_at"], r["flow"], r["id"], "run", "run", "",
                     None, None, r["result"], r["error"], {})
            for r in j.runs if r["result"] != "ok"]
    return out


def matches(e: LogEntry, q: LogQuery) -> bool:
    def lower(s: str) -> str:  # SQL lower(): ASCII letters (SQLite)
        return s.translate(_LOWER)

    return ((q.flow is None or e.flow == q.flow)
            and (q.run_id is None or e.run_id == q.run_id)
            and (q.object is None or (e.kind != "run" and (
                q.object in (e.source_id, e.target_id) or lower(e.name) == lower(q.object))))
            and (not q.ops or e.op in q.ops)
            and (not q.kinds or e.kind in q.kinds)
            and (not q.results or e.result in q.results)
            and (q.since is None or e.at >= q.since)
            and (q.until is None or e.at < q.until))


def expected(j: Journal, q: LogQuery) -> list[LogEntry]:
    hits = sorted((e for e in entries(j) if matches(e, q)), key=LogEntry.order, reverse=True)
    return hits if q.limit is None else hits[:q.limit]


def key(e: LogEntry) -> tuple[Any, ...]:
    return (e.at, e.flow, e.run_id, e.kind, e.op, e.name, e.source_id, e.target_id,
            e.result, e.error, e.seq)


def load(store: Store, j: Journal) -> None:
    """Replace the store's journal with `j`: runs as rows, changes through the bulk insert."""
    assert store.engine is not None
    runs, changes = schema.run, schema.change
    with store.engine.begin() as conn:
        conn.execute(delete(changes))
        conn.execute(delete(runs))
        if j.runs:
            conn.execute(runs.insert(), j.runs)
    store.log_changes(j.changes)


def run_property(url: str, prop: Callable[[Store], Callable[..., None]]) -> None:
    store = Store(url)
    try:
        prop(store)()
    finally:
        store.close()


def check_log_equals_python_filter(url: str, names: tuple[str, ...] = NAMES) -> None:
    def prop(store: Store) -> Callable[..., None]:
        @PROPERTY
        @given(j=journals(names), qs=st.lists(queries(names), min_size=1, max_size=8))
        def inner(j: Journal, qs: list[LogQuery]) -> None:
            load(store, j)
            for q in qs:
                assert [key(e) for e in store.log(q)] == [key(e) for e in expected(j, q)], q
        return inner

    run_property(url, prop)


def check_prune(url: str) -> None:
    def prop(store: Store) -> Callable[..., None]:
        @PROPERTY
        @given(j=journals(), cutoff=st.integers(0, 26))
        def inner(j: Journal, cutoff: int) -> None:
            load(store, j)
            doomed = {r["id"] for r in j.runs if r["started_at"] < at(cutoff) and any(
                o["flow"] == r["flow"] and o["started_at"] > r["started_at"] for o in j.runs)}
            gone = [c for c in j.changes if c["run_id"] in doomed]
            assert store.prune_journal(at(cutoff)) == (len(doomed), len(gone))
            left = Journal([r for r in j.runs if r["id"] not in doomed],
                           [c for c in j.changes if c["run_id"] not in doomed])
            everything = LogQuery(limit=None)
            assert [key(e) for e in store.log(everything)] == [
                key(e) for e in expected(left, everything)]
            assert store.engine is not None
            with store.engine.connect() as conn:
                kept = {r[0] for r in conn.execute(text("SELECT id FROM run"))}
            assert kept == {r["id"] for r in left.runs}
            for flow in {r["flow"] for r in j.runs}:  # each flow's last run stays
                newest = max(r["started_at"] for r in j.runs if r["flow"] == flow)
                assert {r["id"] for r in j.runs if r["flow"] == flow
                        and r["started_at"] == newest} <= kept
        return inner

    run_property(url, prop)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


def test_log_returns_exactly_what_a_python_filter_returns(url: str) -> None:
    check_log_equals_python_filter(url)


def test_prune_deletes_exactly_the_old_runs_and_keeps_each_flows_last(url: str) -> None:
    check_prune(url)


def test_prune_in_words(url: str) -> None:
    now = datetime.now(UTC)
    j = Journal()
    for i, (flow, days, result) in enumerate([("a", 200, "ok"), ("a", 100, "refused"),
                                              ("a", 1, "ok"), ("b", 300, "ok"),
                                              ("b", 150, "aborted")]):
        started = now - timedelta(days=days)
        j.runs.append({"id": f"r{i}", "flow": flow, "started_at": started,
                       "finished_at": started, "result": result, "summary": "{}",
                       "error": None})
        j.changes += [{"id": i * 10 + k, "run_id": f"r{i}", "flow": flow, "kind": "user",
                       "op": "update", "source_id": f"s{k}", "target_id": None, "name": "",
                       "detail": "{}", "result": "applied", "error": None,
                       "at": started} for k in range(3)]
    store = Store(url)
    try:
        load(store, j)
        # a: r0 and r1 are older than 90 days, r2 is not; b: r3 goes, r4 is b's last run
        assert store.prune_journal(now - timedelta(days=90)) == (3, 9)
        left = store.log(LogQuery(limit=None))
        assert sorted({e.run_id for e in left}) == ["r2", "r4"]
        assert store.prune_journal(now - timedelta(days=90)) == (0, 0)
        assert store.prune_journal(now) == (0, 0)  # r2 and r4 are their flows' last runs
    finally:
        store.close()


def test_status_runs_skip_empty_runs_across_pages(url: str) -> None:
    store = Store(url)
    try:
        busy = {"id": "busy", "flow": "f", "started_at": at(0), "finished_at": at(1),
                "result": "ok", "summary": '{"plan": {"user": {"create": 1}}, "applied": 1}',
                "error": None}
        idle = [{"id": f"idle{i:03d}", "flow": "f", "started_at": at(10 + i),
                 "finished_at": at(10 + i), "result": "ok",
                 "summary": '{"plan": {"user": {"create": 0}}, "applied": 0, "failed": 0}',
                 "error": None} for i in range(450)]
        refused = {**idle[0], "id": "refused", "started_at": at(5), "result": "refused"}
        load(store, Journal([busy, refused, *idle]))
        assert [r["id"] for r in store.runs("f", 2)] == ["idle449", "idle448"]
        assert [r["id"] for r in store.runs("f", 5, hide_empty=True)] == ["refused", "busy"]
        assert [r["id"] for r in store.runs("f", 1, hide_empty=True)] == ["refused"]
        assert len(store.runs("f", 1000)) == 452
    finally:
        store.close()


# -- indexes ---------------------------------------------------------------------------------
NEW_INDEXES = {"ix_change_at", "ix_change_flow_at", "ix_change_op_at", "ix_change_result_at",
               "ix_change_target_id", "ix_change_name_lower", "ix_run_started_at",
               "ix_run_result", "ix_run_flow_started_at"}


def index_names(store: Store) -> set[str]:
    assert store.engine is not None
    with store.engine.connect() as conn:
        return {r[0] for r in conn.execute(text(
            "SELECT name FROM sqlite_master WHERE type = 'index'"))}


def test_a_store_from_before_the_indexes_gets_them_when_opened(url: str) -> None:
    store = Store(url)
    assert store.engine is not None
    with store.engine.begin() as conn:
        for name in NEW_INDEXES:
            conn.execute(text(f"DROP INDEX {name}"))
    assert not NEW_INDEXES & index_names(store)
    store.close()
    Store(url, readonly=True).close()  # a reader creates nothing
    store = Store(url)
    try:
        assert index_names(store) >= NEW_INDEXES
    finally:
        store.close()


FILTERS = {
    "newest": LogQuery(),
    "flow": LogQuery(flow="a"),
    "run": LogQuery(run_id="r1"),
    "object": LogQuery(object="Ann"),
    "op": LogQuery(ops=frozenset({"deprovision", "delete"})),
    "result": LogQuery(results=frozenset({"failed"})),
    "since": LogQuery(since=at(5)),
    "until": LogQuery(until=at(5)),
    "object+since": LogQuery(object="s1", since=at(3)),
}


@pytest.mark.parametrize("name", FILTERS)
def test_every_filter_is_an_index_search_not_a_table_scan(url: str, name: str) -> None:
    """EXPLAIN QUERY PLAN of each statement `log` sends: no full scan of a journal table
    (a scan of an index, in its order, for the newest N is fine)."""
    store = Store(url)
    assert store.engine is not None
    sent: list[tuple[str, Any]] = []
    event.listen(store.engine, "before_cursor_execute",
                 lambda _c, _cur, stmt, params, _ctx, _many: sent.append((stmt, params)))
    try:
        store.log(FILTERS[name])
        assert sent
        with store.engine.connect() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            for stmt, params in sent:
                plan = [row[3] for row in raw.execute(f"EXPLAIN QUERY PLAN {stmt}", params)]
                scans = [p for p in plan if p.startswith("SCAN") and "INDEX" not in p]
                assert not scans, (stmt, plan)
    finally:
        store.close()


# -- config ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "seconds"), [
    (None, 90 * 86400), ('"30d"', 30 * 86400), ('"12w"', 12 * 7 * 86400),
    ('"forever"', None), ('"Forever"', None)])
def test_journal_keep_values(tmp_path: Path, value: str | None, seconds: float | None) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[state]\n" + (f"journal_keep = {value}\n" if value else ""))
    assert config.load(path).journal_keep_seconds == seconds


@pytest.mark.parametrize(("value", "why"), [
    ('"0"', "no unit"), ('"90"', "no unit"), ('"0d"', "keep no history"),
    ('"soon"', "neither a duration"), ("90", "valid string")])
def test_journal_keep_errors_name_the_key(tmp_path: Path, value: str, why: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"[state]\njournal_keep = {value}\n")
    with pytest.raises(ConfigError, match=rf"state\.journal_keep: .*{why}"):
        config.load(path)
