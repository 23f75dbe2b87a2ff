"""Benchmark: full LDAP read of N users through the connector vs ldapsearch and stock ldap3.

Prints, all measured in one run against one slapd loaded with ``slapadd`` (no syncprov
writes involved): entries/s of ``ldapsearch`` (paged, -LLL, output to /dev/null), of a stock
ldap3 paged search, and of the connector's full read with each decoder (in a subprocess, so
its peak RSS is its own), with the ratios; then the wall time of an incremental (syncrepl)
read after 10 changes in the N-user directory.

Usage: .venv/bin/python bench/ldap_read.py [--users 100000] [--page-size 500] [--repeat 3]

The machine may be shared: each figure is the best of --repeat runs (ldap3 stock: one run).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import ldap3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from syncd_connectors.ldap.config import LdapConfig  # noqa: E402
from syncd_connectors.ldap.connector import LdapConnector  # noqa: E402
from tests.peers.directory import PEOPLE, user_dn, write_ldif  # noqa: E402
from tests.peers.slapd import Slapd  # noqa: E402

ATTRS = ["uid", "cn", "givenName", "sn", "mail", "title", "employeeNumber", "entryUUID"]
MAPPED = ATTRS[:-1]  # the connector adds the anchor itself
FILTER = "(objectClass=inetOrgPerson)"


def settings(url: str, password: str, decoder: str, page_size: int) -> dict[str, object]:
    return {
        "type": "ldap",
        "url": url,
        "bind_dn": f"cn=admin,{PEOPLE.split(',', 1)[1]}",
        "bind_password": password,
        "users": {"base": PEOPLE, "filter": FILTER},
        "decoder": decoder,
        "page_size": page_size,
        "timeout": 60,
    }


def child(args: argparse.Namespace) -> None:
    """Full read through the connector; prints JSON: count, seconds, peak RSS (KiB)."""
    conn = LdapConnector("bench", LdapConfig(**json.loads(args.child)))
    conn.open()
    best = math.inf
    for _ in range(args.repeat):
        start = time.perf_counter()
        count, cursor = 0, None
        for batch in conn.read("user", None, MAPPED):
            count += len(batch.entries)
            cursor = batch.cursor
        best = min(best, time.perf_counter() - start)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"count": count, "seconds": best, "rss_kib": rss, "cursor": cursor}))


def best_of(repeat: int, run: Callable[[], tuple[int, float]]) -> tuple[int, float]:
    """The fastest of `repeat` runs: the machine is shared, the minimum is the least noisy."""
    results = [run() for _ in range(repeat)]
    return min(results, key=lambda r: r[1])


def ldapsearch(server: Slapd, page_size: int) -> tuple[int, float]:
    cmd = [
        "ldapsearch", "-x", "-LLL", "-H", server.url, "-D", server.admin_dn,
        "-w", server.admin_password, "-b", PEOPLE, "-E", f"pr={page_size}/noprompt",
        FILTER, *ATTRS,
    ]  # fmt: skip
    start = time.perf_counter()
    with open("/dev/null", "wb") as null:
        subprocess.run(cmd, stdout=null, check=True)
    seconds = time.perf_counter() - start
    return LDAPSEARCH_COUNT.get(server.url) or _count(server, cmd), seconds


LDAPSEARCH_COUNT: dict[str, int] = {}


def _count(server: Slapd, cmd: list[str]) -> int:
    """Entries ldapsearch sees (not timed): the same search asking for no attributes."""
    out = subprocess.run([*cmd[: -len(ATTRS)], "1.1"], capture_output=True, check=True).stdout
    LDAPSEARCH_COUNT[server.url] = out.count(b"\ndn: ") + out.startswith(b"dn: ")
    return LDAPSEARCH_COUNT[server.url]


def ldap3_stock(server: Slapd, page_size: int) -> tuple[int, float]:
    conn = ldap3.Connection(
        ldap3.Server(server.url, get_info=ldap3.NONE), server.admin_dn, server.admin_password,
        auto_bind=True,
    )  # fmt: skip
    start = time.perf_counter()
    count, cookie = 0, None
    while True:
        conn.search(PEOPLE, FILTER, attributes=ATTRS, paged_size=page_size, paged_cookie=cookie)
        count += sum(1 for r in conn.response if r["type"] == "searchResEntry")
        cookie = conn.result["controls"]["1.2.840.113556.1.4.319"]["value"]["cookie"]
        if not cookie:
            break
    seconds = time.perf_counter() - start
    conn.unbind()
    return count, seconds


def connector_read(server: Slapd, decoder: str, page_size: int, repeat: int) -> dict[str, float]:
    cfg = settings(server.url, server.admin_password, decoder, page_size)
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(cfg), "--repeat", str(repeat)],
        capture_output=True, check=True, text=True,
    )  # fmt: skip
    result: dict[str, float] = json.loads(out.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
        t0 = time.perf_counter()
        ldif = write_ldif(Path(tmp) / "users.ldif", args.users, 0, 0)
        with Slapd(ldif=ldif, size_limit=0) as server:
            print(f"loaded {args.users:,} users with slapadd in {time.perf_counter() - t0:.1f} s")
            n, s = best_of(args.repeat, lambda: ldapsearch(server, args.page_size))
            base_rate = n / s
            print(f"ldapsearch            {n:>7,} entries {s:6.2f} s {base_rate:>8,.0f}/s")
            n, s = best_of(1, lambda: ldap3_stock(server, args.page_size))
            stock_rate = n / s
            print(
                f"ldap3 stock paged     {n:>7,} entries {s:6.2f} s {stock_rate:>8,.0f}/s"
                f"  {stock_rate / base_rate:.2f}x ldapsearch"
            )
            cursor = None
            for decoder in ("lean", "stock"):
                r = connector_read(server, decoder, args.page_size, args.repeat)
                rate = r["count"] / r["seconds"]
                print(
                    f"connector ({decoder:5})     {int(r['count']):>7,} entries "
                    f"{r['seconds']:6.2f} s {rate:>8,.0f}/s  {rate / base_rate:.2f}x ldapsearch"
                    f"  {rate / stock_rate:.2f}x ldap3  peak RSS {r['rss_kib'] / 1024:.0f} MiB"
                )
                cursor = cursor or r["cursor"]
            changes = "".join(
                f"dn: {user_dn(i * 9973 % args.users)}\nchangetype: modify\n"
                f"replace: title\ntitle: Bench {i}\n\n"
                for i in range(10)
            )
            server.modify(changes)
            conn = LdapConnector(
                "bench", LdapConfig(**settings(server.url, server.admin_password, "lean", 500))
            )
            conn.open()
            start = time.perf_counter()
            batches = list(conn.read("user", str(cursor), MAPPED))
            seconds = time.perf_counter() - start
            changed = sum(len(b.entries) for b in batches)
            print(
                f"incremental (syncrepl) after 10 changes: {changed} entries, "
                f"full={batches[-1].full}, {seconds * 1000:.1f} ms"
            )


if __name__ == "__main__":
    main()
