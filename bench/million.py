"""Benchmark: a million users and 10,000 groups, slapd -> slapd, each figure against a raw client.

Why LDAP as the target: every SCIM server we run here (scim2-server, django-scim2-server,
`syncd serve`) creates 300-700 users a second at best, so a million-user initial sync takes
each side of the comparison most of an hour on this 2-core machine; `scale.py` measures the
SCIM path at 100k. slapd writes fast enough that syncd's own costs (reading, mapping, planning,
the state store, memory) are what a million users show. One run, in order:

 1. **initial sync** of N users + G groups (M members each) into an empty slapd (`syncd run`,
    a subprocess; peak RSS polled from /proc) vs a raw ldap3 client doing the same writes into
    another empty slapd with the same concurrency: each user added, getting its entryUUID
    (the anchor syncd links) back, each group added with all its members in one add. The
    raw client asks for the entryUUID with the Post-Read control (RFC 4527) in the add, as
    syncd does on a server that offers it; `--raw-read-back`: by a search after the add.
    With `--side-by-side` both run at the same time (each on a slapd of its own);
 2. a **no-change incremental cycle** (syncrepl cursor): wall time and the engine's own time;
 3. a **no-change full reconcile** (`syncd run --full`) vs a raw ldap3 paged read of the same
    attributes (users and groups) and vs the LDAP connector's own read alone.

Usage: .venv/bin/python bench/million.py [--users 1000000] [--groups 10000] [--members 100]
       [--concurrency 8] [--side-by-side] [--raw-read-back] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import ldap3
from ldap3.protocol.rfc4527 import post_read_control

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scale import (  # noqa: E402
    GROUP_FILTER,
    USER_FILTER,
    Run,
    full_reconcile,
    line,
    syncd_run,
)

from tests.peers.directory import (  # noqa: E402
    GROUPS,
    PEOPLE,
    group_cn,
    group_dn,
    group_member_indexes,
    user_attrs,
    user_dn,
    write_ldif,
)
from tests.peers.slapd import Slapd  # noqa: E402

POST_READ = "1.3.6.1.1.13.2"
USER_ATTRS = ("uid", "cn", "sn", "givenName", "mail", "title", "employeeNumber")
CONFIG = """\
[state]
url = "sqlite:///{state}"
[connectors.corp]
type = "ldap"
url = "{source}"
bind_dn = "{bind_dn}"
bind_password = "env:BENCH_LDAP_PASSWORD"
users = {{ base = "{people}", filter = "{user_filter}" }}
groups = {{ base = "{groups}", filter = "{group_filter}" }}
[connectors.copy]
type = "ldap"
url = "{target}"
bind_dn = "{bind_dn}"
bind_password = "env:BENCH_LDAP_PASSWORD"
users = {{ base = "{people}", filter = "{user_filter}" }}
groups = {{ base = "{groups}", filter = "{group_filter}" }}
[flows.bench]
source = "corp"
target = "copy"
match = ["uid"]
[flows.bench.groups]
match = ["cn"]
[flows.bench.users.mapping]
uid = "uid"
cn = "cn"
sn = "sn"
givenName = "givenName"
mail = "mail"
title = "title"
employeeNumber = "employeeNumber"
[flows.bench.groups.mapping]
cn = "cn"
"""


def raw_initial(target: Slapd, users: int, groups: int, members: int, concurrency: int,
                read_back: bool = False) -> tuple[float, float]:
    """The writes of an initial sync by a bare ldap3 client, `concurrency` connections: each
    user added with the Post-Read control asking for its entryUUID (what syncd does against
    a server that offers it, as slapd does), or, with `read_back`, added and then read back
    by a base search (what syncd did before, and does where the control is not offered).
    Returns the wall time and the CPU time of the client's threads."""
    local = threading.local()

    def conn() -> ldap3.Connection:
        c = getattr(local, "conn", None)
        if c is None:
            c = local.conn = ldap3.Connection(
                ldap3.Server(target.url, get_info=ldap3.NONE), target.admin_dn,
                target.admin_password, auto_bind=True)
        return c

    post_read = [post_read_control(["entryUUID"])]

    def add_user(i: int) -> str:
        a = user_attrs(i)
        values = {k: a[k.lower()] for k in USER_ATTRS if k.lower() in a}
        c = conn()
        if read_back:
            if not c.add(user_dn(i), ["inetOrgPerson"], values):
                raise RuntimeError(f"add {user_dn(i)}: {c.result}")
            c.search(user_dn(i), "(objectClass=*)", ldap3.BASE, attributes=["entryUUID"])
            return str(c.entries[0].entryUUID)
        if not c.add(user_dn(i), ["inetOrgPerson"], values, controls=post_read):
            raise RuntimeError(f"add {user_dn(i)}: {c.result}")
        entry = c.result["controls"][POST_READ]["value"]["result"]
        return str(entry["entryUUID"][0])

    def add_group(j: int) -> None:
        dns = [user_dn(i) for i in group_member_indexes(j, users, members)]
        c = conn()
        if not c.add(group_dn(j), ["groupOfNames"], {"cn": group_cn(j), "member": dns}):
            raise RuntimeError(f"add {group_dn(j)}: {c.result}")

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency, thread_name_prefix="raw-client") as pool:
        for start in range(0, users, 10_000):  # bounded: a million futures at once cost ~1 GB
            list(pool.map(add_user, range(start, min(users, start + 10_000))))
        list(pool.map(add_group, range(groups)))
        cpu = sum(time.clock_gettime(time.pthread_getcpuclockid(t.ident))
                  for t in threading.enumerate()
                  if t.name.startswith("raw-client") and t.ident is not None)
    return time.perf_counter() - t0, cpu


