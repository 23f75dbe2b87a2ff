"""`syncd run` (plan and apply, or --dry-run) and `syncd validate`."""

from __future__ import annotations

import sys

import click

from syncd.cli.common import (
    EXIT_CHANGES,
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_REFUSED,
    config_option,
    echo_stream,
    load_config,
    output_option,
    settle_start_up,
    store_line,
)


@click.command()
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
@click.option("--detailed-exitcode", is_flag=True,
              help=f"Exit {EXIT_CHANGES} instead of 0 when the plan had changes (pending in a "
                   "dry run, applied otherwise); 1, 2 and 3 keep their meaning.")
@output_option
def run(config_path: str, dry_run: bool, flows: tuple[str, ...], allow_deletes: bool,
        full: bool, only: str | None, output: str, detailed_exitcode: bool) -> None:
    """Run each flow once: read, plan, check, apply."""
    from syncd.cycle import engine, render
    from syncd.cycle.apply import print_progress
    from syncd.errors import StoreLocked, SyncdError
    from syncd.state.opening import safe_url

    cfg = load_config(config_path)
    settle_start_up()
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
            from syncd.cli.explain import run_one

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
        echo_stream(render.json_chunks(results, state_store=safe_url(cfg.state_url)))
    else:
        click.echo(store_line(cfg))
        echo_stream(render.text_lines(results, detail=dry_run or sum(
            len(r.plan.changes) if r.plan is not None else 0 for r in results) <= 500), "\n")
    if any(r.result == "refused" for r in results):
        sys.exit(EXIT_REFUSED)
    if any(r.result in ("failed", "aborted") for r in results):
        sys.exit(EXIT_FAILED)
    if detailed_exitcode and any(
            r.plan is not None and (r.plan.changes or r.plan.streamed) for r in results):
        sys.exit(EXIT_CHANGES)


@click.command()
@config_option
@click.option("--online", is_flag=True,
              help="Also connect to each flow's target and report mapped attributes it "
                   "does not declare (SCIM: its /Schemas, extensions included).")
def validate(config_path: str, online: bool) -> None:
    """Check the config file (and mappings) without connecting anywhere (unless --online)."""
    from syncd.secrets import unresolved
    from syncd.state.opening import check_offline

    cfg = load_config(config_path, secrets=False)
    check_offline(cfg.state_url)  # StoreError: exit 1 (the config is fine, the store is not)
    click.echo(f"{config_path}: ok — {len(cfg.connectors)} connectors, {len(cfg.flows)} flows")
    click.echo(store_line(cfg))
    for name, spec in cfg.connectors.items():
        for where, ref in unresolved(spec.config, f"connectors.{name}"):
            problem = ref.problem()
            if problem is not None:  # a warning: the service may see what this shell cannot
                click.echo(f"note: {where} = {ref.reference!r}: {problem} here (the service "
                           "may have it, e.g. through LoadCredential=)")
    if online:
        from syncd.cli.check import online_paths

        report = online_paths(cfg)
        for p in report.problems:
            click.echo(f"PROBLEM: {p}")
        if report.problems:
            sys.exit(EXIT_FAILED)
        click.echo("online: every target declares the attributes mapped to it")

