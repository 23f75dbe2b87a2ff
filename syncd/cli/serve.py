"""`syncd serve`: the SCIM 2.0 service provider of ``[serve]`` (`syncd.daemon.inbound`).

Serves until SIGTERM or SIGINT. With ``--run-flows`` a received change also runs the flows
that read the directory, debounced (`syncd.daemon.inbound.trigger`): the change reaches the
target within about a second, through the same plan, safety check, apply and journal as
``syncd run``.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any

import click

from syncd.cli.common import EXIT_CONFIG, EXIT_FAILED, config_option, load_config

log = logging.getLogger("syncd.serve")


def flow_trigger(cfg: Any, flows: list[str]) -> Any:
    """A `Debounced` running `flows` of `cfg` after received changes (``--run-flows``)."""
    from syncd.cycle import engine
    from syncd.daemon.inbound.trigger import Debounced

    def run() -> None:
        for result in engine.run(cfg, flows=flows, dry_run=False):
            log.info("flow %s after received changes: %s", result.flow,
                     getattr(result, "result", "done"))

    return Debounced(run, name=f"flows {', '.join(flows)}")


@click.command()
@config_option
@click.option("--run-flows/--no-run-flows", default=False,
              help="Run the flows reading the directory after each received change.")
def serve(config_path: str, run_flows: bool) -> None:
    """Serve the SCIM 2.0 endpoint of [serve] (Users, Groups, discovery) until SIGTERM."""
    from syncd.daemon.receiving import build_app, build_server
    from syncd.state.inbox import Inbox
    from syncd.state.store import Store

    cfg = load_config(config_path, service=True)
    sc = cfg.serve
    if sc is None:
        click.echo("invalid config:\nno [serve] table: add one, e.g.\n  [serve]\n"
                   '  listen = "127.0.0.1:8443"\n  tokens = ["env:SCIM_TOKEN"]\n'
                   '  directory = "entra"', err=True)
        sys.exit(EXIT_CONFIG)
    store = Store(cfg.state_url)
    assert store.engine is not None
    inbox = Inbox(store.engine, sc.directory)
    trigger = None
    if run_flows:
        flows = [f.name for f in cfg.flows.values() if f.source == sc.directory]
        if flows:
            trigger = flow_trigger(cfg, flows)
    app = build_app(lambda: cfg, inbox,
                    on_change=trigger.changed if trigger is not None else None)
    server = build_server(app, cfg)
    try:
        server.start()
    except OSError as exc:
        click.echo(f"error: cannot serve on {sc.listen}: {exc.strerror or exc}", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(f"serving SCIM 2.0 on {server.url} (directory {sc.directory!r})", err=True)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.stop()
    if trigger is not None:
        trigger.stop()
    store.close()
