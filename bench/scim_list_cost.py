"""Benchmark: what one SCIM listing request costs the server at N stored users.

Why: a two-way cycle against a SCIM target is at least one ``filter=meta.lastModified ge``
listing, and the catch-up after an initial sync lists every user it created. How much of a
cycle is the server's answer decides which goals can be met at all (bench/README.md,
two_way.py). Two servers:

  - ``--server scim2``: scim2-server's WSGI app in this process (`httpx.WSGITransport`), the
    users loaded through its /Bulk; prints wall and CPU time of this process per request
    (the CPU is the server's work plus a small client share, whatever the machine's load).
  - ``--server django``: django-scim2-server (SQLite, waitress, a subprocess), the users
    inserted straight into its tables (it has no /Bulk: ~120 creates/s), its user adapter
    extended with ``meta.lastModified -> last_modified`` (it has no such filter otherwise:
    400 invalidFilter); prints wall time, best of 3.

Usage: nice .venv/bin/python bench/scim_list_cost.py [--server scim2|django] [--users 20000]
"""

from __future__ import annotations

import argparse
import datetime
import os
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.peers.run_scim2_server import build_app  # noqa: E402
from tests.peers.scim_servers import DjangoScimServer  # noqa: E402

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
BULK = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
FUTURE = 'meta.lastModified ge "2999-01-01T00:00:00.000000Z"'
PAST = 'meta.lastModified ge "2000-01-01T00:00:00.000000Z"'


def timed(client: httpx.Client, label: str, params: dict[str, Any]) -> None:
    best: tuple[float, float] | None = None
    for _ in range(3):
        w0, c0 = time.perf_counter(), time.process_time()
        r = client.get("/Users", params=params)
        took = (time.perf_counter() - w0, time.process_time() - c0)
        assert r.status_code == 200, r.text[:300]
        best = took if best is None or took < best else best
    assert best is not None
    doc = r.json()
    print(f"  {label}: wall {best[0]:.3f} s, CPU here {best[1]:.3f} s "
          f"(totalResults {doc['totalResults']}, {len(doc.get('Resources', []))} returned)",
          flush=True)


def requests(client: httpx.Client, page: int, recent: str) -> None:
    timed(client, f"filtered, nothing matches (a no-change cycle), count {page}",
          {"filter": FUTURE, "count": page})
    timed(client, f"filtered, the last 150 match, count {page}",
          {"filter": f'meta.lastModified ge "{recent}"', "count": page})
    timed(client, f"filtered, all match, count {page}", {"filter": PAST, "count": page})
    timed(client, f"unfiltered, count {page}", {"count": page, "startIndex": 1})
    timed(client, "unfiltered, count 0", {"count": 0})


def scim2(n: int) -> None:
    client = httpx.Client(transport=httpx.WSGITransport(app=build_app([])),
                          base_url="http://scim2/v2", timeout=600)
    t0 = time.perf_counter()
    recent = ""
    for start in range(0, n, 1000):
        ops = [{"method": "POST", "path": "/Users", "bulkId": str(i), "data": {
            "schemas": [USER], "userName": f"u{i}", "displayName": f"User {i}",
            "name": {"givenName": "G", "familyName": f"F{i}"}, "title": "t",
            "emails": [{"type": "work", "value": f"u{i}@example.com"}], "externalId": str(i)}}
            for i in range(start, min(n, start + 1000))]
        if start + 1000 >= n:  # the last 150 are created after this instant
            client.post("/Bulk", json={"schemas": [BULK], "Operations": ops[:-150]})
            time.sleep(0.01)  # a distinct timestamp, not synchronisation
            recent = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            ops = ops[-150:]
        r = client.post("/Bulk", json={"schemas": [BULK], "Operations": ops})
        assert r.status_code == 200, r.text[:300]
    print(f"scim2-server in-process, {n} users loaded through /Bulk in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    requests(client, 1000, recent)


def django(n: int) -> None:
    server = DjangoScimServer(token="bench")
    server._generate()
    assert server.dir is not None
    pkg = server.dir / "scimpeer"
    (pkg / "adapters.py").write_text(
        "from django_scim2_server.adapters import DefaultUserAdapter\n\n\n"
        "class WatermarkUserAdapter(DefaultUserAdapter):\n"
        "    filter_map = {**DefaultUserAdapter.filter_map,\n"
        "                  'meta.lastModified': 'last_modified'}\n")
    with open(pkg / "settings.py", "a", encoding="utf-8") as fh:
        fh.write('SCIM2_SERVER_USER_ADAPTER = "scimpeer.adapters.WatermarkUserAdapter"\n')
    at = datetime.datetime(2026, 1, 1)
    stamp: Callable[[int], str] = lambda i: (at + datetime.timedelta(seconds=i)).isoformat(" ")  # noqa: E731
    con = sqlite3.connect(server.db)
    with con:
        con.executemany(
            "insert into auth_user (id, password, is_superuser, username, last_name, email, "
            "is_staff, is_active, date_joined, first_name) values (?,?,?,?,?,?,?,?,?,?)",
            ((i + 1, "", 0, f"u{i}", f"F{i}", f"u{i}@example.com", 0, 1, stamp(0), "G")
             for i in range(n)))
        con.executemany(
            "insert into django_scim2_server_scimuser (id, user_id, external_id, "
            "scim_username, active, created, last_modified) values (?,?,?,?,?,?,?)",
            ((uuid.uuid4().hex, i + 1, str(i), f"u{i}", 1, stamp(0), stamp(i))
             for i in range(n)))
    con.close()
    print(f"django-scim2-server (SQLite, waitress), {n} users inserted into its tables",
          flush=True)
    with server:
        client = httpx.Client(base_url=server.url, timeout=600,
                              headers={"Authorization": "Bearer bench"})
        recent = (at + datetime.timedelta(seconds=n - 150)).strftime("%Y-%m-%dT%H:%M:%SZ")
        requests(client, 200, recent)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", choices=["scim2", "django"], default="scim2")
    ap.add_argument("--users", type=int, default=20_000)
    args = ap.parse_args()
    print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    (scim2 if args.server == "scim2" else django)(args.users)
    print(f"load average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
