"""Benchmark: a SCIM service provider under Entra-like load, against scim2-server in the same run.

The subject is any SCIM 2.0 service provider:

  --url URL --token T [--pid PID]   one already running (PID: its process, for peak RSS)
  --start-syncd                     `syncd serve`, started here (only when `syncd serve
                                    --help` works) with a minimal config (SQLite state store
                                    in a temp dir, one scim_inbox directory, no rate limit)
                                    or --syncd-config; base URL http://127.0.0.1:PORT/v2
  neither                           no subject: only the baseline is measured

The baseline is scim2-server (in memory, served by waitress with keep-alive, tests/peers),
started fresh here and driven with exactly the same requests. For each server, in order:

  create   POST /Users, Entra's create body (userName, externalId, name, work email, active)
  patch    PATCH /Users/{id}, Entra's aadOptscim062020 update: a work email by filtered path
           plus displayName, name.givenName, name.familyName and employeeNumber in one
           value object without path
  filter   GET /Users?filter=userName eq "..." (Entra's existence check), one per user

Each phase sends `--users` requests from `--concurrency` threads over one keep-alive httpx
client and prints the sustained rate (requests / wall time), p50 and p99 latency, the number
of wrong statuses, then the server process's peak RSS (VmHWM from /proc/PID/status) and the
subject / baseline ratios. The subject's users are deleted afterwards (not timed) unless
--keep. Entra's gallery asks for at least 25 requests/s per tenant.

`--to-slapd N` measures what issue 16 asks besides: the delay from a SCIM request to the
change being visible in a directory. It starts a throwaway slapd (tests/peers, olcDbNoSync)
and `syncd serve --run-flows` whose flow carries the scim_inbox directory into it, then sends
N creates one at a time and N PATCHes (a new title) one at a time, and for each polls slapd
(a base search, every 2 ms) from just before the request until the entry (the value) is
there: p50, p99 and max of request -> visible in slapd, which includes the trigger's
debounce (0.2 s quiet), one run (read, plan, apply) and the LDAP write.

Usage: .venv/bin/python bench/serve.py [--users 2000] [--concurrency 8]
       .venv/bin/python bench/serve.py --url http://127.0.0.1:8080/scim/v2 --token T --pid 1234
       .venv/bin/python bench/serve.py --start-syncd [--users 2000]
       .venv/bin/python bench/serve.py --to-slapd 50 [--users 0]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.peers.scim_servers import Scim2Server, free_port  # noqa: E402

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
PHASES = ("create", "patch", "filter")


@dataclass
class Phase:
    name: str
    seconds: float
    latencies: list[float]
    wrong: int

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        if len(self.latencies) == 1:
            return self.latencies[0]
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[int(q) - 1]


@dataclass
class Target:
    label: str
    url: str
    token: str | None
    pid: int | None
    phases: dict[str, Phase] = field(default_factory=dict)
    peak_rss_mb: float | None = None


def user_name(run: str, i: int) -> str:
    return f"bench.{run}.{i:06d}@example.com"


def create_body(run: str, i: int) -> dict[str, Any]:
    return {"schemas": [USER, ENTERPRISE], "externalId": f"b{run}{i:06d}",
            "userName": user_name(run, i), "active": True, "displayName": f"Bench User {i}",
            "emails": [{"primary": True, "type": "work", "value": user_name(run, i)}],
            "meta": {"resourceType": "User"},
            "name": {"formatted": f"Bench User {i}", "familyName": f"User {i}",
                     "givenName": "Bench"}}  # fmt: skip


def patch_body(run: str, i: int) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": 'emails[type eq "work"].value',
         "value": f"bench.{run}.{i:06d}.new@example.com"},
        {"op": "replace", "value": {"displayName": f"Bench Person {i}", "name.givenName": "Benny",
                                    "name.familyName": f"Person {i}",
                                    f"{ENTERPRISE}:employeeNumber": f"E{i:06d}"}}]}  # fmt: skip


def vm_hwm_mb(pid: int | None) -> float | None:
    """Peak resident set of process `pid` (VmHWM), None when unknown."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def client(target: Target, conc: int) -> httpx.Client:
    headers = {"Content-Type": "application/scim+json", "Accept": "application/scim+json"}
    if target.token:
        headers["Authorization"] = f"Bearer {target.token}"
    return httpx.Client(base_url=target.url, headers=headers, timeout=120,
                        limits=httpx.Limits(max_connections=conc,
                                            max_keepalive_connections=conc))


