"""Benchmark: a no-change incremental cycle on 389 Directory Server vs OpenLDAP, same size.

Both directories hold the same N users (tests/peers/directory.py): OpenLDAP bulk-loaded with
``slapadd`` (syncprov), 389-ds loaded online (``ldapmodify -a``, non-durable transactions;
Retro Changelog + Content Synchronization, entryUUID logged as targetEntryUUID). For each,
in a subprocess of its own (so its peak RSS is its own), with anchor entryUUID:

1. a full read (what every 389-ds cycle cost before its feed was understood: the cookie was
   refused, so each cycle fell back to one);
2. ``--repeat`` no-change incremental cycles, each like a CLI run's: a new connector opened
   (mechanism detection included), one incremental read from the full read's cursor,
   closed -- entries read, fallbacks, best and median wall time;
3. one incremental read after 10 modified and 2 deleted users (entries, deletes, time).

Ratios are 389-ds / OpenLDAP. Usage: .venv/bin/python bench/ds389_incremental.py
[--users 10000] [--repeat 5]. Root only (ns-slapd runs as dirsrv).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import ldap3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from syncd_connectors.ldap.config import LdapConfig  # noqa: E402
from syncd_connectors.ldap.connector import LdapConnector  # noqa: E402
from tests.peers.directory import PEOPLE, user_dn, write_ldif  # noqa: E402
from tests.peers.ds389 import Ds389  # noqa: E402
from tests.peers.slapd import Slapd  # noqa: E402

MAPPED = ["uid", "cn", "givenName", "sn", "mail", "title", "employeeNumber"]
FILTER = "(objectClass=inetOrgPerson)"


class Fallbacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "falling back to a full read" in record.getMessage():
            self.count += 1


def child(spec: dict[str, Any], repeat: int) -> None:
    """Runs in its own process; prints one JSON line of figures."""
    fallbacks = Fallbacks()
    logging.getLogger("syncd.connectors.ldap").addHandler(fallbacks)
    config = LdapConfig(**spec["settings"])

    conn = LdapConnector("bench", config)
    conn.open()
    start = time.perf_counter()
    count, cursor = 0, None
    for batch in conn.read("user", None, MAPPED):
        count += len(batch.entries)
        cursor = batch.cursor
    full = time.perf_counter() - start
    mech = conn.mechanism()
    conn.close()
    assert cursor is not None

    cycles: list[float] = []
    opens: list[float] = []
    read = 0
    fulls = 0
    for _ in range(repeat):
        start = time.perf_counter()
        conn = LdapConnector("bench", config)
        conn.open()  # connect + bind
        opens.append(time.perf_counter() - start)
        for batch in conn.read("user", cursor, MAPPED):
            read += len(batch.entries) + len(batch.deleted)
            fulls += batch.full
        conn.close()
        cycles.append(time.perf_counter() - start)

    admin = ldap3.Connection(ldap3.Server(spec["url"]), spec["settings"]["bind_dn"],
                             spec["settings"]["bind_password"], auto_bind=True)  # fmt: skip
    for i in range(10):
        admin.modify(user_dn(100 + i), {"title": [(ldap3.MODIFY_REPLACE, [f"Bench {i}"])]})
    for i in (200, 201):
        admin.delete(user_dn(i))
    admin.unbind()
    conn = LdapConnector("bench", config)
    conn.open()
    start = time.perf_counter()
    changed = deleted = 0
    for batch in conn.read("user", cursor, MAPPED):
        changed += len(batch.entries)
        deleted += len(batch.deleted)
        fulls += batch.full
    after_changes = time.perf_counter() - start
    conn.close()
    print(json.dumps({
        "mechanism": mech, "count": count, "full_s": full, "cycles": cycles, "opens": opens,
        "entries_read": read, "full_batches": fulls, "fallbacks": fallbacks.count,
        "changed": changed, "deleted": deleted, "changes_s": after_changes,
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))  # fmt: skip


def run_child(url: str, bind_dn: str, password: str, repeat: int) -> dict[str, Any]:
    settings = {"type": "ldap", "url": url, "bind_dn": bind_dn, "bind_password": password,
                "users": {"base": PEOPLE, "filter": FILTER}, "timeout": 120}  # fmt: skip
    spec = json.dumps({"url": url, "settings": settings})
    out = subprocess.run([sys.executable, __file__, "--child", spec, "--repeat", str(repeat)],
                         capture_output=True, text=True, check=True)  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def report(name: str, r: dict[str, Any]) -> None:
    best, median = min(r["cycles"]), statistics.median(r["cycles"])
    print(f"{name}: mechanism {r['mechanism']}, {r['count']:,} users")
    print(f"  full read                 {r['full_s']:.3f} s")
    reads = [c - o for c, o in zip(r["cycles"], r["opens"], strict=True)]
    print(f"  no-change cycle (x{len(r['cycles'])})     best {best * 1000:.1f} ms, median "
          f"{median * 1000:.1f} ms; entries read {r['entries_read']}, full batches "
          f"{r['full_batches']}, fallbacks {r['fallbacks']}")
    print(f"    of which connect + bind best {min(r['opens']) * 1000:.1f} ms, the read itself "
          f"best {min(reads) * 1000:.1f} ms")
    print(f"  10 modified + 2 deleted   {r['changes_s'] * 1000:.1f} ms: {r['changed']} entries, "
          f"{r['deleted']} deletes")
    print(f"  peak RSS                  {r['rss_mib']:.0f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--child")
    args = ap.parse_args()
    if args.child:
        child(json.loads(args.child), args.repeat)
        return
    with tempfile.TemporaryDirectory(prefix="syncd-bench-389-") as tmp:
        ldif = write_ldif(Path(tmp) / "users.ldif", args.users, 0, 0)
        with Slapd(ldif=ldif, size_limit=0) as slapd:
            ol = run_child(slapd.url, slapd.admin_dn, slapd.admin_password, args.repeat)
        start = time.perf_counter()
        with Ds389() as ds:
            ds.load(ldif)
            load = time.perf_counter() - start
            ds_r = run_child(ds.url, ds.admin_dn, ds.admin_password, args.repeat)
    print(f"{args.users:,} users; 389-ds created and loaded online in {load:.1f} s\n")
    report("OpenLDAP (slapd, syncprov)", ol)
    report("389-ds (content sync + retro changelog)", ds_r)
    ratio = min(ds_r["cycles"]) / min(ol["cycles"])
    med = statistics.median(ds_r["cycles"]) / statistics.median(ol["cycles"])
    ds_reads = min(c - o for c, o in zip(ds_r["cycles"], ds_r["opens"], strict=True))
    ol_reads = min(c - o for c, o in zip(ol["cycles"], ol["opens"], strict=True))
    print(f"\n389-ds / OpenLDAP, no-change cycle: best {ratio:.2f}x, median {med:.2f}x; "
          f"the read alone (no connect + bind): {ds_reads / ol_reads:.2f}x")
    print(f"389-ds no-change cycle / its full read (each cycle's cost before): "
          f"{min(ds_r['cycles']) / ds_r['full_s']:.3f}x")


if __name__ == "__main__":
    main()
