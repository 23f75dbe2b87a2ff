"""What every command shares: the documented exit codes, the common options, loading the
config with the one error format.

Exit codes are part of the interface (documented in the README): 0 success (also when nothing
changed), 1 the run had failures, 2 invalid config or usage, 3 refused by a safety check,
4 changes planned (only with ``--detailed-exitcode``).
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterable
from typing import Any

import click

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_REFUSED = 0, 1, 2, 3
#: With ``--detailed-exitcode``: the plan had changes (a CI gate on a dry run).
EXIT_CHANGES = 4

config_option = click.option(
    "--config", "-c", "config_path", envvar="SYNCD_CONFIG", required=True,
    type=click.Path(dir_okay=False), help="Config file (default: $SYNCD_CONFIG).")
output_option = click.option("--output", "-o", type=click.Choice(["text", "json"]),
                             default="text", show_default=True)


def load_config(path: str, *, secrets: bool = True, service: bool = False) -> Any:
    """The config, or exit 2 with the error. `secrets=False` for commands that open no
    connector: they work from a shell without the service's credentials; `service=True`
    for the commands that are the service ([serve] tokens, [alerts] headers resolved)."""
    from syncd import config
    from syncd.errors import ConfigError

    try:
        return config.load(path, secrets=secrets, service=service)
    except ConfigError as exc:
        click.echo(f"invalid config:\n{exc}", err=True)
        sys.exit(EXIT_CONFIG)


def settle_start_up() -> None:
    """Called by the one-shot commands that read whole directories (`run`, `plan`) once their
    modules, config and connector classes are loaded: all of that lives as long as the
    process, so `gc.freeze` takes it out of the collector's sight, and the full collections a
    growing heap triggers stop traversing the objects of SQLAlchemy, pydantic and our own
    classes every time (dry run of 20,000 creates: 1.14 -> 1.01 s CPU, whole process,
    medians of 5). Undone when the command ends (`gc.unfreeze`): a process that runs
    commands in a loop (tests through click's runner) would otherwise keep whatever cyclic
    garbage was alive at each freeze for good. The daemon never freezes."""
    gc.freeze()
    click.get_current_context().call_on_close(gc.unfreeze)


def store_line(cfg: Any) -> str:
    """Which state store a command opened: every command says it, so a second store (a shell
    in another directory, another config) is never a silent surprise."""
    from syncd.state.opening import safe_url

    return f"state store: {safe_url(cfg.state_url)}"


#: Characters written at a time by `echo_stream`.
_BLOCK = 1 << 16


def echo_stream(pieces: Iterable[str], sep: str = "") -> None:
    """What ``click.echo(sep.join(pieces))`` writes, written as the pieces come (in blocks of
    ~64 KB): a dry run of 100,000 changes is never held rendered whole."""
    block: list[str] = []
    size = 0
    for n, piece in enumerate(pieces):
        if n and sep:
            block.append(sep)
        block.append(piece)
        size += len(piece) + len(sep)
        if size >= _BLOCK:
            click.echo("".join(block), nl=False)
            block.clear()
            size = 0
    click.echo("".join(block))
