"""Looking at what syncd did and holds: `status`, `release`, `conflicts`, `connectors`,
`explain`."""

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
    store_line,
)


@click.command()
@config_option
@output_option
@click.option("--runs", "runs", type=click.IntRange(min=0), default=5, show_default=True,
              help="How many of each flow's last runs to show.")
@click.option("--hide-empty", is_flag=True,
              help="Skip runs that ended ok having planned and applied nothing.")
def status(config_path: str, output: str, runs: int, hide_empty: bool) -> None:
    """Last runs and link counts per flow, from the state store (the whole provisioning
    log: syncd log)."""
    from syncd.cycle.render import summary_line
    from syncd.state.opening import safe_url
    from syncd.state.store import Store

    cfg = load_config(config_path, secrets=False)
    store = Store(cfg.state_url, readonly=True)
    doc: dict[str, Any] = {}
    try:
        facts = store.facts()  # what `syncd check` learned about each connector's server
        for name in cfg.flows:
            flow = cfg.flows[name]
            doc[name] = {"links": store.link_counts(name),
                         "servers": {c: facts[c] for c in (flow.source, flow.target)
                                     if c in facts},
                         **store.pending_counts(name),
                         "cursor_age_s": store.cursor_age(name),
                         "conflicts": len(store.conflicts(name)),
                         "schedule": _schedule(cfg.flows[name]),
                         "held": [{"kind": p.kind, "source_id": p.source_id, "name": p.name,
                                   "op": p.op, "attempts": p.attempts,
                                   "next_at": p.next_at.isoformat(),
                                   "quarantined": p.quarantined,
                                   "error": f"{p.error_class}: {p.error}"}
                                  for p in store.pending(name).values()],
                         "runs": [_run_json(r) for r in
                                  store.runs(name, runs, hide_empty=hide_empty)],
                         "state_store": safe_url(cfg.state_url)}
    finally:
        store.close()
    if output == "json":
        click.echo(json.dumps(doc, indent=2, default=str))
        return
    click.echo(store_line(cfg))
    for name, d in doc.items():
        click.echo(f"flow {name}")
        links = ", ".join(f"{k}s {sum(v.values())} ({', '.join(f'{n} {s}' for s, n in v.items())})"
                          for k, v in d["links"].items()) or "none"
        click.echo(f"  links: {links}")
        age = d["cursor_age_s"]
        click.echo(f"  cursor age: {'none yet' if age is None else f'{age:.0f}s'}; "
                   f"pending retries: {d['pending']}; quarantined: {d['quarantined']}; "
                   f"conflicts held: {d['conflicts']}; schedule: {d['schedule']}")
        for conn, f in d["servers"].items():
            said = "; ".join(f"{k}: {v}" for k, v in sorted(f["facts"].items()))
            click.echo(f"  {conn} (syncd check {str(f['checked_at'])[:16]}): {said}")
        for p in d["held"]:
            state = "QUARANTINED" if p["quarantined"] else f"retry at {p['next_at'][:19]}"
            click.echo(f"    {state}: {p['op']} {p['kind']} {p['name']} "
                       f"(attempt {p['attempts']}): {p['error']}")
        if not d["runs"] and runs:
            click.echo("  no runs that planned or applied anything (--hide-empty)"
                       if hide_empty else "  no runs yet")
        for r in d["runs"]:
            s = r["summary"]
            when = str(r["started_at"])[:19]
            line = (f"  {when}  {r['result']:8} {s.get('applied', 0)} applied, "
                    f"{s.get('failed', 0)} failed — {summary_line(s.get('plan', {}))}")
            click.echo(line + (f"  error: {r['error']}" if r.get("error") else ""))


def _schedule(flow: Any) -> str:
    sch = flow.schedule
    if sch is None:
        return "every 15m (daemon default)"
    when = f"every {sch.interval}" if sch.interval else f"cron {sch.cron!r}"
    return when + (f", jitter {sch.jitter}" if sch.jitter else "")


def _run_json(r: dict[str, Any]) -> dict[str, Any]:
    out = dict(r)
    out["summary"] = json.loads(r.get("summary") or "{}")
    return out


@click.command()
@config_option
@click.option("--flow", required=True, help="The flow whose quarantine to release.")
@click.argument("objects", nargs=-1)
def release(config_path: str, flow: str, objects: tuple[str, ...]) -> None:
    """Let quarantined changes be retried on the next run (all, or the named objects)."""
    from syncd.state.store import Store

    cfg = load_config(config_path, secrets=False)
    if flow not in cfg.flows:
        click.echo(f"unknown flow {flow!r}", err=True)
        sys.exit(EXIT_CONFIG)
    store = Store(cfg.state_url)
    try:
        n = sum(store.release(flow, o) for o in objects) if objects else store.release(flow)
    finally:
        store.close()
    click.echo(store_line(cfg))
    click.echo(f"released {n} quarantined change(s) of flow {flow}")