def timed(users: int, conc: int, one: Callable[[int], bool]) -> tuple[float, list[float], int]:
    latencies = [0.0] * users
    wrong = [0]

    def run(i: int) -> None:
        t0 = time.perf_counter()
        ok = one(i)
        latencies[i] = time.perf_counter() - t0
        if not ok:
            wrong[0] += 1

    t0 = time.perf_counter()
    with ThreadPoolExecutor(conc) as pool:
        list(pool.map(run, range(users)))
    return time.perf_counter() - t0, latencies, wrong[0]


def drive(target: Target, users: int, conc: int, run: str) -> list[str]:
    """The three phases against `target`; returns the ids it created."""
    ids: list[str] = [""] * users
    with client(target, conc) as http:
        def create(i: int) -> bool:
            r = http.post("/Users", content=json.dumps(create_body(run, i)).encode())
            if r.status_code == 201:
                ids[i] = str(r.json()["id"])
            return r.status_code == 201

        def patch(i: int) -> bool:
            if not ids[i]:
                return False
            r = http.patch(f"/Users/{ids[i]}", content=json.dumps(patch_body(run, i)).encode())
            return r.status_code in (200, 204)

        def find(i: int) -> bool:
            r = http.get("/Users", params={"filter": f'userName eq "{user_name(run, i)}"'})
            return r.status_code == 200 and r.json().get("totalResults") == 1

        for name, fn in (("create", create), ("patch", patch), ("filter", find)):
            seconds, lat, wrong = timed(users, conc, fn)
            target.phases[name] = Phase(name, seconds, lat, wrong)
            p = target.phases[name]
            print(f"  {target.label:12s} {name:7s} {p.rate:8.0f} req/s"
                  f"  p50 {p.pct(50) * 1e3:7.1f} ms  p99 {p.pct(99) * 1e3:7.1f} ms"
                  f"  wrong {wrong}", flush=True)
    target.peak_rss_mb = vm_hwm_mb(target.pid)
    return [i for i in ids if i]


def cleanup(target: Target, ids: list[str], conc: int) -> None:
    with client(target, conc) as http, ThreadPoolExecutor(conc) as pool:
        list(pool.map(lambda i: http.delete(f"/Users/{i}"), ids))


# -- syncd serve ---------------------------------------------------------------------------


def syncd_exe() -> str | None:
    exe = shutil.which("syncd", path=str(ROOT / ".venv" / "bin")) or shutil.which("syncd")
    if exe is None:
        return None
    probe = subprocess.run([exe, "serve", "--help"], capture_output=True, timeout=60)
    return exe if probe.returncode == 0 else None


#: The config `--start-syncd` serves with when no --syncd-config is given: a SQLite state
#: store in a temp dir, one scim_inbox directory, no rate limit (one client address sends
#: everything here; the default 200 requests/s per address would answer 429).
SYNCD_CONFIG = """\
[state]
url = "sqlite:///{dir}/state.db"

[connectors.inbox]
type = "scim_inbox"

[serve]
listen = "127.0.0.1:{port}"
tokens = ["env:SYNCD_BENCH_TOKEN"]
directory = "inbox"
rate_limit = 0
"""


