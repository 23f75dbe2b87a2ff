"""The `syncd` command line.

Exit codes are part of the interface (documented in the README): 0 success (also when nothing
changed), 1 the run had failures, 2 invalid config or usage, 3 refused by a safety check.
Imports of heavy modules happen inside commands so `syncd --help` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_REFUSED = 0, 1, 2, 3

config_option = click.option(
    "--config", "-c", "config_path", envvar="SYNCD_CONFIG", required=True,
    type=click.Path(dir_okay=False), help="Config file (default: $SYNCD_CONFIG).")
output_option = click.option("--output", "-o", type=click.Choice(["text", "json"]),
                             default="text", show_default=True)


def _load(path: str) -> Any:
    from syncd import config
    from syncd.errors import ConfigError

    try:
        return config.load(path)
    except ConfigError as exc:
        click.echo(f"invalid config:\n{exc}", err=True)
        sys.exit(EXIT_CONFIG)


class _Group(click.Group):
    """Store and config errors raised inside any command end as one line and the documented
    exit code (1 runtime, 2 config), never as a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        from syncd.errors import ConfigError, StoreError

        try:
            return super().invoke(ctx)
        except StoreError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_FAILED)
        except ConfigError as exc:
            click.echo(f"invalid config:\n{exc}", err=True)
            sys.exit(EXIT_CONFIG)


@click.group(cls=_Group)
@click.option("-v", "--verbose", count=True, help="More log output (repeatable).")
@click.version_option(package_name="syncd")
def main(verbose: int) -> None:
    """syncd: plan and apply directory sync between LDAP, SCIM and Microsoft Graph."""
    from syncd import log

    log.setup(verbose)


@main.command()
@config_option
@click.option("--dry-run", is_flag=True, help="Show the plan; write nothing anywhere.")
@click.option("--flow", "flows", multiple=True, help="Only this flow (repeatable).")
@click.option("--allow-deletes", "--allow-destructive", "allow_deletes", is_flag=True,
              help="Let a plan over the safety thresholds (deprovisioning and disables, "
                   "member removals, mass rewrites) through, this run only.")
@click.option("--full", is_flag=True,
              help="Ignore stored cursors: read every source completely (a reconcile).")
@click.option("--only", "only", default=None, metavar="OBJECT",
              help="Provision just this object now (name or anchor), with --flow if several.")
@output_option
def run(config_path: str, dry_run: bool, flows: tuple[str, ...], allow_deletes: bool,
        full: bool, only: str | None, output: str) -> None:
    """Run each flow once: read, plan, check, apply."""
    from syncd import engine, render
    from syncd.apply import print_progress
    from syncd.errors import StoreLocked, SyncdError

    cfg = _load(config_path)
    unknown = [f for f in flows if f not in cfg.flows]
    if unknown:
        click.echo(f"unknown flow(s): {', '.join(unknown)} (defined: "
                   f"{', '.join(cfg.flows) or 'none'})", err=True)
        sys.exit(EXIT_CONFIG)
    if only is not None and len(flows or cfg.flows) != 1:
        click.echo("--only needs exactly one flow: add --flow NAME", err=True)
        sys.exit(EXIT_CONFIG)
    try:
        if only is not None:
            from syncd.explain import run_one

            results = [run_one(cfg, (flows or tuple(cfg.flows))[0], only, dry_run=dry_run,
                               allow_deletes=allow_deletes)]
        else:
            results = engine.run(cfg, flows=flows or None, dry_run=dry_run,
                                 allow_deletes=allow_deletes, full=full,
                                 progress=print_progress if output == "text" else None)
    except StoreLocked as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    except SyncdError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    if output == "json":
        click.echo(json.dumps(render.as_dict(results), indent=2, ensure_ascii=False))
    else:
        click.echo(render.text(results, detail=dry_run or sum(
            len(r.plan.changes) if r.plan is not None else 0 for r in results) <= 500))
    if any(r.result == "refused" for r in results):
        sys.exit(EXIT_REFUSED)
    if any(r.result in ("failed", "aborted") for r in results):
        sys.exit(EXIT_FAILED)


@main.command()
@config_option
def validate(config_path: str) -> None:
    """Check the config file (and mappings) without connecting anywhere."""
    from syncd.store_open import check_offline

    cfg = _load(config_path)
    check_offline(cfg.state_url)  # StoreError: exit 1 (the config is fine, the store is not)
    click.echo(f"{config_path}: ok — {len(cfg.connectors)} connectors, {len(cfg.flows)} flows")


