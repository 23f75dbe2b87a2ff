"""Benchmark: initial and no-change sync of a generated directory, slapd -> scim2-server.

Prints, all measured in the same run on the same servers:
  - raw: a bare httpx client (keep-alive, same concurrency as syncd) POSTing the same users
    and groups (with members) to a freshly reset scim2-server — the best a client can do;
  - syncd run (initial): full LDAP read + plan + apply, as a subprocess; wall time, peak RSS;
  - syncd run (no change): second run; wall time, peak RSS;
  - raw ldap3 paged read of the mapped attributes, for reference.

Usage: .venv/bin/python bench/initial_sync.py [--users 10000] [--groups 100] [--members 100]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import ldap3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scale import CONFIG, GROUP_FILTER, USER_FILTER  # noqa: E402  (one flow for both)
from tests.peers.directory import (  # noqa: E402
    GROUPS,
    PEOPLE,
    group_cn,
    group_member_indexes,
    user_attrs,
    write_ldif,
)
from tests.peers.scim_servers import Scim2Server  # noqa: E402
from tests.peers.slapd import Slapd  # noqa: E402

CONCURRENCY = 8
TOKEN = "bench-token"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def user_payload(i: int) -> dict[str, object]:
    a = user_attrs(i)
    body: dict[str, object] = {
        "schemas": [USER_SCHEMA, ENTERPRISE], "userName": a["uid"][0], "active": True,
        "displayName": a["cn"][0], "externalId": f"ext-{i}",
        "name": {"givenName": a["givenname"][0], "familyName": a["sn"][0]},
        "emails": [{"type": "work", "value": a["mail"][0], "primary": True}],
        ENTERPRISE: {"employeeNumber": a["employeenumber"][0]},
    }
    if "title" in a:
        body["title"] = a["title"][0]
    return body


def raw_http(scim: Scim2Server, users: int, groups: int, members: int) -> float:
    """Same creates as syncd's initial sync, with nothing else: the lower bound."""
    scim.reset()
    client = httpx.Client(base_url=scim.url, headers={"Authorization": f"Bearer {TOKEN}"},
                          limits=httpx.Limits(max_keepalive_connections=CONCURRENCY),
                          timeout=60)
    ids: dict[int, str] = {}
    t0 = time.perf_counter()

    def post_user(i: int) -> None:
        r = client.post("/Users", json=user_payload(i))
        r.raise_for_status()
        ids[i] = r.json()["id"]

    def post_group(j: int) -> None:
        r = client.post("/Groups", json={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": group_cn(j)})
        r.raise_for_status()
        gid = r.json()["id"]
        mem = [{"value": ids[i]} for i in group_member_indexes(j, users, members)]
        r = client.patch(f"/Groups/{gid}", json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "add", "path": "members", "value": mem}]})
        r.raise_for_status()

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(post_user, range(users)))
        list(pool.map(post_group, range(groups)))
    elapsed = time.perf_counter() - t0
    client.close()
    return elapsed


def raw_ldap_read(ldap: Slapd) -> tuple[float, int]:
    attrs = ["uid", "cn", "givenName", "sn", "mail", "title", "employeeNumber", "entryUUID"]
    conn = ldap3.Connection(ldap.url, ldap.admin_dn, ldap.admin_password, auto_bind=True)
    t0 = time.perf_counter()
    n = 0
    for _ in conn.extend.standard.paged_search(PEOPLE, "(objectClass=inetOrgPerson)",
                                               attributes=attrs, paged_size=500,
                                               generator=True):
        n += 1
    elapsed = time.perf_counter() - t0
    conn.unbind()
    return elapsed, n


def syncd_run(config: Path, env: dict[str, str]) -> tuple[float, float, int]:
    """Wall time (s), peak RSS (MB) and exit code of one `syncd run` subprocess."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(ROOT / ".venv/bin/syncd"), "run", "-c", str(config),
                             "-o", "json"], stdout=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - t0, usage.ru_maxrss / 1024, proc.returncode


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--groups", type=int, default=100)
    ap.add_argument("--members", type=int, default=100)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="syncd-bench-"))
    ldif = write_ldif(work / "dir.ldif", args.users, args.groups, args.members)
    with Slapd(ldif=ldif, size_limit=0) as ldap, Scim2Server(token=TOKEN) as scim:
        config = work / "syncd.toml"
        config.write_text(CONFIG.format(
            state=work / "state.db", ldap=ldap.url, bind_dn=ldap.admin_dn, people=PEOPLE,
            groups=GROUPS, user_filter=USER_FILTER, group_filter=GROUP_FILTER, scim=scim.url,
            concurrency=CONCURRENCY))
        env = {**os.environ, "BENCH_LDAP_PASSWORD": ldap.admin_password,
               "BENCH_SCIM_TOKEN": TOKEN}
        t_ldap, n = raw_ldap_read(ldap)
        t_raw = raw_http(scim, args.users, args.groups, args.members)
        scim.reset()
        t_init, rss_init, rc1 = syncd_run(config, env)
        t_again, rss_again, rc2 = syncd_run(config, env)
        check = httpx.get(scim.url + "/Users", params={"count": 1},
                          headers={"Authorization": f"Bearer {TOKEN}"}).json()
    print(f"directory: {args.users} users, {args.groups} groups x {args.members} members; "
          f"concurrency {CONCURRENCY}")
    print(f"raw ldap3 paged read ({n} users, 8 attrs): {t_ldap:7.2f} s  "
          f"({n / t_ldap:,.0f} entries/s)")
    print(f"raw HTTP creates (users + groups + members): {t_raw:7.2f} s")
    print(f"syncd initial sync:                       {t_init:7.2f} s  "
          f"ratio {t_init / t_raw:.2f}x raw HTTP  peak RSS {rss_init:.0f} MB  exit {rc1}")
    print(f"syncd no-change run:                      {t_again:7.2f} s  "
          f"ratio {t_again / t_ldap:.2f}x raw ldap3 read  peak RSS {rss_again:.0f} MB  "
          f"exit {rc2}")
    print(f"target holds {check.get('totalResults')} users")


if __name__ == "__main__":
    main()
