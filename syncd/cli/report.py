"""`syncd report --html FILE`: the daemon's status page as one self-contained file."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from syncd.cli.common import EXIT_CONFIG, EXIT_FAILED, config_option, load_config, store_line


@click.command()
@config_option
@click.option("--html", "html_path", required=True, type=click.Path(dir_okay=False),
              help="Write the status page to this file (replaced whole).")
@click.option("--runs", type=click.IntRange(min=1), default=20, show_default=True,
              help="How many of each flow's last runs to show.")
@click.option("--object", "obj", default=None, metavar="NAME_OR_ID",
              help="Add this object's history from the journal (name, source or target id).")
@click.option("--flow", default=None, help="With --object: only in this flow.")
def report(config_path: str, html_path: str, runs: int, obj: str | None,
           flow: str | None) -> None:
    """The status page the daemon serves — last runs per flow, refused plans awaiting
    approval, quarantined objects and pending retries, held conflicts — written to one
    HTML file (no script, nothing fetched). Reads the state store only; needs no secrets."""
    from syncd.daemon.status_data import gather
    from syncd.daemon.status_page import render

    cfg = load_config(config_path, secrets=False)
    if flow is not None and flow not in cfg.flows:
        click.echo(f"unknown flow {flow!r} (defined: {', '.join(cfg.flows)})", err=True)
        sys.exit(EXIT_CONFIG)
    snap = gather(cfg, runs=runs, obj=obj, flow=flow)
    click.echo(store_line(cfg))
    if snap.error is not None:
        click.echo(f"error: {snap.error}", err=True)
        sys.exit(EXIT_FAILED)
    write_atomically(Path(html_path), render(snap, served=False))
    click.echo(f"wrote {html_path}")


def write_atomically(path: Path, text: str) -> None:
    """Whole or not at all (a temporary file beside it, then renamed over it); readable by
    its owner only, as the page names directory objects."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
