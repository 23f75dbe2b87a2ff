"""Benchmark: one very large group ("all staff"), slapd -> scim2-server, against a raw client.

A directory of N users (20,000) and one group holding all of them. Measured in one run, each
figure next to a bare httpx client doing the same writes on the same kind of server:

 1. initial sync (``syncd run``, subprocess, peak RSS) vs raw: users through /Bulk (split by
    maxOperations / maxPayloadSize like syncd), the group, then its members in as few PATCHes
    as the server's declared maxPayloadSize allows — the best a client can do;
 2. a cycle with one member added (a new user) and one removed: wall time, and the requests
    and request-body bytes that reached the server (counted by a proxy in front of it), vs a
    raw client sending the same create and one member PATCH;
 3. removing 5,000 members in one run (``max_member_removals`` raised to allow it): wall time
    and requests vs a raw client doing the same thing the fast way (read the members with
    their ETag, one members replace with If-Match).

Every run must leave the group exactly right; the bench checks it and says MISMATCH if not.

Usage: .venv/bin/python bench/large_group.py [--users 20000] [--remove 5000] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scale import (  # noqa: E402  (one flow and one way of running syncd for all)
    BULK,
    CONFIG,
    GROUP_FILTER,
    GROUP_SCHEMA,
    PATCH,
    TOKEN,
    USER_FILTER,
    _bulk_chunks,
    _encode,
    syncd_run,
    user_payload,
)
from tests.peers.directory import GROUPS, PEOPLE, group_cn, group_dn, user_dn, write_ldif  # noqa: E402
from tests.peers.fault_proxy import FaultProxy  # noqa: E402
from tests.peers.scim_servers import Scim2Server  # noqa: E402
from tests.peers.slapd import Slapd  # noqa: E402

SAFETY = """
[flows.bench.safety]
max_member_removals = {removals}
"""


def client(url: str, concurrency: int) -> httpx.Client:
    return httpx.Client(base_url=url + "/", timeout=300,
                        headers={"Authorization": f"Bearer {TOKEN}",
                                 "Content-Type": "application/scim+json"},
                        limits=httpx.Limits(max_connections=concurrency,
                                            max_keepalive_connections=concurrency))


def raw_initial(scim: Scim2Server, users: int, concurrency: int) -> tuple[float, list[str], str]:
    """Users via /Bulk, the group, all members in as few PATCHes as maxPayloadSize allows."""
    scim.reset()
    http = client(scim.url, concurrency)
    t0 = time.perf_counter()
    bulk = http.get("ServiceProviderConfig").json()["bulk"]
    max_ops, max_payload = int(bulk["maxOperations"]), int(bulk["maxPayloadSize"])
    ops = [_encode({"method": "POST", "path": "/Users", "bulkId": str(i),
                    "data": user_payload(i)}) for i in range(users)]
    ids = [""] * users

    def send(chunk: list[int]) -> None:
        body = (_encode({"schemas": [BULK]})[:-1] + b',"Operations":['
                + b",".join(ops[i] for i in chunk) + b"]}")
        r = http.post("Bulk", content=body)
        r.raise_for_status()
        for o in r.json()["Operations"]:
            ids[int(o["bulkId"])] = o["location"].rstrip("/").rsplit("/", 1)[-1]

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(send, _bulk_chunks(ops, max_ops, max_payload)))
    r = http.post("Groups", json={"schemas": [GROUP_SCHEMA], "displayName": group_cn(0)})
    r.raise_for_status()
    gid = r.json()["id"]
    per = max(1, (max_payload - 200) // len(_encode({"value": ids[0]}) + b","))
    for k in range(0, users, per):
        r = http.patch(f"Groups/{gid}", json={"schemas": [PATCH], "Operations": [
            {"op": "add", "path": "members", "value": [{"value": v} for v in ids[k:k + per]]}]})
        r.raise_for_status()
    elapsed = time.perf_counter() - t0
    http.close()
    return elapsed, ids, gid


def members(url: str, gid: str) -> list[str]:
    r = httpx.get(f"{url}/Groups/{gid}", params={"attributes": "members"}, timeout=120,
                  headers={"Authorization": f"Bearer {TOKEN}"})
    r.raise_for_status()
    return [m["value"] for m in r.json().get("members", [])]


def the_group(url: str) -> str:
    r = httpx.get(f"{url}/Groups", params={"count": 10, "attributes": "displayName"},
                  headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120)
    (g,) = r.json()["Resources"]
    return str(g["id"])


def user_ids(url: str, names: list[str]) -> dict[str, str]:
    out = {}
    with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as http:
        for n in names:
            r = http.get(f"{url}/Users", params={"filter": f'userName eq "{n}"',
                                                 "attributes": "userName"})
            (u,) = r.json()["Resources"]
            out[n] = u["id"]
    return out


def uid_of(dn: str) -> str:
    return dn.split(",", 1)[0].split("=", 1)[1]


def _kind(e: Any) -> str:
    """What one request was for, from its method and path."""
    last = e.path.rstrip("/").rsplit("/", 1)[-1]
    if last in ("ResourceTypes", "Schemas", "ServiceProviderConfig"):
        return "discovery"
    if e.method == "GET" and "/Users/" in e.path:
        return "token probe"
    if e.method == "GET" and e.path.endswith("/Users"):
        return "user lookup"
    if e.method == "GET" and "/Groups/" in e.path:
        return "members read"
    return f"{e.method} {e.path.rsplit('/', 2)[-2] if '/Groups/' in e.path else last}"


def traffic(proxy: FaultProxy, since: int) -> tuple[int, int, str]:
    """Requests and request-body bytes the server got since event `since`, by purpose."""
    events = proxy.events()[since:]
    kinds: dict[str, list[int]] = {}
    for e in events:
        kinds.setdefault(_kind(e), []).append(e.received)
    shown = ", ".join(f"{k} {len(v)}" + (f" ({sum(v):,} B)" if sum(v) else "")
                      for k, v in sorted(kinds.items()))
    return len(events), sum(e.received for e in events), shown


def line(label: str, seconds: float, extra: str = "") -> str:
    return f"{label:48s} {seconds:8.2f} s  {extra}".rstrip()


def raw_cycle(http: httpx.Client, gid: str, remove: str, n: int) -> tuple[float, int]:
    """The writes of step 2 on the raw side's group: one create, one member PATCH."""
    t0 = time.perf_counter()
    r1 = http.post("Users", json=user_payload(n))
    r1.raise_for_status()
    r2 = http.patch(f"Groups/{gid}", json={"schemas": [PATCH], "Operations": [
        {"op": "add", "path": "members", "value": [{"value": r1.json()["id"]}]},
        {"op": "remove", "path": f'members[value eq "{remove}"]'}]})
    r2.raise_for_status()
    return time.perf_counter() - t0, len(r1.request.content) + len(r2.request.content)


