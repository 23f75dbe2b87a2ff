"""`syncd check`: the doctor. Connects to everything a config names and says what works.

`validate` never connects, so before this a dry run was the only test, and a scope typo
(``employeType``) passed validation to be caught by the safety check as "100 % deprovision"
without a word about the attribute. For every connector: its secrets resolve here, it opens
(connect, bind/authenticate, TLS), its capabilities, and whatever its optional ``probe()``
reports (LDAP: root DSE, feeds; SCIM: ServiceProviderConfig, schemas). For every flow: a
sample of source entries, how many carry each attribute the mapping and scope read (none
at all is an error: a typo, or an attribute the bind account cannot read), how many are
in scope, and the mapped paths the target cannot store (SCIM: not in its /Schemas, with a
did-you-mean; ``validate --online`` checks only these). Exit 1 on any problem. Writes
nothing to any directory; what the probes found is kept in the state store, and
`syncd status` shows it.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import click

from syncd.cli.common import EXIT_FAILED, config_option, load_config, output_option, store_line

#: Source entries sampled per flow and kind (one page of a listing; never a full read).
SAMPLE = 200


@dataclass
class Report:
    connectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    flows: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    #: flow -> kind -> mapped path the target cannot store -> why (with any did-you-mean)
    paths: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)


def _open(cfg: Any, name: str, report: Report) -> Any | None:
    """The connector `name`, opened with its secrets resolved here, or None (and why)."""
    from syncd import registry
    from syncd.secrets import resolve_secret, unresolved

    spec = cfg.connectors[name]
    entry: dict[str, Any] = report.connectors.setdefault(name, {"type": spec.type})
    update = {}
    for where, ref in unresolved(spec.config, ""):
        problem = ref.problem()
        if problem is not None:
            report.problems.append(f"connector {name}: secret {where.lstrip('.')} "
                                   f"({ref.reference}): {problem}")
            entry["ok"] = False
            return None
        update[where.lstrip(".")] = resolve_secret(ref.reference)
    started = time.monotonic()
    try:
        cls: Any = registry.load(spec.type)
        conn = cls(name, spec.config.model_copy(update=update))
        conn.open()
    except Exception as exc:  # every failure is a finding, never a traceback
        report.problems.append(f"connector {name}: cannot open: {type(exc).__name__}: {exc}")
        entry["ok"] = False
        return None
    entry.update(ok=True, open_s=round(time.monotonic() - started, 3))
    caps = conn.capabilities
    entry["capabilities"] = {k: v for k, v in vars(caps).items()
                             if isinstance(v, bool | int | str)}
    probe = getattr(conn, "probe", None)
    if probe is not None:
        try:
            entry["probe"] = probe()
        except Exception as exc:
            report.problems.append(f"connector {name}: probe failed: {exc}")
    return conn


def target_paths(flow: Any, target: Any, report: Report) -> None:
    """Mapped paths the opened target cannot store: those a SCIM server's /Schemas does not
    declare (core, enterprise or any extension), or spells otherwise. A target that cannot
    tell (no ``path_problems``) passes."""
    problems = getattr(target, "path_problems", None)
    if problems is None:
        return
    for kf in flow.kinds:
        found = problems(kf.kind, list(kf.mapping.paths))
        if found:
            report.paths.setdefault(flow.name, {})[kf.kind] = dict(found)
        for why in (found[p] for p in sorted(found)):
            report.problems.append(f"flow {flow.name}, {kf.kind}s: target {flow.target}: "
                                   f"{why}; it is not sent")


def online_paths(cfg: Any) -> Report:
    """`syncd validate --online`: open each flow's target, check the mapped paths, close."""
    report = Report()
    opened: dict[str, Any] = {}
    try:
        for flow in cfg.flows.values():
            if flow.target not in opened and flow.target not in report.connectors:
                conn = _open(cfg, flow.target, report)
                if conn is not None:
                    opened[flow.target] = conn
            if flow.target in opened:
                target_paths(flow, opened[flow.target], report)
    finally:
        for conn in opened.values():
            with contextlib.suppress(Exception):
                conn.close()
    return report