@click.group(invoke_without_command=True)
@config_option
@click.option("--flow", default=None, help="Only this flow's conflicts.")
@output_option
@click.pass_context
def conflicts(ctx: click.Context, config_path: str, flow: str | None, output: str) -> None:
    """List held two-way conflicts: both values and the base they diverged from."""
    ctx.obj = config_path
    if ctx.invoked_subcommand is not None:
        return
    from syncd.state.store import Store

    cfg = load_config(config_path, secrets=False)
    store = Store(cfg.state_url, readonly=True)
    try:
        rows = store.conflicts(flow)
    finally:
        store.close()
    if output == "json":  # a list on stdout: the store is named on stderr
        click.echo(store_line(cfg), err=True)
        click.echo(json.dumps(rows, indent=2, default=str, ensure_ascii=False))
        return
    click.echo(store_line(cfg))
    if not rows:
        click.echo("no conflicts")
    for r in rows:
        state = f"resolved -> {r['resolution']!r} (applied next run)" if r["resolved"] else "held"
        click.echo(f"{r['id']}  {r['flow']} {r['kind']} {r['name']} {r['path']}: "
                   f"source {r['source_value']!r}, target {r['target_value']!r}, "
                   f"base {r['base_value']!r}  [{state}]")


@conflicts.command("resolve")
@click.argument("conflict_id")
@click.option("--take", required=True,
              help="source | target | a literal VALUE to write to both sides.")
@click.pass_context
def conflicts_resolve(ctx: click.Context, conflict_id: str, take: str) -> None:
    """Settle one conflict; the next run writes the chosen value to both sides."""
    from syncd.state.store import Store

    cfg = load_config(ctx.obj, secrets=False)
    store = Store(cfg.state_url)
    try:
        row = next((c for c in store.conflicts() if c["id"] == conflict_id), None)
        if row is None:
            click.echo(f"no conflict with id {conflict_id}", err=True)
            sys.exit(EXIT_CONFIG)
        value = {"source": row["source_value"], "target": row["target_value"]}.get(take, take)
        store.resolve_conflict(conflict_id, value)
    finally:
        store.close()
    click.echo(store_line(cfg))
    click.echo(f"conflict {conflict_id} ({row['name']} {row['path']}) resolved to {value!r}; "
               f"the next run applies it")


@click.command()
def connectors() -> None:
    """List installed connector types (the syncd.connectors entry points)."""
    from syncd import registry

    for name, ep in sorted(registry.available().items()):
        click.echo(f"{name:10} {ep.value}")



@click.command()
@config_option
@click.option("--flow", "flow_name", default=None, help="The flow (default: the only one).")
@output_option
@click.argument("who")
def explain(config_path: str, flow_name: str | None, output: str, who: str) -> None:
    """Everything about one object: source values, mapping, scope, target, link and base,
    what the next run would do and why, and its recent history. Writes nothing."""
    from syncd.cli.explain import dumps
    from syncd.cli.explain import explain as explain_one
    from syncd.errors import ConnectorError, SyncdError
    from syncd.state.opening import safe_url

    cfg = load_config(config_path)
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
        click.echo(dumps({**doc, "state_store": safe_url(cfg.state_url)}))
        return
    click.echo(store_line(cfg))
    click.echo(f"{doc['kind']} {who} in flow {doc['flow']} (source id {doc['source_id']})")
    src = doc["source"]
    click.echo("source: " + ("not found (gone from the source)" if src is None else src["name"]))
    if src:
        for k, v in sorted(src["raw"].items()):
            click.echo(f"    {k}: {', '.join(map(str, v))}")
        click.echo("scope: " + ("in scope" if doc["in_scope"] else
                                f"OUT OF SCOPE: {doc['out_of_scope']}"))
        click.echo("mapping:")
        for p, m in doc["mapping"].items():
            res = f"ERROR {m['error']}" if m["error"] else (
                json.dumps(m["result"], ensure_ascii=False) if m["managed"] else "(kept)")
            click.echo(f"    {p} = {res}    <- {m['rule']}")
    link = doc["link"]
    if link is None:
        click.echo("link: none (never synced)")
    else:
        since = f" since {link['status_at'][:19]}" if link["status_at"] else ""
        state = "ACTIVE" if link["status"] == "active" else link["status"].upper() + since
        click.echo(f"link: target {link['target_id']}, {state}, {link['origin']}"
                   + (f"; target object deleted at {link['delete_at'][:19]}"
                      if link["delete_at"] else ""))
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
    for n in doc.get("references", ()):
        click.echo(f"    reference {n}")
    for tid, name in sorted(doc.get("reference_names", {}).items()):
        click.echo(f"    reference {tid} is {name}")
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