def raw_remove(http: httpx.Client, gid: str, remove: set[str]) -> tuple[float, int]:
    """The fast way to remove many members: read them with the ETag, one If-Match replace."""
    t0 = time.perf_counter()
    r = http.get(f"Groups/{gid}", params={"attributes": "members"})
    keep = [m["value"] for m in r.json()["members"] if m["value"] not in remove]
    r2 = http.patch(f"Groups/{gid}", headers={"If-Match": r.headers["ETag"]}, json={
        "schemas": [PATCH], "Operations": [
            {"op": "replace", "path": "members", "value": [{"value": v} for v in keep]}]})
    r2.raise_for_status()
    return time.perf_counter() - t0, len(keep)


def run_all(args: argparse.Namespace, work: Path) -> Iterator[str]:
    n = args.users
    t0 = time.perf_counter()
    ldif = write_ldif(work / "dir.ldif", n, 1, n)  # one group holding everybody
    with Slapd(ldif=ldif, size_limit=0) as ldap, Scim2Server(token=TOKEN) as scim:
        yield (f"directory: {n:,} users, one group of {n:,} members; concurrency "
               f"{args.concurrency}; loaded in {time.perf_counter() - t0:.1f} s")
        env = {**os.environ, "BENCH_LDAP_PASSWORD": ldap.admin_password,
               "BENCH_SCIM_TOKEN": TOKEN}
        state, config = work / "state.db", work / "syncd.toml"

        def configure(url: str) -> None:
            config.write_text(CONFIG.format(
                state=state, ldap=ldap.url, bind_dn=ldap.admin_dn, people=PEOPLE,
                groups=GROUPS, user_filter=USER_FILTER, group_filter=GROUP_FILTER, scim=url,
                concurrency=args.concurrency) + SAFETY.format(removals=max(500, args.remove)))

        # the raw client first, on its own server process: the same three steps
        t_raw, raw_ids, raw_gid = raw_initial(scim, n, args.concurrency)
        raw_ok = len(set(members(scim.url, raw_gid))) == n
        yield line("raw HTTP initial (/Bulk users + member PATCHes)", t_raw,
                   "" if raw_ok else "MISMATCH")
        with client(scim.url, 1) as http:
            t_raw1, raw_bytes = raw_cycle(http, raw_gid, raw_ids[0], n)
            t_raw2, raw_left = raw_remove(http, raw_gid, set(raw_ids[1:args.remove + 1]))
        yield line("raw HTTP: 1 create + 1 member PATCH (add+remove)", t_raw1,
                   f"2 requests, {raw_bytes:,} bytes")
        yield line(f"raw HTTP: remove {args.remove:,} (read + If-Match replace)", t_raw2,
                   f"2 requests, group left with {raw_left:,}")
        scim.stop()  # a fresh server process for syncd
        scim.start()

        # 1. initial sync
        configure(scim.url)
        init = syncd_run(config, env)
        gid = the_group(scim.url)
        got = members(scim.url, gid)
        ok = init.rc == 0 and len(got) == len(set(got)) == n
        yield line("1. syncd initial sync", init.wall,
                   f"{init.wall / t_raw:.2f}x raw  peak RSS {init.rss_mb:.0f} MB  engine "
                   f"{init.engine:.2f} s  [{init.summary}]  group {len(got):,} members"
                   + ("" if ok else f"  MISMATCH exit {init.rc}"))

        with FaultProxy(scim.url, idle_timeout=600) as proxy:  # counts requests and bytes
            configure(proxy.url)
            # 2. one member added (a new user), one removed
            new_dn = user_dn(n)
            ldap.add(f"dn: {new_dn}\nobjectClass: inetOrgPerson\nuid: {uid_of(new_dn)}\n"
                     f"cn: New Hire\nsn: Hire\ngivenName: New\nmail: {uid_of(new_dn)}"
                     f"@example.com\n")
            ldap.modify(f"dn: {group_dn(0)}\nchangetype: modify\nadd: member\n"
                        f"member: {new_dn}\n-\ndelete: member\nmember: {user_dn(0)}\n")
            before = len(proxy.events())
            one = syncd_run(config, env)
            reqs, sent, how = traffic(proxy, before)
            got_set = set(members(scim.url, gid))
            ids = user_ids(scim.url, [uid_of(new_dn), uid_of(user_dn(0))])
            ok = (one.rc == 0 and ids[uid_of(new_dn)] in got_set
                  and ids[uid_of(user_dn(0))] not in got_set and len(got_set) == n)
            yield line("2. syncd cycle: +1 member (new user), -1 member", one.wall,
                       f"{one.wall / t_raw1:.1f}x raw  engine {one.engine:.2f} s  {reqs} "
                       f"requests ({how}), {sent:,} bytes sent  peak RSS {one.rss_mb:.0f} MB  "
                       f"[{one.summary}]" + ("" if ok else f"  MISMATCH exit {one.rc}"))

            # 3. remove `args.remove` members in one run
            gone = [user_dn(i) for i in range(1, args.remove + 1)]
            ldap.modify(f"dn: {group_dn(0)}\nchangetype: modify\ndelete: member\n"
                        + "".join(f"member: {d}\n" for d in gone))
            before = len(proxy.events())
            many = syncd_run(config, env)
            reqs, sent, how = traffic(proxy, before)
        got = members(scim.url, gid)
        want = n - args.remove
        ok = many.rc == 0 and len(got) == len(set(got)) == want
        yield line(f"3. syncd run removing {args.remove:,} members", many.wall,
                   f"{many.wall / t_raw2:.2f}x raw  engine {many.engine:.2f} s  {reqs} "
                   f"requests ({how}), {sent:,} bytes sent  peak RSS {many.rss_mb:.0f} MB  "
                   f"[{many.summary}]  group {len(got):,} members (want {want:,})"
                   + ("" if ok else f"  MISMATCH exit {many.rc}"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--remove", type=int, default=5_000)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="syncd-large-group-") as tmp:
        for text in run_all(args, Path(tmp)):
            print(text, flush=True)


if __name__ == "__main__":
    main()