def _sample(flow: Any, source: Any, report: Report) -> None:
    """Attribute coverage and scope over one page of each kind's source entries."""
    from syncd.mapping.conditions import ConditionError

    doc: dict[str, Any] = report.flows.setdefault(flow.name, {})
    for kf in flow.kinds:
        attrs = sorted(kf.mapping.source_attributes() | kf.scope.source_attributes())
        seen = in_scope = 0
        undecided = ""
        carry = dict.fromkeys(attrs, 0)
        reads = source.read(kf.kind, None, attrs)
        try:
            for batch in reads:
                for e in batch.entries:
                    seen += 1
                    try:
                        in_scope += kf.scope.contains(e.raw)
                    except ConditionError as exc:
                        undecided = undecided or (f"flow {flow.name}: {kf.kind} {e.name}: the "
                                                  f"scope cannot decide ({exc}); such entries "
                                                  "are held")
                    for a in attrs:
                        carry[a] += bool(e.raw.get(a.lower()) or e.raw.get(a))
                if seen >= SAMPLE:
                    break
        except Exception as exc:
            report.problems.append(f"flow {flow.name}: reading {kf.kind}s failed: {exc}")
            continue
        finally:
            close = getattr(reads, "close", None)
            if close is not None:
                close()
        doc[kf.kind] = {"sampled": seen, "in_scope": in_scope, "attributes": carry}
        if undecided:
            report.problems.append(undecided)
        if seen == 0:
            report.problems.append(f"flow {flow.name}: the source returned no {kf.kind}s "
                                   "(base DN, filter, permissions?)")
            continue
        for a, n in carry.items():
            if n == 0:
                report.problems.append(
                    f"flow {flow.name}: no sampled {kf.kind} carries {a!r} (of {seen}): "
                    "a typo in the mapping or scope, or an attribute the account cannot read")
        if in_scope == 0:
            report.problems.append(f"flow {flow.name}: none of {seen} sampled {kf.kind}s is "
                                   f"in scope ({kf.scope})")


@click.command("check")
@config_option
@output_option
def check(config_path: str, output: str) -> None:
    """Connect to every connector and sample every flow's source: what works, what does not.

    Exits 1 when anything is wrong; writes nothing."""
    cfg = load_config(config_path, secrets=False)
    report = Report()
    opened: dict[str, Any] = {}
    try:
        for name in cfg.connectors:
            conn = _open(cfg, name, report)
            if conn is not None:
                opened[name] = conn
        for flow in cfg.flows.values():
            if flow.source in opened:
                _sample(flow, opened[flow.source], report)
            if flow.target in opened:
                target_paths(flow, opened[flow.target], report)
    finally:
        for conn in opened.values():
            with contextlib.suppress(Exception):  # closing must not hide the findings
                conn.close()
    _remember(cfg, report)
    if output == "json":
        click.echo(json.dumps({**vars(report), "ok": not report.problems}, indent=2,
                              default=str))
    else:
        _text(cfg, report)
    if report.problems:
        sys.exit(EXIT_FAILED)


def _remember(cfg: Any, report: Report) -> None:
    """Keep what the probes found in the state store, for `syncd status` (best effort: a
    store that cannot be written is a problem of its own, reported by every other command)."""
    from syncd.state.store import Store

    found = {n: c["probe"] for n, c in report.connectors.items() if c.get("probe")}
    if not found:
        return
    try:
        store = Store(cfg.state_url)
    except Exception as exc:
        report.problems.append(f"state store: findings not kept: {exc}")
        return
    try:
        for name, facts in found.items():
            store.save_facts(name, facts)
    finally:
        store.close()


def _text(cfg: Any, report: Report) -> None:
    click.echo(store_line(cfg))
    for name, c in report.connectors.items():
        state = f"ok, opened in {c['open_s']}s" if c.get("ok") else "FAILED"
        click.echo(f"connector {name} ({c['type']}): {state}")
        for k, v in sorted((c.get("probe") or {}).items()):
            click.echo(f"    {k}: {v}")
    for name, kinds in report.flows.items():
        for kind, d in kinds.items():
            click.echo(f"flow {name}, {kind}s: {d['sampled']} sampled, {d['in_scope']} in scope")
            for a, n in d["attributes"].items():
                click.echo(f"    {a}: {n} of {d['sampled']}" + ("   <- none" if n == 0 else ""))
    for p in report.problems:
        click.echo(f"PROBLEM: {p}")
    if not report.problems:
        click.echo("all checks passed")
