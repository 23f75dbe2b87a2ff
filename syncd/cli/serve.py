"""`syncd serve`: the SCIM 2.0 service provider of ``[serve]`` (`syncd.daemon.inbound`).

Serves until SIGTERM or SIGINT. With ``--run-flows`` a received change also runs the flows
that read the directory, debounced (`FlowTrigger`): the change reaches the target within
about a second, through the same plan, safety check, apply and journal as ``syncd run``.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from typing import Any

import click

from syncd.cli.common import EXIT_CONFIG, EXIT_FAILED, config_option, load_config

log = logging.getLogger("syncd.serve")


class FlowTrigger:
    """Runs `flows` of `cfg` once changes stop arriving for `quiet` seconds (at most `most`
    after the first), in one background thread; a change during a run triggers another."""

    def __init__(self, cfg: Any, flows: list[str], *, quiet: float = 0.2,
                 most: float = 1.0) -> None:
        self.cfg, self.flows, self.quiet, self.most = cfg, flows, quiet, most
        self._changed = threading.Event()
        self._stop = threading.Event()
        self._last = 0.0
        self._thread = threading.Thread(target=self._loop, name="syncd-serve-flows",
                                        daemon=True)
        self._thread.start()

    def changed(self) -> None:
        self._last = time.monotonic()
        self._changed.set()

    def stop(self) -> None:
        self._stop.set()
        self._changed.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        from syncd.cycle import engine

        while not self._stop.is_set():
            self._changed.wait()
            if self._stop.is_set():
                return
            first = time.monotonic()
            while (time.monotonic() - self._last < self.quiet
                   and time.monotonic() - first < self.most and not self._stop.is_set()):
                self._stop.wait(0.05)  # the debounce window itself, not a synchronisation
            self._changed.clear()
            try:
                for result in engine.run(self.cfg, flows=self.flows, dry_run=False):
                    log.info("flow %s after received changes: %s", result.flow,
                             getattr(result, "status", "done"))
            except Exception as exc:  # the next change tries again
                log.error("flows %s after received changes failed: %s",
                          ", ".join(self.flows), exc)


@click.command()
@config_option
@click.option("--run-flows/--no-run-flows", default=False,
              help="Run the flows reading the directory after each received change.")
def serve(config_path: str, run_flows: bool) -> None:
    """Serve the SCIM 2.0 endpoint of [serve] (Users, Groups, discovery) until SIGTERM."""
    from syncd.daemon.inbound.app import InboundApp
    from syncd.daemon.inbound.server import Server
    from syncd.state.inbox import Inbox
    from syncd.state.store import Store

    cfg = load_config(config_path)
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
            trigger = FlowTrigger(cfg, flows)
    app = InboundApp(inbox, [t.get_secret_value() for t in sc.tokens], max_body=sc.max_body,
                     rate_limit=sc.rate_limit,
                     on_change=trigger.changed if trigger is not None else None)
    server = Server(app, sc.listen, threads=sc.threads, tls_cert=sc.tls_cert,
                    tls_key=sc.tls_key, behind_proxy=sc.behind_proxy, max_body=sc.max_body)
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
