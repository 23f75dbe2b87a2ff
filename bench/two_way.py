"""Benchmark: two-way LDAP (slapd) <-> SCIM (scim2-server) at 10,000 linked users.

Prints, measured in one run:
  - the initial two-way sync (creates on the SCIM side), and a push initial sync of the same
    directory into a fresh scim2-server, same run: the ratio, and peak RSS of each;
  - the first cycle after the initial sync: how many SCIM users its target read lists (from
    the stored cursor), wall and engine time (the flow duration `syncd run -o json` reports);
  - a no-change incremental two-way cycle: wall time (CLI subprocess, incl. start-up) and
    engine time, against a raw httpx GET of the same filtered listing (what the target read
    costs the server: scim2-server walks every stored user per filtered request);
  - a scripted scenario of 500 edits on each side (title on both sides for an overlapping
    subset, givenName only on the SCIM side otherwise): conflict count and rate, plan size,
    cycle time, and that the following cycle plans nothing (fixed point);
  - for reference, a raw ldap3 read of the same attributes.

The SCIM connector pages by the server's filter.maxResults (1000 on scim2-server) unless
--page-size says otherwise, with a 300 s request timeout (like the other benches' raw
clients: on a loaded machine scim2-server's answer to one filtered page over 100k users
took longer than the default 30 s). The load average is printed at the start and the end.

Usage: nice .venv/bin/python bench/two_way.py [--users 10000] [--edits 500] [--overlap 100]
       [--no-push] [--page-size 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import ldap3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.peers.directory import GROUPS, PEOPLE, user_dn, user_uid, write_ldif  # noqa: E402
from tests.peers.scim_servers import Scim2Server  # noqa: E402
from tests.peers.slapd import Slapd  # noqa: E402

TOKEN = "bench-token"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
CONFIG = """\
[state]
url = "sqlite:///{state}"
[connectors.corp]
type = "ldap"
url = "{ldap}"
bind_dn = "{bind_dn}"
bind_password = "env:BENCH_LDAP_PASSWORD"
users = {{ base = "{people}", filter = "(objectClass=inetOrgPerson)" }}
[connectors.app]
type = "scim"
url = "{scim}"
token = "env:BENCH_SCIM_TOKEN"
{scim_extra}
[flows.two]
source = "corp"
target = "app"
mode = "two_way"
[flows.two.users]
authority = {{ title = "manual" }}
[flows.two.users.mapping]
userName = "uid"
displayName = "cn"
"name.givenName" = "givenName"
"name.familyName" = "sn"
"emails.work" = "mail"
title = "title"
externalId = "entryUUID"
[flows.two.safety]
max_deprovision = 0
"""


PUSH = """\
[state]
url = "sqlite:///{state}"
[connectors.corp]
type = "ldap"
url = "{ldap}"
bind_dn = "{bind_dn}"
bind_password = "env:BENCH_LDAP_PASSWORD"
users = {{ base = "{people}", filter = "(objectClass=inetOrgPerson)" }}
[connectors.app]
type = "scim"
url = "{scim}"
token = "env:BENCH_SCIM_TOKEN"
{scim_extra}
[flows.push]
source = "corp"
target = "app"
[flows.push.users.mapping]
userName = "uid"
displayName = "cn"
"name.givenName" = "givenName"
"name.familyName" = "sn"
"emails.work" = "mail"
title = "title"
externalId = "entryUUID"
"""


def engine(doc: dict[str, Any]) -> float:
    return float(doc["flows"][0]["duration_s"])


def scim_cursor(state: Path) -> str:
    """The SCIM target's stored cursor: the time its next incremental read starts from."""
    with sqlite3.connect(state) as db:
        (value,) = db.execute("select value from cursor where flow = 'two' and "
                              "connector = 'app' and kind = 'user'").fetchone()
    return str(value).removeprefix("lastmodified:")


def push_initial(ldif: Path, work: Path, scim_extra: str) -> tuple[float, float]:
    """A push initial sync of the same directory into a fresh scim2-server."""
    with Slapd(ldif=ldif, size_limit=0) as ldap, Scim2Server(token=TOKEN) as scim:
        config = work / "push.toml"
        config.write_text(PUSH.format(state=work / "push.db", ldap=ldap.url,
                                      bind_dn=ldap.admin_dn, people=PEOPLE, scim=scim.url,
                                      scim_extra=scim_extra))
        env = {**os.environ, "BENCH_LDAP_PASSWORD": ldap.admin_password,
               "BENCH_SCIM_TOKEN": TOKEN}
        t, _, rss = cycle(config, env)
    return t, rss


def cycle(config: Path, env: dict[str, str]) -> tuple[float, dict[str, Any], float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(ROOT / ".venv/bin/syncd"), "run", "-c", str(config),
                             "-o", "json"], stdout=subprocess.PIPE, env=env)
    out = proc.stdout.read() if proc.stdout else b""
    _, _, usage = os.wait4(proc.pid, 0)
    return time.perf_counter() - t0, json.loads(out), usage.ru_maxrss / 1024


