"""The `syncd` command group: every command registered in one place (`COMMANDS`).

Start-up is most of what a one-shot command costs (run from cron every minute), so only the
module of the command being run is imported, and heavy modules (the engine, SQLAlchemy, the
connectors) are imported inside the commands that need them: `syncd --help` imports every
command module and nothing heavy (``tests/unit/test_startup.py``).
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
from typing import Any

import click

from syncd.cli.common import EXIT_CONFIG, EXIT_FAILED

#: Each command: the module and function that define it, imported when the command runs.
COMMANDS = {
    "run": "run:run", "validate": "run:validate", "check": "check:check",
    "status": "inspect:status", "log": "log:log_command", "release": "inspect:release",
    "conflicts": "inspect:conflicts", "connectors": "inspect:connectors",
    "explain": "inspect:explain", "daemon": "service:daemon",
    "test-mapping": "mapping:test_mapping", "plan": "plan:plan", "apply": "plan:apply",
    "init": "scaffold:init", "config-schema": "scaffold:config_schema",
    "report": "report:report", "serve": "serve:serve",
}  # fmt: skip

#: The cyclic garbage collector runs a young collection every this many net allocations of
#: container objects (CPython's default: 700). Reading a directory allocates a few dicts and
#: tuples per entry, none of them cyclic, and with the default the collector spent ~0.25 s
#: of a dry run of 20,000 creates (1.70 -> 1.47 s CPU, whole process, medians of 5;
#: disabled entirely: 1.40 s); young garbage held a little longer costs nothing measurable
#: (peak RSS 101 MB either way). The older generations keep their default ratios, so a
#: long-running daemon still collects its cycles.
GC_YOUNG_THRESHOLD = 10_000


class _Group(click.Group):
    """Commands are loaded from `COMMANDS` when asked for. Store, config and other syncd
    errors raised inside any command end as one line and the documented exit code (1
    runtime, 2 config), never as a traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        where = COMMANDS.get(cmd_name)
        if where is None:
            return None
        module, name = where.split(":")
        command = getattr(importlib.import_module(f"syncd.cli.{module}"), name)
        assert isinstance(command, click.Command)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        from syncd.errors import ConfigError, StoreError, SyncdError

        try:
            return super().invoke(ctx)
        except StoreError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_FAILED)
        except ConfigError as exc:
            click.echo(f"invalid config:\n{exc}", err=True)
            sys.exit(EXIT_CONFIG)
        except SyncdError as exc:  # e.g. the daemon holds the flow's lock: one line, exit 1
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_FAILED)


@click.group(cls=_Group)
@click.option("-v", "--verbose", count=True, help="More log output (repeatable).")
@click.version_option(package_name="syncd")
def main(verbose: int) -> None:
    """syncd: plan and apply directory sync between LDAP, SCIM and Microsoft Graph."""
    from syncd import log

    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])

    log.setup(verbose)


if __name__ == "__main__":  # pragma: no cover
    main(prog_name=os.path.basename(sys.argv[0]))
