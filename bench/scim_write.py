"""Benchmark: SCIM user creates, the connector against raw httpx, same server, same run.

A scim2-server (waitress, keep-alive) is started once and reset before each way, so every
way creates the same N users into an empty directory:

  raw POST      httpx.Client, `concurrency` threads, one POST /Users per user
  raw /Bulk     httpx.Client, /Bulk requests of the server's maxOperations, `concurrency`
                requests in flight
  conn create   ScimConnector.create from a pool of `concurrency` threads (as apply does)
  conn bulk     ScimConnector.create_many(all users)

Prints creates/s, the connector/raw ratios and this process's peak RSS after each way.

Usage: .venv/bin/python bench/scim_write.py [--users 10000] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from syncd.errors import ConnectorError  # noqa: E402
from syncd.model import Value  # noqa: E402
from syncd_connectors.scim.config import ScimConfig  # noqa: E402
from syncd_connectors.scim.connector import ScimConnector  # noqa: E402
from tests.peers.scim_servers import Scim2Server  # noqa: E402

TOKEN = "bench-token"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
BULK = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"


def attrs(i: int) -> dict[str, Value]:
    return {"userName": f"user{i:06d}", "displayName": f"User Nümber {i}",
            "name.givenName": "User", "name.familyName": f"Nümber {i}",
            "emails.work": f"user{i}@example.com", "active": True}  # fmt: skip


def scim_json(i: int) -> dict[str, Any]:
    """What the connector sends for `attrs(i)`: the raw clients send the same bytes' worth."""
    return {"schemas": [USER], "userName": f"user{i:06d}", "displayName": f"User Nümber {i}",
            "name": {"givenName": "User", "familyName": f"Nümber {i}"},
            "emails": [{"value": f"user{i}@example.com", "type": "work", "primary": True}],
            "active": True}  # fmt: skip


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def client(server: Scim2Server, n: int) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=120,
                        headers={"Authorization": f"Bearer {TOKEN}",
                                 "Content-Type": "application/scim+json"},
                        limits=httpx.Limits(max_connections=n, max_keepalive_connections=n))


def raw_post(server: Scim2Server, users: int, conc: int) -> int:
    with client(server, conc) as http, ThreadPoolExecutor(conc) as pool:
        def one(i: int) -> int:
            r = http.post("/Users", content=json.dumps(scim_json(i)).encode())
            return int(r.status_code == 201)
        return sum(pool.map(one, range(users)))


def raw_bulk(server: Scim2Server, users: int, conc: int) -> int:
    with client(server, conc) as http:
        max_ops = int(http.get("/ServiceProviderConfig").json()["bulk"]["maxOperations"])
        chunks = [range(s, min(s + max_ops, users)) for s in range(0, users, max_ops)]

        def one(chunk: range) -> int:
            ops = [{"method": "POST", "path": "/Users", "bulkId": str(i), "data": scim_json(i)}
                   for i in chunk]
            r = http.post("/Bulk", content=json.dumps({"schemas": [BULK], "Operations": ops}))
            r.raise_for_status()
            return sum(1 for o in r.json()["Operations"] if str(o["status"]) == "201")

        with ThreadPoolExecutor(conc) as pool:
            return sum(pool.map(one, chunks))


def connector(server: Scim2Server, conc: int) -> ScimConnector:
    conn = ScimConnector("bench", ScimConfig.model_validate(
        {"url": server.url, "token": TOKEN, "concurrency": conc}))
    conn.open()
    return conn


def conn_create(server: Scim2Server, users: int, conc: int) -> int:
    conn = connector(server, conc)
    try:
        with ThreadPoolExecutor(conc) as pool:
            return sum(1 for _ in pool.map(lambda i: conn.create("user", attrs(i)),
                                           range(users)))
    finally:
        conn.close()


def conn_bulk(server: Scim2Server, users: int, conc: int) -> int:
    conn = connector(server, conc)
    try:
        results = conn.create_many("user", [attrs(i) for i in range(users)])
        errors = [r for r in results if isinstance(r, ConnectorError)]
        assert not errors, errors[:3]
        return len(results)
    finally:
        conn.close()


def count_users(server: Scim2Server) -> int:
    r = httpx.get(server.url + "/Users", params={"count": 1},
                  headers={"Authorization": f"Bearer {TOKEN}"})
    return int(r.json()["totalResults"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    ways: list[tuple[str, Callable[[Scim2Server, int, int], int]]] = [
        ("raw POST", raw_post), ("raw /Bulk", raw_bulk),
        ("conn create", conn_create), ("conn bulk", conn_bulk),
    ]
    rates: dict[str, float] = {}
    with Scim2Server(token=TOKEN) as server:
        for name, fn in ways:
            server.reset()
            t0 = time.perf_counter()
            done = fn(server, args.users, args.concurrency)
            took = time.perf_counter() - t0
            assert done == args.users == count_users(server), (name, done)
            rates[name] = args.users / took
            print(f"{name:12s} {args.users} users in {took:7.2f} s = {rates[name]:7.0f} "
                  f"creates/s   peak RSS {peak_rss_mb():6.0f} MB", flush=True)
    print(f"ratio conn create / raw POST  = {rates['conn create'] / rates['raw POST']:.2f}")
    print(f"ratio conn bulk   / raw /Bulk = {rates['conn bulk'] / rates['raw /Bulk']:.2f}")
    print(f"ratio conn bulk   / raw POST  = {rates['conn bulk'] / rates['raw POST']:.2f}")


if __name__ == "__main__":
    main()
