"""Failover between `syncd daemon` instances sharing one PostgreSQL state store (issue 17).

Two daemons (processes) run one flow slapd -> scim2-server on a PostgreSQL store (a database
created on the machine's server, 127.0.0.1:5432, and dropped at the end). The active one is
killed with SIGKILL and the time until the other runs the flow is measured, from the kill to

- *owned*: the survivor's log line "flow bench: owned by this instance";
- *run*: the start of the survivor's first run of the flow, from the run journal.

Round 0 kills the active instance in the middle of the initial load; every later round starts
a fresh standby, waits until it sees the flow running on the active one (so the kill lands
just after the standby's tick: the worst phase) and kills the active one between runs. A last
round freezes the active one with SIGSTOP instead, as a host that vanished without closing
its TCP connections: PostgreSQL ends its idle lock session after LEASE_TIMEOUT_S (10 s). The
goal is run <= interval + 10 s. At the end the target is checked: every
user once, nothing lost. Peak RSS of each killed daemon (VmHWM) is printed.

    .venv/bin/python bench/failover.py                       # interval 5 s, 5 rounds
    .venv/bin/python bench/failover.py --interval 30 --rounds 3 --users 20000
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scale import CONFIG, GROUP_FILTER, USER_FILTER  # noqa: E402  (the same flow)
from tests.peers.directory import GROUPS, PEOPLE, write_ldif  # noqa: E402
from tests.peers.scim_servers import Scim2Server  # noqa: E402
from tests.peers.slapd import Slapd  # noqa: E402

TOKEN = "bench-token"
ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
OWNED = "flow bench: owned by this instance"


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.02)  # polling interval


class Daemon:
    def __init__(self, config: Path, tmp: Path, env: dict[str, str]) -> None:
        self.log = tmp / f"daemon-{uuid.uuid4().hex[:6]}.log"
        with self.log.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "syncd", "daemon", "--config", str(config)],
                stdout=subprocess.DEVNULL, stderr=err, env=env)
        self.name = f"syncd daemon {os.uname().nodename}:{self.proc.pid}"

    def first(self, text: str) -> float | None:
        """Epoch seconds of the first log line containing `text`."""
        for raw in self.log.read_text().splitlines():
            if raw.startswith("{") and text in (line := json.loads(raw))["msg"]:
                return datetime.fromisoformat(line["ts"]).timestamp()
        return None

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


def first_run(dsn: str, instance: str) -> float | None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for started, summary in conn.execute("SELECT started_at, summary FROM run "
                                             "ORDER BY started_at"):
            if json.loads(summary or "{}").get("instance") == instance:
                return float(started.timestamp())
    return None


def total(scim: Scim2Server) -> int:
    with httpx.Client(base_url=scim.url, headers={"Authorization": f"Bearer {TOKEN}"},
                      timeout=60) as c:
        return int(c.get("/Users", params={"count": 0}).json()["totalResults"])


def users(scim: Scim2Server) -> list[str]:
    names: list[str] = []
    with httpx.Client(base_url=scim.url, headers={"Authorization": f"Bearer {TOKEN}"},
                      timeout=60) as c:
        while True:
            body = c.get("/Users", params={"startIndex": len(names) + 1, "count": 1000}).json()
            page = body.get("Resources", [])
            names += [u["userName"] for u in page]
            if not page or len(names) >= body["totalResults"]:
                return names


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--users", type=int, default=5000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="syncd-failover-"))
    db = f"syncd_failover_{uuid.uuid4().hex[:8]}"
    dsn = f"postgresql://postgres@127.0.0.1:5432/{db}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    ldif = write_ldif(tmp / "dir.ldif", args.users, 20, 50)
    daemons: list[Daemon] = []
    rows: list[tuple[int, str, float, float, float]] = []
    try:
        with Slapd(ldif=ldif, size_limit=0) as ldap, Scim2Server(token=TOKEN) as scim:
            config = tmp / "syncd.toml"
            text = CONFIG.format(
                state="x", ldap=ldap.url, bind_dn=ldap.admin_dn, people=PEOPLE,
                groups=GROUPS, user_filter=USER_FILTER, group_filter=GROUP_FILTER,
                scim=scim.url, concurrency=4)
            text = text.replace('url = "sqlite:///x"',
                                f'url = "postgresql+psycopg://postgres@127.0.0.1:5432/{db}"')
            config.write_text(text + f'[flows.bench.schedule]\ninterval = '
                                     f'"{args.interval:g}s"\n')
            env = {**os.environ, "BENCH_LDAP_PASSWORD": ldap.admin_password,
                   "BENCH_SCIM_TOKEN": TOKEN}
            active = Daemon(config, tmp, env)
            daemons.append(active)
            wait_for(lambda: active.first(OWNED) is not None, 60, "the first daemon to own")
            for r in range(args.rounds + 1):
                standby = Daemon(config, tmp, env)
                daemons.append(standby)
                seen = f"running on {active.name}"
                wait_for(lambda s=standby, t=seen: s.first(t) is not None, 60,  # type: ignore[misc]
                         "the standby to see the flow on the active instance")
                case = "between runs" if r < args.rounds else "SIGSTOP"
                if r == 0:
                    case = "mid-apply"
                    wait_for(lambda: total(scim) >= args.users // 10, 120,
                             "the initial load to be under way")
                    if total(scim) >= args.users:
                        raise SystemExit("the initial load ended before the kill: use more "
                                         "--users")
                rss = active.peak_rss_mb()
                killed = time.time()
                if case == "SIGSTOP":  # frozen: its sockets stay open, nothing answers
                    active.proc.send_signal(signal.SIGSTOP)
                else:
                    active.kill()
                wait_for(lambda s=standby: first_run(dsn, s.name) is not None,  # type: ignore[misc]
                         args.interval + 60, "the standby's first run")
                owned = (standby.first(OWNED) or 0) - killed
                ran = (first_run(dsn, standby.name) or 0) - killed
                rows.append((r, case, owned, ran, rss))
                print(f"round {r} ({case}): owned after {owned:5.2f}s, next run started "
                      f"after {ran:5.2f}s (interval {args.interval:g}s, goal <= "
                      f"{args.interval + 10:g}s); killed daemon peak RSS {rss:.0f} MB",
                      flush=True)
                if case == "SIGSTOP":  # thawed: it finds its session gone
                    active.proc.send_signal(signal.SIGCONT)
                    wait_for(lambda a=active: a.first("is gone") is not None,  # type: ignore[misc]
                             60, "the thawed instance to notice its lock session is gone")
                    active.kill()
                active = standby
            wait_for(lambda: total(scim) >= args.users, 300, "the target to converge")
            names = Counter(users(scim))
            ok = len(names) == args.users and max(names.values()) == 1
            print(f"target: {len(names)} users of {args.users}, duplicates: "
                  f"{sum(n - 1 for n in names.values())} -> {'converged' if ok else 'WRONG'}")
            print(f"survivor peak RSS {active.peak_rss_mb():.0f} MB")
    finally:
        for d in daemons:
            d.kill()
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    runs = [ran for _, case, _, ran, _ in rows if case != "SIGSTOP"]
    print(f"next run after a kill -9: median {statistics.median(runs):.2f}s, max "
          f"{max(runs):.2f}s over {len(runs)} kills; interval {args.interval:g}s")


if __name__ == "__main__":
    main()
