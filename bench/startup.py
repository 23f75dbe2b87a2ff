"""Benchmark: what a one-shot ``syncd run`` costs as a process, slapd -> scim2-server.

Run from cron every minute, a no-change ``syncd run`` is mostly Python start-up and imports;
a dry run of a large plan is mostly start-up and rendering. Both are measured here as whole
processes against the cheapest processes doing comparable work, in one run on the same
servers (one slapd bulk-loaded with ``slapadd``, one scim2-server):

 - ``python -c pass`` (the interpreter's own start-up) and ``syncd --help``;
 - ``ldapsearch`` of the flow's users with the mapped attributes (paged by 500, like syncd),
   output to a file;
 - a dry run (``syncd run --dry-run``, text and ``-o json``) of N creates: an empty target
   and an empty state store, output to a file — vs that ``ldapsearch``;
 - after an initial sync (timed, not compared), a no-change ``syncd run`` (incremental:
   syncrepl cursor), vs ``python -c pass`` and that ``ldapsearch``; the engine's own time
   (the flow's duration as ``syncd run`` prints it) shows how much is start-up.

Each figure is the median of `--repeat` runs, after one unmeasured run of the same command
(bytecode written, as an installed syncd has it: ``PYTHONDONTWRITEBYTECODE`` is dropped); wall
and CPU medians are taken separately (on a loaded machine CPU is the steadier figure).

Which syncd: this checkout's code (``PYTHONPATH`` = the checkout and its ``connectors``) run by
`--python` (default: this interpreter), so the same code can be measured in the dev venv and
in a venv with only the runtime dependencies, as users install it (no dev extras: httpx then
imports no ``rich``/``pygments``, httpcore no ``trio``)::

    python -m venv /tmp/prodvenv && /tmp/prodvenv/bin/pip install -q .
    .venv/bin/python bench/startup.py --python /tmp/prodvenv/bin/python

`--old DIR` (a ``git archive`` of an earlier commit, unpacked) measures that code too, run for
run alternated with this checkout's on the same servers, and prints new/old CPU ratios.
Peak RSS comes from ``wait4`` in GNU time (``/usr/bin/time -f %M``), not ``os.wait4`` in
this process: Linux carries the RSS of the process that forks into the child's ``ru_maxrss``
(a ``/bin/true`` forked from a 200 MB Python reads as 211 MB); a small C parent keeps it out.

Usage: .venv/bin/python bench/startup.py [--users 20000] [--repeat 5] [--keep DIR]
       [--python PY] [--old DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scale import CONFIG, GROUP_FILTER, USER_ATTRS, USER_FILTER  # noqa: E402  (one flow)
from tests.peers.directory import GROUPS, PEOPLE, write_ldif  # noqa: E402
from tests.peers.scim_servers import Scim2Server  # noqa: E402
from tests.peers.slapd import Slapd  # noqa: E402

TOKEN = "bench-token"
GNU_TIME = "/usr/bin/time"


@dataclass
class Proc:
    """One measured process: wall seconds (as this process saw it), CPU seconds (user +
    system: what it costs on a busy machine), peak RSS, output."""

    wall: float
    cpu: float
    rss_mb: float
    rc: int
    output: str

    @property
    def engine(self) -> float:
        """The flow's own duration as `syncd run` prints it (nan for anything else)."""
        m = re.search(r"result: \w+, \d+ applied, \d+ failed, ([\d.]+)s", self.output)
        return float(m.group(1)) if m else float("nan")


