"""`syncd test-mapping`: a flow's mapping applied to entries from a file, nothing connected."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from syncd.cli.common import (
    EXIT_CONFIG,
    EXIT_FAILED,
    config_option,
    load_config,
    output_option,
)
from syncd.redact import MASK, mask_value


def _raw(doc: Any) -> dict[str, tuple[str, ...]]:
    """A sample entry as connectors hand it over: lower-cased names, tuples of strings."""
    if not isinstance(doc, dict):
        raise ValueError("the input must be a JSON object of attribute name -> value or list")
    out: dict[str, tuple[str, ...]] = {}
    for name, value in doc.items():
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, dict | list) for v in values):
            raise ValueError(f"attribute {name!r}: values must be strings, numbers or booleans")
        out[str(name).lower()] = tuple(
            ("TRUE" if v else "FALSE") if isinstance(v, bool) else str(v)
            for v in values if v is not None)
    return out


def _jsonable(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


@click.command("test-mapping")
@config_option
@click.option("--flow", "flow_name", default=None,
              help="The flow whose mapping to use (default: the only one).")
@click.option("--kind", type=click.Choice(["user", "group"]), default="user", show_default=True)
@click.option("--input", "input_file", type=click.File("r"), required=True,
              help="Sample source entry as a JSON object (name -> value or list); - for stdin.")
@output_option
def test_mapping(config_path: str, flow_name: str | None, kind: str, input_file: Any,
                 output: str) -> None:
    """Show what a flow's mapping and scope make of one sample source entry.

    Nothing connects anywhere (no secrets needed): this is for writing and debugging mappings
    offline. Exits 1 when the entry would be held (a mapping error), 0 otherwise.
    """
    from syncd.cycle.render import fmt
    from syncd.mapping.conditions import ConditionError
    from syncd.mapping.rules import MappingError

    cfg = load_config(config_path, secrets=False)
    if flow_name is None:
        if len(cfg.flows) != 1:
            click.echo(f"--flow is needed: the config has {len(cfg.flows)} flows "
                       f"({', '.join(cfg.flows) or 'none'})", err=True)
            sys.exit(EXIT_CONFIG)
        (flow_name,) = cfg.flows
    flow = cfg.flows.get(flow_name)
    if flow is None:
        click.echo(f"unknown flow {flow_name!r} (defined: {', '.join(cfg.flows) or 'none'})",
                   err=True)
        sys.exit(EXIT_CONFIG)
    kf = flow.kind(kind)
    if kf is None:
        click.echo(f"flow {flow_name} does not sync {kind}s", err=True)
        sys.exit(EXIT_CONFIG)
    try:
        raw = _raw(json.load(input_file))
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        click.echo(f"invalid input: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    undecided: str | None = None
    try:
        in_scope = kf.scope.contains(raw)
    except ConditionError as exc:
        in_scope, undecided = False, f"scope: {exc}"
    explained = kf.mapping.explain(raw)
    held: str | None = undecided
    try:
        held = held or kf.mapping.empty_identifier(kf.kind, kf.mapping.map(raw))
    except MappingError as exc:
        held = str(exc)
    unused = sorted(set(raw) - kf.mapping.source_attributes() - kf.scope.source_attributes())
    if output == "json":
        click.echo(json.dumps({
            "flow": flow_name, "kind": kind, "in_scope": in_scope, "scope": str(kf.scope),
            "held": held, "unused_attributes": unused,
            "attributes": {path: {"rule": e.rule, "result": mask_value(path, _jsonable(e.result)),
                                  "managed": e.managed, "error": e.error,
                                  "steps": [[what, _jsonable(mask_value(path, vals))]
                                            for what, vals in e.steps]}
                           for path, e in explained.items()},
        }, indent=2, ensure_ascii=False))
        sys.exit(EXIT_FAILED if held else 0)
    click.echo(f"flow {flow_name}, {kind}s")
    click.echo(f"  in scope: {'yes' if in_scope else 'NO'} (scope: {kf.scope})")
    width = max((len(p) for p in explained), default=0)
    for path, e in explained.items():
        if e.error is not None:
            shown = f"ERROR {e.error}"
        elif not e.managed:
            shown = "(not managed for this entry: left alone on the target)"
        else:
            shown = fmt(e.result) if mask_value(path, e.result) is e.result else MASK
        click.echo(f"  {path:<{width}} = {shown}")
        click.echo(f"  {'':<{width}}   <- {e.rule}")
        if len(e.steps) > 1 or e.error is not None or (
                e.steps and not e.steps[0][0].startswith("read ")):
            for what, vals in e.steps:
                masked = mask_value(path, vals)
                click.echo(f"  {'':<{width}}      {what}: "
                           f"{fmt(masked) if masked is vals else MASK}")
    if held:
        click.echo(f"  entry would be HELD: {held}")
    if unused:
        click.echo(f"  not used by the mapping or scope: {', '.join(unused)}")
    if held:
        sys.exit(EXIT_FAILED)

