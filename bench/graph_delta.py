"""Benchmark: Graph delta reads of a 20,000-user tenant (the local Graph fake), syncd's
connector (real msgraph-sdk) against a bare httpx client walking the same pages.

Prints, measured in one run against the same fake process:
  - raw: httpx (keep-alive) following nextLinks of a full ``/users/delta()`` round with the
    same ``$select`` and page size — the best a client can do against this server;
  - syncd full round: `GraphConnector.read` with no cursor: users/s, requests, ratio to raw;
  - syncd no-change round: the cursor of the full round: wall time and requests;
  - syncd round with 10 changes (3 updates, 2 soft deletes, 5 new users).

Usage: .venv/bin/python bench/graph_delta.py [--users 20000] [--page-size 999]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from syncd_connectors.graph.config import GraphConfig  # noqa: E402
from syncd_connectors.graph.connector import GraphConnector  # noqa: E402
from tests.peers.run_graph_fake import GraphFakeServer  # noqa: E402

ATTRS = ["userprincipalname", "displayname", "givenname", "surname", "mail", "jobtitle",
         "department", "employeeid", "accountenabled"]
SELECT = "id,userPrincipalName,displayName,givenName,surname,mail,jobTitle,department," \
         "employeeId,accountEnabled"


def raw_round(fake: GraphFakeServer, page: int) -> tuple[int, int, float]:
    started, n, requests = time.perf_counter(), 0, 0
    headers = {"Authorization": f"Bearer {fake.token}", "Prefer": f"odata.maxpagesize={page}"}
    with httpx.Client(headers=headers, timeout=120) as client:
        url: str | None = f"{fake.url}/users/delta()?$select={SELECT}"
        while url:
            body = client.get(url).raise_for_status().json()
            requests += 1
            n += len(body["value"])
            url = body.get("@odata.nextLink")
    return n, requests, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--page-size", type=int, default=999)
    args = parser.parse_args()
    with GraphFakeServer(token="bench-token") as fake:
        t = time.perf_counter()
        ids = fake.seed(args.users)["users"]
        print(f"seeded {len(ids)} users in {time.perf_counter() - t:.1f} s")
        n, reqs, secs = raw_round(fake, args.page_size)
        print(f"raw httpx full round:   {n} users, {reqs} requests, {secs:.2f} s, "
              f"{n / secs:,.0f} users/s")
        cfg = GraphConfig.model_validate({"auth": "token", "token": "bench-token",
                                          "endpoint": fake.url, "page_size": args.page_size})
        conn = GraphConnector("bench", cfg)
        t = time.perf_counter()
        conn.open()
        opened = time.perf_counter() - t
        try:
            fake.requests(clear=True)
            t = time.perf_counter()
            batches = list(conn.read("user", None, ATTRS))
            full = time.perf_counter() - t
            count = sum(len(b.entries) for b in batches)
            full_reqs = len(fake.requests(clear=True))
            print(f"syncd open (imports + client + probe): {opened:.2f} s")
            print(f"syncd full round:       {count} users, {full_reqs} requests, {full:.2f} s, "
                  f"{count / full:,.0f} users/s ({full / secs:.2f}x raw)")
            cursor = batches[-1].cursor
            t = time.perf_counter()
            (nothing,) = list(conn.read("user", cursor, ATTRS))
            idle = time.perf_counter() - t
            print(f"syncd no-change round:  {len(nothing.entries)} entries, "
                  f"{len(fake.requests(clear=True))} requests, {idle * 1000:.1f} ms")
            for uid in ids[:3]:
                fake.graph("PATCH", f"/users/{uid}", {"jobTitle": "Changed"})
            for uid in ids[3:5]:
                fake.graph("DELETE", f"/users/{uid}")
            for i in range(5):
                fake.add_user(f"new{i}@contoso.example.com")
            fake.requests(clear=True)
            t = time.perf_counter()
            changed = list(conn.read("user", nothing.cursor, ATTRS))
            secs10 = time.perf_counter() - t
            got = sum(len(b.entries) for b in changed)
            gone = sum(len(b.deleted) for b in changed)
            print(f"syncd 10-change round:  {got} entries + {gone} deleted, "
                  f"{len(fake.requests())} requests, {secs10 * 1000:.1f} ms")
        finally:
            conn.close()


if __name__ == "__main__":
    main()