def measure(cmd: Sequence[str], env: dict[str, str], out: Path) -> Proc:
    """Run `cmd` once under GNU time (peak RSS from its wait4), stdout to `out`."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss, out.open("wb") as fh:
        t0 = time.perf_counter()
        rc = subprocess.call([GNU_TIME, "-f", "%M %U %S", "-o", rss.name, *cmd], stdout=fh,
                             stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
        wall = time.perf_counter() - t0
        kb, user, system = rss.read().strip().splitlines()[-1].split()
    text = out.read_text(encoding="utf-8", errors="replace") if out.stat().st_size < 1 << 20 \
        else ""
    return Proc(wall, float(user) + float(system), int(kb) / 1024, rc, text)


def _median_of(runs: list[Proc]) -> Proc:
    """The run of median wall time (its RSS and output with it), carrying the median CPU
    time of all the runs (taken on its own: the two medians need not be one run's)."""
    by_wall = sorted(runs, key=lambda p: p.wall)
    mid = by_wall[len(by_wall) // 2]
    cpu = sorted(p.cpu for p in runs)[len(runs) // 2]
    return Proc(mid.wall, cpu, mid.rss_mb, mid.rc, mid.output)


def median(cmd: Sequence[str], env: dict[str, str], out: Path, repeat: int) -> Proc:
    """Medians of `repeat` runs, after one unmeasured run (bytecode compiled and cached,
    files in the page cache)."""
    return medians([cmd], [env], out, repeat)[0]


def medians(cmds: Sequence[Sequence[str]], envs: Sequence[dict[str, str]], out: Path,
            repeat: int) -> list[Proc]:
    """`median` of several commands (the same work by different code), alternated run for
    run so that the machine's load falls on each alike; `out` holds the last command's
    output afterwards."""
    for cmd, env in zip(cmds, envs, strict=True):
        measure(cmd, env, out)
    runs: list[list[Proc]] = [[] for _ in cmds]
    for _ in range(repeat):
        for i, (cmd, env) in enumerate(zip(cmds, envs, strict=True)):
            runs[i].append(measure(cmd, env, out))
    return [_median_of(r) for r in runs]


def line(label: str, p: Proc, extra: str = "") -> str:
    return (f"{label:42s} {p.wall:7.3f} s  CPU {p.cpu:6.2f} s  peak RSS {p.rss_mb:6.1f} MB  "
            f"{extra}").rstrip()


def syncd_command(python: str) -> list[str]:
    """How a user starts syncd with `python`'s install: its console script when it has one."""
    script = Path(python).parent / "syncd"
    return [str(script)] if os.access(script, os.X_OK) else [python, "-m", "syncd"]


def code_env(env: dict[str, str], checkout: Path) -> dict[str, str]:
    """`env` running the syncd code of `checkout` (whatever the interpreter has installed)."""
    return {**env, "PYTHONPATH": f"{checkout}{os.pathsep}{checkout / 'connectors'}"}


def run_all(args: argparse.Namespace, work: Path) -> Iterator[str]:
    if not os.access(GNU_TIME, os.X_OK):
        raise SystemExit(f"{GNU_TIME} (GNU time) is needed for peak RSS: apt-get install time")
    t0 = time.perf_counter()
    ldif = write_ldif(work / "dir.ldif", args.users, 0, 0)
    with Slapd(ldif=ldif, size_limit=0) as ldap, Scim2Server(token=TOKEN) as scim:
        yield (f"directory: {args.users:,} users; median of {args.repeat} runs each; loaded "
               f"in {time.perf_counter() - t0:.1f} s; python {args.python}; load average "
               f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        env = {**os.environ, "BENCH_LDAP_PASSWORD": ldap.admin_password,
               "BENCH_SCIM_TOKEN": TOKEN}
        # An installed syncd has its bytecode compiled (pip does it); without it every start
        # compiles syncd's own modules again.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        codes = [("", code_env(env, ROOT))]
        if args.old is not None:
            codes = [("old ", code_env(env, args.old.resolve())), ("new ", codes[0][1])]
        syncd = syncd_command(args.python)
        config = work / "syncd.toml"
        state = work / "state.db"
        config.write_text(CONFIG.format(
            state=state, ldap=ldap.url, bind_dn=ldap.admin_dn, people=PEOPLE, groups=GROUPS,
            user_filter=USER_FILTER, group_filter=GROUP_FILTER, scim=scim.url,
            concurrency=8))
        out = work / "out.txt"
        n = args.repeat

        def each(cmd: list[str]) -> list[tuple[str, Proc]]:
            """`cmd` by every version of the code, alternated run for run."""
            got = medians([cmd] * len(codes), [e for _l, e in codes], out, n)
            return [(label, p) for (label, _e), p in zip(codes, got, strict=True)]

        def versus(results: list[tuple[str, Proc]]) -> str:
            if len(results) < 2:
                return ""
            return f"  new/old CPU {results[1][1].cpu / results[0][1].cpu:.2f}"

        bare = median([args.python, "-c", "pass"], env, out, n)
        yield line("python -c pass", bare)
        helped = each([*syncd, "--help"])
        for label, p in helped:
            yield line(f"{label}syncd --help", p, f"{p.wall / bare.wall:.1f}x python -c pass")
        search = median(["ldapsearch", "-LLL", "-x", "-H", ldap.url, "-D", ldap.admin_dn,
                         "-w", ldap.admin_password, "-b", PEOPLE, "-E", "pr=500/noprompt",
                         USER_FILTER, *USER_ATTRS], env, out, n)
        entries = out.read_text(encoding="utf-8").count("\ndn: ") + 1
        yield line(f"ldapsearch of the {entries:,} users", search)

        for output in ("text", "json"):
            dry = each([*syncd, "run", "-c", str(config), "--dry-run", "-o", output])
            size = out.stat().st_size / 1e6
            for label, p in dry:
                yield line(f"{label}dry run, {args.users:,} creates, -o {output}", p,
                           f"{p.wall / search.wall:.1f}x ldapsearch (goal <= 4)  "
                           f"{size:.1f} MB written  exit {p.rc}")
            if versus(dry):
                yield versus(dry).strip()

        initial = measure([*syncd, "run", "-c", str(config)], codes[-1][1], out)
        yield line("initial sync (setup, not compared)", initial,
                   f"engine {initial.engine:.2f} s  exit {initial.rc}")
        nochange = each([*syncd, "run", "-c", str(config)])
        for label, p in nochange:
            yield line(f"{label}no-change syncd run (incremental)", p,
                       f"{p.wall / bare.wall:.1f}x python -c pass  "
                       f"{p.wall / search.wall:.2f}x ldapsearch  (goal <= 0.5 s)  engine "
                       f"{p.engine:.3f} s  exit {p.rc}")
        if versus(nochange):
            yield versus(nochange).strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--keep", type=Path, help="work directory to keep (state DB, config)")
    ap.add_argument("--python", default=sys.executable,
                    help="interpreter (venv) running syncd: e.g. one with only the runtime "
                         "dependencies installed")
    ap.add_argument("--old", type=Path, metavar="DIR",
                    help="also measure the syncd code in DIR (a `git archive` of an earlier "
                         "commit), alternated run for run with this checkout's")
    args = ap.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        for text in run_all(args, args.keep):
            print(text, flush=True)
        return
    with tempfile.TemporaryDirectory(prefix="syncd-startup-") as tmp:
        for text in run_all(args, Path(tmp)):
            print(text, flush=True)


if __name__ == "__main__":
    main()
