"""Benchmark: two-way LDAP (slapd) <-> SCIM (scim2-server) at 10,000 linked users.

Prints, measured in one run:
  - the initial two-way sync (creates on the SCIM side);
  - a no-change incremental two-way cycle: wall time (CLI subprocess, incl. start-up);
  - a scripted scenario of 500 edits on each side (title on both sides for an overlapping
    subset, givenName only on the SCIM side otherwise): conflict count and rate, plan size,
    cycle time, and that the following cycle plans nothing (fixed point);
  - for reference, a raw ldap3 read of the same attributes.

Usage: .venv/bin/python bench/two_way.py [--users 10000] [--edits 500] [--overlap 100]
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


def cycle(config: Path, env: dict[str, str]) -> tuple[float, dict[str, Any], float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(ROOT / ".venv/bin/syncd"), "run", "-c", str(config),
                             "-o", "json"], stdout=subprocess.PIPE, env=env)
    out = proc.stdout.read() if proc.stdout else b""
    _, _, usage = os.wait4(proc.pid, 0)
    return time.perf_counter() - t0, json.loads(out), usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--edits", type=int, default=500)
    ap.add_argument("--overlap", type=int, default=100,
                    help="users whose title is edited on both sides (conflicts)")
    args = ap.parse_args()
    rnd = random.Random(7)
    work = Path(tempfile.mkdtemp(prefix="syncd-bench2-"))
    ldif = write_ldif(work / "dir.ldif", args.users, 0, 0)
    with Slapd(ldif=ldif, size_limit=0) as ldap, Scim2Server(token=TOKEN) as scim:
        config = work / "two.toml"
        config.write_text(CONFIG.format(state=work / "state.db", ldap=ldap.url,
                                        bind_dn=ldap.admin_dn, people=PEOPLE, groups=GROUPS,
                                        scim=scim.url))
        env = {**os.environ, "BENCH_LDAP_PASSWORD": ldap.admin_password,
               "BENCH_SCIM_TOKEN": TOKEN}
        t_init, doc, rss_init = cycle(config, env)
        print(f"initial two-way sync of {args.users} users: {t_init:.1f} s "
              f"({doc['summary']['user']['create']} creates), peak RSS {rss_init:.0f} MB")
        # The first incremental cycle reads back what the initial sync wrote (the target's
        # cursor predates those writes: at-least-once); the ones after are the steady state.
        t_echo, doc, _ = cycle(config, env)
        assert doc["changes"] == [], "fixed point after the initial sync"
        times = []
        for _ in range(3):
            t_nc, doc, rss_nc = cycle(config, env)
            assert doc["changes"] == []
            times.append(t_nc)
        print(f"first incremental cycle (reads back its own writes, plans nothing): "
              f"{t_echo:.2f} s")
        print(f"no-change incremental two-way cycle: {min(times):.2f} s best of 3 "
              f"(CLI incl. ~1 s start-up; reads: {doc['flows'][0]['reads']}), "
              f"peak RSS {rss_nc:.0f} MB")

        both = rnd.sample(range(args.users), args.overlap)
        rest = [i for i in range(args.users) if i not in set(both)]
        ldap_only = rnd.sample(rest, args.edits - args.overlap)
        scim_only = rnd.sample([i for i in rest if i not in set(ldap_only)],
                               args.edits - args.overlap)
        ldap.modify("\n".join(
            f"dn: {user_dn(i)}\nchangetype: modify\nreplace: title\ntitle: L{i}\n"
            for i in both + ldap_only))
        http = httpx.Client(base_url=scim.url, headers={"Authorization": f"Bearer {TOKEN}"})
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


if __name__ == "__main__":
    main()
