"""The `syncd` command group: every command registered in one place.

Imports of heavy modules happen inside commands so `syncd --help` stays fast.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from syncd.cli import (
    check,
    inspect,
    log,
    mapping,
    plan,
    report,
    run,
    scaffold,
    serve,
    service,
)
from syncd.cli.common import EXIT_CONFIG, EXIT_FAILED


class _Group(click.Group):
    """Store, config and other syncd errors raised inside any command end as one line and the
    documented exit code (1 runtime, 2 config), never as a traceback."""

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

    log.setup(verbose)



for command in (run.run, run.validate, check.check, inspect.status, log.log_command,
                inspect.release,
                inspect.conflicts, inspect.connectors, inspect.explain, service.daemon,
                mapping.test_mapping, plan.plan, plan.apply, scaffold.init,
                scaffold.config_schema, report.report, serve.serve):
    main.add_command(command)


if __name__ == "__main__":  # pragma: no cover
    main(prog_name=os.path.basename(sys.argv[0]))
