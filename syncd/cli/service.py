"""`syncd daemon`: the long-running service (see `syncd.daemon`)."""

from __future__ import annotations

import logging
import sys

import click

from syncd.cli.common import (
    EXIT_CONFIG,
    EXIT_FAILED,
    config_option,
)


@click.command()
@config_option
@click.pass_context
def daemon(ctx: click.Context, config_path: str) -> None:
    """Run every flow on its schedule until SIGTERM; SIGHUP reloads the config.

    Flows without [flows.NAME.schedule] run every 15 minutes; every flow runs once at start.
    Logs go to stderr (JSON lines under systemd), at INFO unless -v is given more often.
    """
    from syncd import log
    from syncd.daemon.service import Daemon
    from syncd.errors import ConfigError, StoreError

    verbose = int((ctx.parent.params if ctx.parent else {}).get("verbose") or 0)
    log.setup(max(1, verbose))
    logger = logging.getLogger("syncd.daemon")
    try:
        d = Daemon(config_path)
    except (ConfigError, ValueError) as exc:
        logger.error("invalid config, not starting: %s", exc)
        sys.exit(EXIT_CONFIG)
    try:
        d.check_store()
    except ConfigError as exc:
        logger.error("invalid config, not starting: %s", exc)
        sys.exit(EXIT_CONFIG)
    except StoreError as exc:
        logger.error("not starting: %s", exc)
        sys.exit(EXIT_FAILED)
    # APScheduler's own warnings (skipped or missed runs) in the same one-line format.
    aps = logging.getLogger("apscheduler")
    aps.handlers[:] = logging.getLogger("syncd").handlers
    aps.setLevel(logging.INFO if verbose >= 2 else logging.WARNING)
    aps.propagate = False
    try:
        code = d.run()
    except OSError as exc:  # e.g. the metrics address is taken
        logger.error("daemon failed: %s", exc)
        sys.exit(EXIT_FAILED)
    sys.exit(code)

