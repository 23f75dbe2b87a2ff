"""Operational commands (daemon, test-mapping, …) registered on the `syncd` group.

Kept apart from syncd/cli.py so the run/validate/status core stays small; imported at the end
of cli.py. Heavy imports stay inside the command functions.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import click

from syncd.cli import EXIT_CONFIG, EXIT_FAILED, _load, config_option, main, output_option


@main.command()
@config_option
@click.pass_context
def daemon(ctx: click.Context, config_path: str) -> None:
    """Run every flow on its schedule until SIGTERM; SIGHUP reloads the config.

    Flows without [flows.NAME.schedule] run every 15 minutes; every flow runs once at start.
    Logs go to stderr (JSON lines under systemd), at INFO unless -v is given more often.
    """
    from syncd import log
    from syncd.daemon import Daemon
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


@main.command("test-mapping")
@config_option
@click.option("--flow", "flow_name", required=True, help="The flow whose mapping to use.")
@click.option("--kind", type=click.Choice(["user", "group"]), default="user", show_default=True)
@click.option("--input", "input_file", type=click.File("r"), required=True,
              help="Sample source entry as a JSON object (name -> value or list); - for stdin.")
@output_option
def test_mapping(config_path: str, flow_name: str, kind: str, input_file: Any,
                 output: str) -> None:
    """Show what a flow's mapping and scope make of one sample source entry.

    Nothing connects anywhere: this is for writing and debugging mappings offline.
    """
    from syncd.mapping import MappingError
    from syncd.render import fmt

    cfg = _load(config_path)
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
    in_scope = kf.scope.contains(raw)
    explained = kf.mapping.explain(raw)
    held: str | None = None
    try:
        kf.mapping.map(raw)
    except MappingError as exc:
        held = str(exc)
    unused = sorted(set(raw) - kf.mapping.source_attributes() - kf.scope.source_attributes())
    if output == "json":
        click.echo(json.dumps({
            "flow": flow_name, "kind": kind, "in_scope": in_scope, "scope": str(kf.scope),
            "held": held, "unused_attributes": unused,
            "attributes": {path: {"rule": e.rule, "result": _jsonable(e.result),
                                  "managed": e.managed, "error": e.error}
                           for path, e in explained.items()},
        }, indent=2, ensure_ascii=False))
        return
    click.echo(f"flow {flow_name}, {kind}s")
    click.echo(f"  in scope: {'yes' if in_scope else 'NO'} (scope: {kf.scope})")
    width = max((len(p) for p in explained), default=0)
    for path, e in explained.items():
        if e.error is not None:
            shown = f"ERROR {e.error}"
        elif not e.managed:
            shown = "(not managed for this entry: left alone on the target)"
        else:
            shown = fmt(e.result)
        click.echo(f"  {path:<{width}} = {shown}")
        click.echo(f"  {'':<{width}}   <- {e.rule}")
    if held:
        click.echo(f"  entry would be HELD: {held}")
    if unused:
        click.echo(f"  not used by the mapping or scope: {', '.join(unused)}")


@main.command()
@config_option
@click.option("--flow", "flow_name", default=None, help="The flow (default: the only one).")
@output_option
@click.argument("who")
def explain(config_path: str, flow_name: str | None, output: str, who: str) -> None:
    """Everything about one object: source values, mapping, scope, target, link and base,
    what the next run would do and why, and its recent history. Writes nothing."""
    from syncd.errors import ConnectorError, SyncdError
    from syncd.explain import dumps
    from syncd.explain import explain as explain_one

    cfg = _load(config_path)
    flow_name = _pick_flow(cfg, flow_name)
    try:
        doc = explain_one(cfg, flow_name, who)
    except ConnectorError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    except SyncdError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_FAILED)
    if output == "json":
        click.echo(dumps(doc))
        return
    click.echo(f"{doc['kind']} {who} in flow {doc['flow']} (source id {doc['source_id']})")
    src = doc["source"]
    click.echo("source: " + ("not found (gone from the source)" if src is None else src["name"]))
    if src:
        for k, v in sorted(src["raw"].items()):
            click.echo(f"    {k}: {', '.join(map(str, v))}")
        click.echo(f"scope: {'in scope' if doc['in_scope'] else 'OUT OF SCOPE'}")
        click.echo("mapping:")
        for p, m in doc["mapping"].items():
            res = f"ERROR {m['error']}" if m["error"] else (
                json.dumps(m["result"], ensure_ascii=False) if m["managed"] else "(kept)")
            click.echo(f"    {p} = {res}    <- {m['rule']}")
    link = doc["link"]
    click.echo("link: " + ("none (not yet linked)" if link is None else
                           f"target {link['target_id']}, {link['status']}, {link['origin']}"))
    if link:
        for k, v in sorted(link["base"].items()):
            click.echo(f"    base {k}: {json.dumps(v, ensure_ascii=False)}")
    for t in doc["target"]:
        click.echo(f"target object {t['id']}:")
        for k, v in sorted(t["attrs"].items()):
            click.echo(f"    {k}: {json.dumps(v, ensure_ascii=False)}")
    click.echo("next run would:" + ("" if doc["plan"] or doc["held"] else " nothing"))
    for c in doc["plan"]:
        click.echo(f"    {c['op']} {c['kind']} ({c['reason']})"
                   + (f": {json.dumps(c.get('attrs', {}), ensure_ascii=False)}"
                      if c.get("attrs") else ""))
    for h in doc["held"]:
        click.echo(f"    hold: {h['reason']}")
    p = doc.get("pending")
    if p:
        state = "QUARANTINED" if p["quarantined"] else f"retry at {p['next_at'][:19]}"
        click.echo(f"pending: {p['op']} failed {p['attempts']}x, {state}: "
                   f"{p['error_class']}: {p['error']}")
    for o in doc.get("same_name_held", ()):
        click.echo(f"another source entry {o['source_id']} with this name is held: "
                   f"{o['error_class']}: {o['error']}")
    if doc["history"]:
        click.echo("history:")
    for h in doc["history"]:
        click.echo(f"    {str(h['at'])[:19]} run {h['run_id']}: {h['op']} {h['result']}"
                   + (f" ({h['error']})" if h["error"] else ""))


def _pick_flow(cfg: Any, flow_name: str | None) -> str:
    if flow_name is None:
        if len(cfg.flows) != 1:
            click.echo(f"several flows: choose one with --flow ({', '.join(cfg.flows)})",
                       err=True)
            sys.exit(EXIT_CONFIG)
        return str(next(iter(cfg.flows)))
    if flow_name not in cfg.flows:
        click.echo(f"unknown flow {flow_name!r} (defined: {', '.join(cfg.flows)})", err=True)
        sys.exit(EXIT_CONFIG)
    return flow_name
