"""`syncd plan --out FILE` and `syncd apply FILE`: review a plan, then apply exactly that
(see `syncd.cycle.saved` for what "exactly" means)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path

import click

from syncd.cli.common import (
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


@click.command("plan")
@config_option
@click.option("--flow", "flows", multiple=True, help="Only this flow (repeatable).")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="Where to save the plan (JSON, created 0600: it holds attribute values).")
@output_option
def plan(config_path: str, flows: tuple[str, ...], out_path: str, output: str) -> None:
    """Compute what a run would do, as a dry run does, and save it for `syncd apply`.

    A plan the safety check refuses is saved too: approve it as a whole or object by
    object with `syncd apply FILE --approve-all` / `--approve NAME`."""
    from syncd.cycle import engine, render, saved
    from syncd.state.opening import safe_url

    cfg = load_config(config_path)
    settle_start_up()
    unknown = [f for f in flows if f not in cfg.flows]
    if unknown:
        click.echo(f"unknown flow(s): {', '.join(unknown)}", err=True)
        sys.exit(EXIT_CONFIG)
    results = engine.run(cfg, flows=flows or None, dry_run=True)
    doc = saved.make(cfg, results, safe_url(cfg.state_url))
    _write_private(Path(out_path), render.json_pieces(doc))
    count = sum(len(r.plan.changes) for r in results if r.plan is not None)
    if output == "json":
        echo_stream(render.json_pieces(doc))
    else:
        click.echo(store_line(cfg))
        echo_stream(render.text_lines(results), "\n")
        click.echo(f"plan saved to {out_path}: {count} changes; apply exactly these with: "
                   f"syncd apply {out_path}")
    if any(r.result in ("failed", "aborted") for r in results):
        sys.exit(EXIT_FAILED)
    if any(r.result == "refused" for r in results):
        sys.exit(EXIT_REFUSED)


def _write_private(path: Path, pieces: Iterable[str]) -> None:
    """Whole or not at all (written as rendered, then renamed), readable by its owner only."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(pieces)
            f.write("\n")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)


@click.command("apply")
@click.argument("plan_file", type=click.Path(dir_okay=False))
@click.option("--config", "-c", "config_path", envvar="SYNCD_CONFIG", default=None,
              help="Config file (default: the one the plan was made from).")
@click.option("--approve", "approve", multiple=True, metavar="OBJECT",
              help="Apply only this object's changes (name, source anchor or target id), "
                   "past the safety check (repeatable).")
@click.option("--approve-all", is_flag=True,
              help="Apply the whole reviewed plan, past the safety check.")
@output_option
def apply(plan_file: str, config_path: str | None, approve: tuple[str, ...],
          approve_all: bool, output: str) -> None:
    """Apply a plan saved by `syncd plan`: only its reviewed changes that are still valid.

    A change whose object changed since the plan was made is not applied (exit 1: make a new
    plan); changes planned now that nobody reviewed are not applied either."""
    from syncd.cycle import engine, render, saved
    from syncd.errors import ConfigError
    from syncd.state.opening import safe_url

    try:
        doc = json.loads(Path(plan_file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        click.echo(f"cannot read plan {plan_file}: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    if not isinstance(doc, dict):
        click.echo(f"cannot read plan {plan_file}: not a saved plan", err=True)
        sys.exit(EXIT_CONFIG)
    cfg = load_config(config_path or str(doc.get("config", "")))
    try:
        reviewed = saved.load(doc, cfg, plan_file)
        review = saved.Review(reviewed, saved.approvals(reviewed, approve))
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    if not reviewed:  # (an empty list of flows would mean every flow)
        click.echo(f"{plan_file}: no flow of this plan has changes to apply")
        return
    results = engine.run(cfg, flows=list(reviewed), review=review,
                         allow_deletes=approve_all or bool(approve))
    report = {name: vars(o) for name, o in review.outcomes.items()}
    if output == "json":
        echo_stream(render.json_chunks(results, review=report,
                                       state_store=safe_url(cfg.state_url)))
    else:
        click.echo(store_line(cfg))
        echo_stream(render.text_lines(results), "\n")
        for name, o in review.outcomes.items():
            click.echo(f"flow {name}: {len(o.kept)} reviewed changes applied as reviewed")
            if o.stale:
                click.echo(f"  NOT applied, no longer planned as reviewed (the object changed "
                           f"since the plan was made, or it was applied already): "
                           f"{', '.join(o.stale[:20])}" + (" …" if len(o.stale) > 20 else ""))
            if o.not_approved:
                click.echo(f"  not approved (left for a later run): {len(o.not_approved)}")
            if o.unreviewed:
                click.echo(f"  {o.unreviewed} changes planned now were never reviewed: not "
                           "applied (syncd plan shows them)")
    if any(r.result == "refused" for r in results):
        sys.exit(EXIT_REFUSED)
    if any(r.result in ("failed", "aborted") for r in results) or any(
            o.stale for o in review.outcomes.values()):
        sys.exit(EXIT_FAILED)
