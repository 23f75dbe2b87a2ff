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


@click.group()
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
@click.option("--allow-deletes", is_flag=True,
              help="Let a plan over the deprovisioning thresholds through, this run only.")
@output_option
def run(config_path: str, dry_run: bool, flows: tuple[str, ...], allow_deletes: bool,
        output: str) -> None:
    """Run each flow once: read, plan, check, apply."""
    from syncd import engine, render
    from syncd.apply import print_progress
    from syncd.errors import StoreLocked

    cfg = _load(config_path)
    unknown = [f for f in flows if f not in cfg.flows]
    if unknown:
        click.echo(f"unknown flow(s): {', '.join(unknown)} (defined: "
                   f"{', '.join(cfg.flows) or 'none'})", err=True)
        sys.exit(EXIT_CONFIG)
    try:
        results = engine.run(cfg, flows=flows or None, dry_run=dry_run,
                             allow_deletes=allow_deletes,
                             progress=print_progress if output == "text" else None)
    except StoreLocked as exc:
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
    cfg = _load(config_path)
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
        if not d["runs"]:
            click.echo("  no runs yet")
        for r in d["runs"]:
            s = r["summary"]
            when = str(r["started_at"])[:19]
            line = (f"  {when}  {r['result']:8} {s.get('applied', 0)} applied, "
                    f"{s.get('failed', 0)} failed — {summary_line(s.get('plan', {}))}")
            click.echo(line + (f"  error: {r['error']}" if r.get("error") else ""))


def _run_json(r: dict[str, Any]) -> dict[str, Any]:
    out = dict(r)
    out["summary"] = json.loads(r.get("summary") or "{}")
    return out


@main.command()
def connectors() -> None:
    """List installed connector types (the syncd.connectors entry points)."""
    from syncd import registry

    for name, ep in sorted(registry.available().items()):
        click.echo(f"{name:10} {ep.value}")


if __name__ == "__main__":  # pragma: no cover
    main(prog_name=os.path.basename(sys.argv[0]))


from syncd import cli_ops  # noqa: E402,F401  (registers more commands on `main`)