def count(slapd: Slapd, base: str, filter_: str) -> int:
    c = ldap3.Connection(ldap3.Server(slapd.url, get_info=ldap3.NONE), slapd.admin_dn,
                         slapd.admin_password, auto_bind=True)
    n = sum(1 for _ in c.extend.standard.paged_search(base, filter_, attributes=["1.1"],
                                                      paged_size=1000, generator=True))
    c.unbind()
    return n


def run_all(args: argparse.Namespace, work: Path) -> Iterator[str]:
    t0 = time.perf_counter()
    ldif = write_ldif(work / "dir.ldif", args.users, args.groups, args.members)
    empty = write_ldif(work / "empty.ldif", 0, 0, 0)  # the suffix and both OUs
    size = max(4 << 30, args.users * 16 << 10)  # mdb's map is sparse
    with Slapd(ldif=ldif, size_limit=0, max_size=size) as source, \
            Slapd(ldif=empty, size_limit=0, max_size=size, syncprov=False) as target, \
            Slapd(ldif=empty, size_limit=0, max_size=size, syncprov=False) as raw_target:
        yield (f"directory: {args.users:,} users, {args.groups:,} groups x {args.members} "
               f"members; concurrency {args.concurrency}; loaded in "
               f"{time.perf_counter() - t0:.1f} s")
        state, config = work / "state.db", work / "syncd.toml"
        config.write_text(CONFIG.format(
            state=state, source=source.url, target=target.url, bind_dn=source.admin_dn,
            people=PEOPLE, groups=GROUPS, user_filter=USER_FILTER, group_filter=GROUP_FILTER))
        env = {**os.environ, "BENCH_LDAP_PASSWORD": source.admin_password}
        assert target.admin_password == source.admin_password == raw_target.admin_password

        # 1. initial sync
        raw: dict[str, float] = {}
        raw_how = "add + read entryUUID" if args.raw_read_back else "add with Post-Read"

        def raw_side() -> None:
            raw["wall"], raw["cpu"] = raw_initial(
                raw_target, args.users, args.groups, args.members, args.concurrency,
                args.raw_read_back)

        thread = threading.Thread(target=raw_side)
        if args.side_by_side:
            thread.start()
        else:
            raw_side()
            yield line(f"raw ldap3 initial writes ({raw_how})", raw["wall"],
                       f"client CPU {raw['cpu']:.0f} s")
        init: Run = syncd_run(config, env)
        if args.side_by_side:
            thread.join()
            yield line(f"raw ldap3 initial writes ({raw_how})", raw["wall"],
                       f"client CPU {raw['cpu']:.0f} s (side by side with syncd's, below)")
        n_users = count(target, PEOPLE, USER_FILTER)
        n_groups = count(target, GROUPS, GROUP_FILTER)
        ok = n_users == args.users and n_groups == args.groups and init.rc == 0
        yield line("1. syncd initial sync", init.wall,
                   f"{init.wall / raw['wall']:.2f}x raw (goal <= 1.1)  peak RSS "
                   f"{init.rss_mb:.0f} MB (goal <= 400)  engine {init.engine:.1f} s  syncd "
                   f"CPU {init.cpu:.0f} s = {init.cpu / max(1, args.users) * 1000:.2f} ms per "
                   f"user (raw client {raw['cpu'] / max(1, args.users) * 1000:.2f})  exit "
                   f"{init.rc}  target {n_users:,} users {n_groups:,} groups"
                   + ("" if ok else "  MISMATCH"))

        # 2. no-change incremental cycle
        cycles = [syncd_run(config, env) for _ in range(3)]
        inc = min(cycles, key=lambda r: r.wall)
        yield line("2. syncd no-change incremental cycle", inc.wall,
                   f"(best of 3; worst {max(r.wall for r in cycles):.2f} s)  engine "
                   f"{inc.engine:.3f} s  peak RSS {inc.rss_mb:.0f} MB  [{inc.summary}]  "
                   f"exit {inc.rc}")

        # 3. no-change full reconcile
        yield from full_reconcile("3.", source, config, env)

def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--groups", type=int, default=10_000)
    ap.add_argument("--members", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--side-by-side", action="store_true",
                    help="the raw client's and syncd's initial syncs at the same time")
    ap.add_argument("--raw-read-back", action="store_true",
                    help="the raw client reads each user back for its entryUUID (a search) "
                         "instead of asking for it with the Post-Read control")
    ap.add_argument("--keep", type=Path, help="work directory to keep (state DB, config)")
    args = ap.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        for text in run_all(args, args.keep):
            print(text, flush=True)
        return
    with tempfile.TemporaryDirectory(prefix="syncd-million-") as tmp:
        for text in run_all(args, Path(tmp)):
            print(text, flush=True)


if __name__ == "__main__":
    main()
