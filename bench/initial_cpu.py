"""Benchmark: syncd's own CPU per user of one initial sync slapd -> slapd (issue 17, item 3).

`million.py` compares wall times side by side with a raw client, which on a shared 2-core
machine depends on everything else running; this measures only what syncd itself spends: one
`syncd run` subprocess (imports included) of N users + G groups (M members each) from a
bulk-loaded slapd into an empty one, its process CPU (user + system, `os.wait4`) per user.
`BENCH_PYSPY=DIR` records it with py-spy (see `scale.syncd_run`).

Usage: .venv/bin/python bench/initial_cpu.py [--users 50000] [--groups 500] [--members 100]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from million import CONFIG  # noqa: E402
from scale import GROUP_FILTER, USER_FILTER, syncd_run  # noqa: E402

from tests.peers.directory import GROUPS, PEOPLE, write_ldif  # noqa: E402
from tests.peers.slapd import Slapd  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--users", type=int, default=50_000)
    ap.add_argument("--groups", type=int, default=500)
    ap.add_argument("--members", type=int, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="syncd-initial-cpu-") as tmp:
        work = Path(tmp)
        ldif = write_ldif(work / "dir.ldif", args.users, args.groups, args.members)
        empty = write_ldif(work / "empty.ldif", 0, 0, 0)
        size = max(4 << 30, args.users * 16 << 10)
        with Slapd(ldif=ldif, size_limit=0, max_size=size) as source, \
                Slapd(ldif=empty, size_limit=0, max_size=size, syncprov=False) as target:
            config = work / "syncd.toml"
            config.write_text(CONFIG.format(
                state=work / "state.db", source=source.url, target=target.url,
                bind_dn=source.admin_dn, people=PEOPLE, groups=GROUPS,
                user_filter=USER_FILTER, group_filter=GROUP_FILTER))
            env = {**os.environ, "BENCH_LDAP_PASSWORD": source.admin_password}
            run = syncd_run(config, env)
            print(f"initial sync of {args.users:,} users + {args.groups:,} groups x "
                  f"{args.members}: wall {run.wall:.1f} s  engine {run.engine:.1f} s  syncd CPU "
                  f"{run.cpu:.1f} s = {run.cpu / max(1, args.users) * 1000:.3f} ms per user  "
                  f"peak RSS {run.rss_mb:.0f} MB  exit {run.rc}  load average "
                  f"{os.getloadavg()[0]:.1f}")
            print(run.summary)


if __name__ == "__main__":
    main()