def profile(config: Path, env: dict[str, str], out: Path) -> None:
    """One more no-change cycle under cProfile: where the engine's time goes beyond the
    server's answer (printed: the top functions by cumulative time)."""
    subprocess.run([str(ROOT / ".venv/bin/python"), "-m", "cProfile", "-o", str(out), "-m",
                    "syncd.cli.main", "run", "-c", str(config), "-o", "json"], env=env,
                   check=True, stdout=subprocess.DEVNULL)
    stats = pstats.Stats(str(out))
    stats.sort_stats("cumulative").print_stats(25)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--edits", type=int, default=500)
    ap.add_argument("--overlap", type=int, default=100,
                    help="users whose title is edited on both sides (conflicts)")
    ap.add_argument("--no-push", action="store_true", help="skip the push comparison")
    ap.add_argument("--profile", type=Path, default=None,
                    help="also run one no-change cycle under cProfile, stats to this file")
    ap.add_argument("--page-size", type=int, default=None,
                    help="the SCIM connector's page_size (default: the server's maxResults)")
    args = ap.parse_args()
    scim_extra = "timeout = 300\n" + (f"page_size = {args.page_size}" if args.page_size else "")
    page = args.page_size or 1000
    print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    rnd = random.Random(7)
    work = Path(tempfile.mkdtemp(prefix="syncd-bench2-"))
    ldif = write_ldif(work / "dir.ldif", args.users, 0, 0)
    push = None if args.no_push else push_initial(ldif, work, scim_extra)
    with Slapd(ldif=ldif, size_limit=0) as ldap, Scim2Server(token=TOKEN) as scim:
        config = work / "two.toml"
        config.write_text(CONFIG.format(state=work / "state.db", ldap=ldap.url,
                                        bind_dn=ldap.admin_dn, people=PEOPLE, groups=GROUPS,
                                        scim=scim.url, scim_extra=scim_extra))
        env = {**os.environ, "BENCH_LDAP_PASSWORD": ldap.admin_password,
               "BENCH_SCIM_TOKEN": TOKEN}
        t_init, doc, rss_init = cycle(config, env)
        print(f"initial two-way sync of {args.users} users: {t_init:.1f} s "
              f"(engine {engine(doc):.1f} s, {doc['summary']['user']['create']} creates), "
              f"peak RSS {rss_init:.0f} MB")
        if push is not None:
            print(f"push initial sync of the same, fresh servers: {push[0]:.1f} s, peak RSS "
                  f"{push[1]:.0f} MB -> two-way / push = {t_init / push[0]:.2f}x")
        http = httpx.Client(base_url=scim.url, headers={"Authorization": f"Bearer {TOKEN}"},
                            timeout=600)
        since = scim_cursor(work / "state.db")
        listed = http.get("/Users", params={"filter": f'meta.lastModified ge "{since}"',
                                            "count": 1}).json()["totalResults"]
        t_first, doc, rss_first = cycle(config, env)
        assert doc["changes"] == [], "fixed point after the initial sync"
        print(f"first cycle after the initial sync: lists {listed} SCIM users "
              f"(of {args.users} written), {t_first:.2f} s (engine {engine(doc):.2f} s, "
              f"reads: {doc['flows'][0]['reads']}), peak RSS {rss_first:.0f} MB", flush=True)
        times = []
        for _ in range(3):
            t_nc, doc, rss_nc = cycle(config, env)
            assert doc["changes"] == []
            times.append((t_nc, engine(doc)))
        since = scim_cursor(work / "state.db")
        t0 = time.perf_counter()
        http.get("/Users", params={"filter": f'meta.lastModified ge "{since}"', "count": page})
        raw = time.perf_counter() - t0
        best = min(times)
        if args.profile is not None:
            profile(config, env, args.profile)
        print(f"no-change incremental two-way cycle: {best[0]:.2f} s best of 3 (CLI incl. "
              f"start-up), engine {best[1]:.2f} s (reads: {doc['flows'][0]['reads']}), "
              f"peak RSS {rss_nc:.0f} MB; raw GET of the same SCIM listing {raw:.2f} s")

        both = rnd.sample(range(args.users), args.overlap)
        rest = [i for i in range(args.users) if i not in set(both)]
        ldap_only = rnd.sample(rest, args.edits - args.overlap)
        scim_only = rnd.sample([i for i in rest if i not in set(ldap_only)],
                               args.edits - args.overlap)
        ldap.modify("\n".join(
            f"dn: {user_dn(i)}\nchangetype: modify\nreplace: title\ntitle: L{i}\n"
            for i in both + ldap_only))
        for i in both + scim_only:
            uid = user_uid(i)
            (u,) = http.get("/Users", params={"filter": f'userName eq "{uid}"'}).json()[
                "Resources"]
            ops = ([{"op": "replace", "path": "title", "value": f"S{i}"}] if i in set(both)
                   else [{"op": "replace", "path": "name.givenName", "value": f"G{i}"}])
            http.patch(f"/Users/{u['id']}", json={"schemas": [PATCH], "Operations": ops})
        t_edit, doc, rss_edit = cycle(config, env)
        held = [h for h in doc["flows"][0]["held"] if "conflict" in h["reason"]]
        n_changes = len(doc["changes"])
        to_src = sum(1 for c in doc["changes"] if c.get("source_attrs"))
        to_tgt = sum(1 for c in doc["changes"] if c.get("attrs"))
        print(f"{args.edits} edits on each side ({args.overlap} users edited on both sides, "
              f"same attribute): cycle {t_edit:.2f} s, plan {n_changes} changes "
              f"({to_tgt} to SCIM, {to_src} to LDAP), {len(held)} conflicts held "
              f"(conflict rate {len(held) / (2 * args.edits):.1%} of edits), "
              f"peak RSS {rss_edit:.0f} MB")
        t_after, doc, _ = cycle(config, env)
        print(f"next cycle: {len(doc['changes'])} changes ({t_after:.2f} s) — fixed point")

        conn = ldap3.Connection(ldap.url, ldap.admin_dn, ldap.admin_password, auto_bind=True)
        t0 = time.perf_counter()
        n = sum(1 for _ in conn.extend.standard.paged_search(
            PEOPLE, "(objectClass=inetOrgPerson)", attributes=[
                "uid", "cn", "givenName", "sn", "mail", "title", "entryUUID"],
            paged_size=500, generator=True))
        print(f"reference: raw ldap3 paged read of {n} users: {time.perf_counter() - t0:.2f} s")
    print(f"load average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
