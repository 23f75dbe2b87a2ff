"""`syncd log` and journal pruning on a large journal (SQLite by default).

Fills a fresh state store through the store's own bulk insert (`Store.log_changes`, 10,000
rows per call) with N change rows spread over the runs of two flows, one run every
`--every` minutes over `--days` days (1 % failed changes, 1 % refused runs), then times, as
the operator sees it (`syncd log` subprocesses, Python start-up included) and in-process
(`Store.log`, the query alone): the newest page, one object, a time window, a flow, failed
changes, one run, refused runs; then `Store.prune_journal` with journal_keep = 90d.

    .venv/bin/python bench/journal_log.py                        # 1,000,000 changes
    .venv/bin/python bench/journal_log.py --changes 100000 --keep /tmp/journal
    .venv/bin/python bench/journal_log.py --url postgresql+psycopg://postgres@127.0.0.1/db
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from syncd.state import schema
from syncd.state.journal import LogQuery
from syncd.state.store import Store

OPS = ["update"] * 80 + ["create"] * 10 + ["set_members"] * 6 + ["deprovision"] * 3 + ["delete"]


def fill(store: Store, changes: int, days: int, every_min: int, users: int) -> dict[str, str]:
    rnd = random.Random(14)
    now = datetime.now(UTC)
    start = now - timedelta(days=days)
    per_flow = days * 24 * 60 // every_min
    runs = []
    for flow in ("corp-to-app", "hr-to-app"):
        for i in range(per_flow):
            t = start + timedelta(minutes=i * every_min, seconds=rnd.random() * 30)
            refused = rnd.random() < 0.01
            runs.append({"id": f"{flow[:2]}{i:08d}", "flow": flow, "started_at": t,
                         "finished_at": t + timedelta(seconds=2),
                         "result": "refused" if refused else "ok",
                         "summary": json.dumps({"applied": 0 if refused else 1, "failed": 0}),
                         "error": "1 users would be deprovisioned, over max_deprovision=0: x"
                         if refused else None})
    assert store.engine is not None
    with store.engine.begin() as conn:
        for i in range(0, len(runs), 10_000):
            conn.execute(schema.run.insert(), runs[i:i + 10_000])
    ok_runs = [r for r in runs if r["result"] == "ok"]
    batch: list[dict[str, object]] = []
    for n in range(changes):
        run = ok_runs[n * len(ok_runs) // changes]
        u = rnd.randrange(users)
        failed = rnd.random() < 0.01
        op = rnd.choice(OPS)
        kind = "group" if op == "set_members" else "user"
        batch.append({
            "run_id": run["id"], "flow": run["flow"], "kind": kind, "op": op,
            "source_id": f"{u:08d}-0000-4000-8000-{u:012d}", "target_id": f"t{u}",
            "name": f"uid=user{u},ou=people,dc=example,dc=com" if u % 10 == 0 else f"user{u}",
            "detail": json.dumps({"reason": "source changed", "attrs": {"title": f"T{n}"},
                                  "before": {"title": f"T{n - 1}"}}),
            "result": "failed" if failed else "applied",
            "error": "Rejected: 400 invalidValue" if failed else None,
            "at": run["started_at"] + timedelta(seconds=1)})
        if len(batch) == 10_000:
            store.log_changes(batch)
            batch = []
    store.log_changes(batch)
    mid = start + timedelta(days=days // 2)
    return {"user": "user4242", "dn": "uid=user4240,ou=people,dc=example,dc=com",
            "source": f"{4243:08d}-0000-4000-8000-{4243:012d}", "target": "t4244",
            "run": ok_runs[len(ok_runs) // 2]["id"],
            "since": (mid).isoformat(), "until": (mid + timedelta(hours=6)).isoformat()}


def timed(label: str, fn: object, *args: object) -> object:
    t = time.perf_counter()
    out = fn(*args)  # type: ignore[operator]
    print(f"  {label:44} {time.perf_counter() - t:8.3f} s")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--changes", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=180)
    ap.add_argument("--every", type=int, default=15, help="minutes between runs of a flow")
    ap.add_argument("--users", type=int, default=50_000)
    ap.add_argument("--url", default=None, help="a state URL (default: a fresh SQLite file)")
    ap.add_argument("--keep", default=None, help="keep the SQLite store in this directory")
    args = ap.parse_args()
    where = Path(args.keep or tempfile.mkdtemp(prefix="syncd-journal-"))
    where.mkdir(parents=True, exist_ok=True)
    url = args.url or f"sqlite:///{where / 'state.db'}"
    config = where / "syncd.toml"
    config.write_text(f'[state]\nurl = "{url}"\njournal_keep = "90d"\n')

    store = Store(url)
    t = time.perf_counter()
    keys = fill(store, args.changes, args.days, args.every, args.users)
    print(f"filled {args.changes:,} changes in {time.perf_counter() - t:.1f} s ({url})")
    if store.dialect.startswith("postgres"):  # what autovacuum does after a bulk load
        from sqlalchemy import text

        assert store.engine is not None
        with store.engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    if store.dialect == "sqlite":
        size = sum(p.stat().st_size for p in where.glob("state.db*"))
        print(f"  store size {size / 1e6:.0f} MB")

    syncd = [sys.executable, "-m", "syncd", "log", "--config", str(config), "-o", "json"]
    cases = [
        ("newest 100", []),
        ("--object <name>", ["--object", keys["user"]]),
        ("--object <NAME> (other case)", ["--object", keys["user"].upper()]),
        ("--object <dn>", ["--object", keys["dn"]]),
        ("--object <source anchor>", ["--object", keys["source"]]),
        ("--object <target id>", ["--object", keys["target"]]),
        ("--since/--until (a 6 h window)", ["--since", keys["since"], "--until", keys["until"]]),
        ("--since 7d", ["--since", "7d"]),
        ("--flow hr-to-app", ["--flow", "hr-to-app"]),
        ("--result failed", ["--result", "failed"]),
        ("--op deprovision --since 30d", ["--op", "deprovision", "--since", "30d"]),
        ("--run <id>", ["--run", keys["run"]]),
        ("--result refused", ["--result", "refused"]),
        ("--object <name> --since 30d --op update",
         ["--object", keys["user"], "--since", "30d", "--op", "update"]),
        ("--limit 0 --since 1d (all of a day)", ["--limit", "0", "--since", "1d"]),
    ]
    print("syncd log (subprocess: wall time incl. Python start-up; entries)")
    for label, extra in cases:
        t = time.perf_counter()
        out = subprocess.run([*syncd, *extra], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONWARNINGS": "ignore"})
        n = len(json.loads(out.stdout)["entries"])
        print(f"  {label:44} {time.perf_counter() - t:8.3f} s  {n:6} entries")
    print("Store.log (in-process, the queries alone)")
    from syncd.cli.log import parse_when

    queries = {
        "--object <name>": LogQuery(object=keys["user"]),
        "--object <source anchor>": LogQuery(object=keys["source"]),
        "--since/--until (a 6 h window)": LogQuery(since=parse_when(keys["since"]),
                                                   until=parse_when(keys["until"])),
        "--flow hr-to-app": LogQuery(flow="hr-to-app"),
        "--result failed": LogQuery(results=frozenset({"failed"})),
    }
    for label, q in queries.items():
        timed(label, store.log, q)
    cutoff = datetime.now(UTC) - timedelta(days=90)
    runs, changes = timed("prune_journal(older than 90d)", store.prune_journal, cutoff)  # type: ignore[misc]
    print(f"  pruned {runs:,} runs and {changes:,} changes")
    store.close()
    if not args.keep and store.dialect == "sqlite":
        for p in where.iterdir():
            p.unlink()
        where.rmdir()


if __name__ == "__main__":
    main()
