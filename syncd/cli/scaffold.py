"""Getting started: `syncd init` writes a commented config for a source/target pair (one of
the examples in syncd/config/examples, which config/ links to), `syncd config-schema`
prints the config's JSON Schema for editors."""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path

import click

from syncd.cli.common import EXIT_CONFIG

#: (source, target, two-way) -> the example written for it.
EXAMPLES = {
    ("ldap", "scim", False): "syncd.example.toml",
    ("ldap", "scim", True): "two-way-ldap-scim.toml",
    ("graph", "scim", False): "entra-to-scim.toml",
    ("ldap", "graph", False): "ldap-to-entra.toml",
    ("graph", "ldap", False): "entra-to-ldap.toml",
}


def example_text(name: str) -> str:
    return resources.files("syncd.config").joinpath("examples", name).read_text("utf-8")


@click.command("init")
@click.option("--source", "source", type=click.Choice(["ldap", "graph"]), default="ldap",
              show_default=True)
@click.option("--target", "target", type=click.Choice(["scim", "ldap", "graph"]),
              default="scim", show_default=True)
@click.option("--two-way", is_flag=True, help="A two-way flow (LDAP <-> SCIM).")
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="Write here (default: stdout); an existing file is never overwritten.")
def init(source: str, target: str, two_way: bool, out: str | None) -> None:
    """Write a commented config for a source/target pair, to edit and `syncd validate`."""
    name = EXAMPLES.get((source, target, two_way))
    if name is None:
        pairs = ", ".join(f"{s} -> {t}" + (" (--two-way)" if w else "")
                          for s, t, w in EXAMPLES)
        click.echo(f"no example for {source} -> {target}"
                   + (" two-way" if two_way else "") + f"; there are: {pairs}", err=True)
        sys.exit(EXIT_CONFIG)
    text = example_text(name)
    if out is None:
        click.echo(text, nl=False)
        return
    path = Path(out)
    try:
        with path.open("x", encoding="utf-8") as f:  # "x": never overwrite an edited config
            f.write(text)
    except FileExistsError:
        click.echo(f"{out} exists: not overwritten", err=True)
        sys.exit(EXIT_CONFIG)
    click.echo(f"wrote {out} ({name}); edit it, then: syncd validate --config {out}")


@click.command("config-schema")
def config_schema() -> None:
    """Print the config file's JSON Schema (for editors: completion and checks as you type)."""
    from syncd.config.json_schema import config_schema as build

    click.echo(json.dumps(build(), indent=2))