@main.command()
@config_option
@output_option
def status(config_path: str, output: str) -> None:
    """Last runs and link counts per flow, from the state store."""
    from syncd.render import summary_line
    from syncd.store import Store

    cfg = _load(config_path)
    store = Store(cfg.state_url, readonly=True)
    doc: dict[str, Any] = {}
    try:
        for name in cfg.flows:
            doc[name] = {"links": store.link_counts(name),
                         **store.pending_counts(name),
                         "cursor_age_s": store.cursor_age(name),
                         "conflicts": len(store.conflicts(name)),
                         "schedule": _schedule(cfg.flows[name]),
                         "held": [{"kind": p.kind, "source_id": p.source_id, "name": p.name,
                                   "op": p.op, "attempts": p.attempts,
                                   "next_at": p.next_at.isoformat(),
                                   "quarantined": p.quarantined,
                                   "error": f"{p.error_class}: {p.error}"}
                                  for p in store.pending(name).values()],
                         "runs": [_run_json(r) for r in store.recent_runs(name)]}
    finally:
        store.close()
    if output == "json":
        click.echo(json.dumps(doc, indent=2, default=str))
        return
    for name, d in doc.items():
        click.echo(f"flow {name}")
        links = ", ".join(f"{k}s {sum(v.values())} ({', '.join(f'{n} {s}' for s, n in v.items())})"
                          for k, v in d["links"].items()) or "none"
        click.echo(f"  links: {links}")
        age = d["cursor_age_s"]
        click.echo(f"  cursor age: {'none yet' if age is None else f'{age:.0f}s'}; "
                   f"pending retries: {d['pending']}; quarantined: {d['quarantined']}; "
                   f"conflicts held: {d['conflicts']}; schedule: {d['schedule']}")
        for p in d["held"]:
            state = "QUARANTINED" if p["quarantined"] else f"retry at {p['next_at'][:19]}"
            click.echo(f"    {state}: {p['op']} {p['kind']} {p['name']} "
                       f"(attempt {p['attempts']}): {p['error']}")
        if not d["runs"]:
            click.echo("  no runs yet")
        for r in d["runs"]:
            s = r["summary"]
            when = str(r["started_at"])[:19]
            line = (f"  {when}  {r['result']:8} {s.get('applied', 0)} applied, "
                    f"{s.get('failed', 0)} failed — {summary_line(s.get('plan', {}))}")
            click.echo(line + (f"  error: {r['error']}" if r.get("error") else ""))


def _schedule(flow: Any) -> str:
    sch = flow.schedule
    if sch is None:
        return "every 15m (daemon default)"
    when = f"every {sch.interval}" if sch.interval else f"cron {sch.cron!r}"
    return when + (f", jitter {sch.jitter}" if sch.jitter else "")


def _run_json(r: dict[str, Any]) -> dict[str, Any]:
    out = dict(r)
    out["summary"] = json.loads(r.get("summary") or "{}")
    return out


@main.command()
@config_option
@click.option("--flow", required=True, help="The flow whose quarantine to release.")
@click.argument("objects", nargs=-1)
def release(config_path: str, flow: str, objects: tuple[str, ...]) -> None:
    """Let quarantined changes be retried on the next run (all, or the named objects)."""
    from syncd.store import Store

    cfg = _load(config_path)
    if flow not in cfg.flows:
        click.echo(f"unknown flow {flow!r}", err=True)
        sys.exit(EXIT_CONFIG)
    store = Store(cfg.state_url)
    try:
        n = sum(store.release(flow, o) for o in objects) if objects else store.release(flow)
    finally:
        store.close()
    click.echo(f"released {n} quarantined change(s) of flow {flow}")


@main.group(invoke_without_command=True)
@config_option
@click.option("--flow", default=None, help="Only this flow's conflicts.")
@output_option
@click.pass_context
def conflicts(ctx: click.Context, config_path: str, flow: str | None, output: str) -> None:
    """List held two-way conflicts: both values and the base they diverged from."""
    ctx.obj = config_path
    if ctx.invoked_subcommand is not None:
        return
    from syncd.store import Store

    cfg = _load(config_path)
    store = Store(cfg.state_url, readonly=True)
    try:
        rows = store.conflicts(flow)
    finally:
        store.close()
    if output == "json":
        click.echo(json.dumps(rows, indent=2, default=str, ensure_ascii=False))
        return
    if not rows:
        click.echo("no conflicts")
    for r in rows:
        state = f"resolved -> {r['resolution']!r} (applied next run)" if r["resolved"] else "held"
        click.echo(f"{r['id']}  {r['flow']} {r['kind']} {r['name']} {r['path']}: "
                   f"source {r['source_value']!r}, target {r['target_value']!r}, "
                   f"base {r['base_value']!r}  [{state}]")


@conflicts.command("resolve")
@click.argument("conflict_id")
@click.option("--take", required=True,
              help="source | target | a literal VALUE to write to both sides.")
@click.pass_context
def conflicts_resolve(ctx: click.Context, conflict_id: str, take: str) -> None:
    """Settle one conflict; the next run writes the chosen value to both sides."""
    from syncd.store import Store

    cfg = _load(ctx.obj)
    store = Store(cfg.state_url)
    try:
        row = next((c for c in store.conflicts() if c["id"] == conflict_id), None)
        if row is None:
            click.echo(f"no conflict with id {conflict_id}", err=True)
            sys.exit(EXIT_CONFIG)
        value = {"source": row["source_value"], "target": row["target_value"]}.get(take, take)
        store.resolve_conflict(conflict_id, value)
    finally:
        store.close()
    click.echo(f"conflict {conflict_id} ({row['name']} {row['path']}) resolved to {value!r}; "
               f"the next run applies it")


@main.command()
def connectors() -> None:
    """List installed connector types (the syncd.connectors entry points)."""
    from syncd import registry

    for name, ep in sorted(registry.available().items()):
        click.echo(f"{name:10} {ep.value}")


if __name__ == "__main__":  # pragma: no cover
    main(prog_name=os.path.basename(sys.argv[0]))


from syncd import cli_ops  # noqa: E402,F401  (registers more commands on `main`)