def start_syncd(
    exe: str, template: str, prefix: str, workdir: Path, *, run_flows: bool = False
) -> tuple[subprocess.Popen[bytes], str, str]:
    """`syncd serve` on a free port with `template` ({port}, {dir} filled in; the bearer
    token is in $SYNCD_BENCH_TOKEN), polled until /ServiceProviderConfig answers."""
    token = secrets.token_urlsafe(24)
    port = free_port()
    config = workdir / "syncd.toml"
    config.write_text(template.replace("{port}", str(port)).replace("{dir}", str(workdir)))
    argv = [exe, "serve", "--config", str(config), *(["--run-flows"] if run_flows else [])]
    env = dict(os.environ, SYNCD_BENCH_TOKEN=token)
    proc = subprocess.Popen(argv, cwd=str(workdir), env=env, stdout=subprocess.DEVNULL,
                            stderr=(workdir / "serve.log").open("wb"))
    url = f"http://127.0.0.1:{port}{prefix}"
    deadline = time.monotonic() + 60
    delay = 0.01
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"syncd serve exited with {proc.returncode}; see "
                             f"{workdir / 'serve.log'}")
        try:
            r = httpx.get(url + "/ServiceProviderConfig",
                          headers={"Authorization": f"Bearer {token}"}, timeout=2)
            if r.status_code == 200:
                return proc, url, token
        except httpx.TransportError:
            pass
        time.sleep(delay)  # polling interval while it starts, not synchronisation
        delay = min(delay * 2, 0.2)
    stop(proc)
    raise SystemExit(f"syncd serve did not answer at {url}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


# -- request -> visible in slapd ------------------------------------------------------------

#: `--to-slapd`: the directory syncd serve receives, and a flow from it into slapd.
SLAPD_FLOW = """
[connectors.corp]
type = "ldap"
url = "{url}"
bind_dn = "{bind_dn}"
bind_password = "env:SYNCD_BENCH_LDAP_PASSWORD"
users = {{ base = "{people}", filter = "(objectClass=inetOrgPerson)" }}

[flows.inbox-to-corp]
source = "inbox"
target = "corp"
deprovision = "delete"
match = ["uid"]

[flows.inbox-to-corp.users.mapping]
uid = "userName"
cn = "displayName"
sn = "name.familyName"
givenName = "name.givenName"
mail = "emails.work"
title = "title"
"""


def to_slapd(exe: str, n: int, run: str) -> tuple[list[float], list[float]]:
    """Seconds from each of `n` creates (then `n` PATCHes), sent one at a time, to the
    change being visible in slapd (see the module docstring)."""
    import ldap3

    from tests.peers.directory import PEOPLE, write_ldif
    from tests.peers.slapd import Slapd

    workdir = Path(tempfile.mkdtemp(prefix="bench-serve-slapd-"))
    slapd = Slapd(ldif=write_ldif(workdir / "seed.ldif", 10, 1, 2, seed=1)).start()
    os.environ["SYNCD_BENCH_LDAP_PASSWORD"] = slapd.admin_password
    template = SYNCD_CONFIG + SLAPD_FLOW.format(url=slapd.url, bind_dn=slapd.admin_dn,
                                                people=PEOPLE)
    proc, url, token = start_syncd(exe, template, "/v2", workdir, run_flows=True)
    conn = ldap3.Connection(ldap3.Server(slapd.url), slapd.admin_dn, slapd.admin_password,
                            auto_bind=True)

    def visible(dn: str, title: str | None, t0: float) -> float:
        while time.perf_counter() - t0 < 30:
            conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=["title"])
            if conn.entries and (title is None or conn.entries[0].title.value == title):
                return time.perf_counter() - t0
            time.sleep(0.002)  # the poll's resolution: this is the measurement itself
        raise SystemExit(f"{dn} not in slapd after 30 s; see {workdir / 'serve.log'}")

    creates: list[float] = []
    patches: list[float] = []
    try:
        with httpx.Client(base_url=url, timeout=30,
                          headers={"Authorization": f"Bearer {token}"}) as http:
            ids = []
            for i in range(n):
                body = create_body(run, i)
                dn = f"uid={body['userName']},{PEOPLE}"
                t0 = time.perf_counter()
                r = http.post("/Users", json=body)
                if r.status_code != 201:
                    raise SystemExit(f"create: {r.status_code} {r.text[:200]}")
                ids.append(r.json()["id"])
                creates.append(visible(dn, None, t0))
            for i, rid in enumerate(ids):
                title = f"Title {run} {i}"
                dn = f"uid={user_name(run, i)},{PEOPLE}"
                t0 = time.perf_counter()
                r = http.patch(f"/Users/{rid}", json={"schemas": [PATCH_OP], "Operations": [
                    {"op": "replace", "value": {"title": title}}]})
                if r.status_code not in (200, 204):
                    raise SystemExit(f"patch: {r.status_code} {r.text[:200]}")
                patches.append(visible(dn, title, t0))
    finally:
        conn.unbind()
        stop(proc)
        slapd.stop()
        slapd.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
    return creates, patches


def delay_table(creates: list[float], patches: list[float]) -> str:
    rows = [f"request -> visible in slapd (syncd serve --run-flows, one request at a time, "
            f"n={len(creates)})",
            f"{'request':8s} {'p50 ms':>8s} {'p99 ms':>8s} {'max ms':>8s}"]
    for name, values in (("create", creates), ("patch", patches)):
        p = Phase(name, 1.0, values, 0)
        rows.append(f"{name:8s} {p.pct(50) * 1e3:8.0f} {p.pct(99) * 1e3:8.0f} "
                    f"{max(values) * 1e3:8.0f}")
    return "\n".join(rows)


# -- report --------------------------------------------------------------------------------


def table(subject: Target | None, baseline: Target, users: int, conc: int) -> str:
    rows = [f"{users} users, concurrency {conc}",
            f"{'server':14s} {'phase':7s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} "
            f"{'wrong':>6s} {'rate ratio':>11s} {'p99 ratio':>10s}"]
    for target in (t for t in (subject, baseline) if t is not None):
        for name in PHASES:
            p = target.phases[name]
            ratio = p99r = ""
            if subject is not None and target is subject:
                b = baseline.phases[name]
                ratio = f"{p.rate / b.rate:.2f}x" if b.rate else "-"
                p99r = f"{p.pct(99) / b.pct(99):.2f}x" if b.pct(99) else "-"
            rows.append(f"{target.label:14s} {name:7s} {p.rate:8.0f} {p.pct(50) * 1e3:8.1f} "
                        f"{p.pct(99) * 1e3:8.1f} {p.wrong:6d} {ratio:>11s} {p99r:>10s}")
        rss = "unknown (no PID)" if target.peak_rss_mb is None else f"{target.peak_rss_mb:.0f} MB"
        rows.append(f"{target.label:14s} peak RSS of the server process: {rss}")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--url", help="base URL of the SCIM service provider under test")
    parser.add_argument("--token", default=os.environ.get("SCIM_BENCH_TOKEN"),
                        help="its bearer token (default: $SCIM_BENCH_TOKEN)")
    parser.add_argument("--pid", type=int, help="its process id, for peak RSS")
    parser.add_argument("--start-syncd", action="store_true",
                        help="start `syncd serve` as the subject (when it exists)")
    parser.add_argument("--syncd-config", type=Path,
                        help="config template for --start-syncd ({port}, {dir} filled in; "
                             "the token is in $SYNCD_BENCH_TOKEN); default: a minimal one")
    parser.add_argument("--syncd-prefix", default="/v2")
    parser.add_argument("--keep", action="store_true", help="leave the subject's users in place")
    parser.add_argument("--to-slapd", type=int, default=0, metavar="N",
                        help="also measure request -> visible in slapd over N creates and N "
                             "PATCHes (syncd serve --run-flows into a throwaway slapd)")
    args = parser.parse_args()
    run = secrets.token_hex(4)
    if args.to_slapd:
        exe = syncd_exe()
        if exe is None:
            raise SystemExit("`syncd serve --help` fails: nothing to measure")
        print(delay_table(*to_slapd(exe, args.to_slapd, run)), flush=True)
        if not args.users:
            return

    proc: subprocess.Popen[bytes] | None = None
    workdir: Path | None = None
    subject: Target | None = None
    if args.start_syncd:
        exe = syncd_exe()
        if exe is None:
            print("`syncd serve --help` fails: no syncd SCIM service provider yet; "
                  "measuring the baseline (scim2-server) only")
        else:
            template = (args.syncd_config.read_text() if args.syncd_config
                        else SYNCD_CONFIG)
            workdir = Path(tempfile.mkdtemp(prefix="bench-serve-"))
            proc, url, token = start_syncd(exe, template, args.syncd_prefix, workdir)
            subject = Target("syncd serve", url, token, proc.pid)
    elif args.url:
        subject = Target("subject", args.url.rstrip("/"), args.token, args.pid)

    try:
        if subject is not None:
            print(f"subject: {subject.url}", flush=True)
            ids = drive(subject, args.users, args.concurrency, run)
            if not args.keep and proc is None:
                cleanup(subject, ids, args.concurrency)
        with Scim2Server(token="bench-token") as server:
            baseline = Target("scim2-server", server.url, server.token, server.pid)
            print(f"baseline: scim2-server 0.8 (waitress) at {server.url}", flush=True)
            drive(baseline, args.users, args.concurrency, run)
    finally:
        if proc is not None:
            stop(proc)
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(table(subject, baseline, args.users, args.concurrency))


if __name__ == "__main__":
    main()
