"""`syncd log`: the provisioning log — every change syncd applied or failed to apply, and
every run that did not end ok (refused by a safety check, aborted, failed), newest first,
read from the state store only (no connector is opened, no secret resolved).

What is shown never carries a secret or a password: error texts were redacted when stored
and are redacted again here; attributes that name a password or credential (SCIM
``password``, ``userPassword``, ``unicodePwd``, …) are shown as ``[redacted]``.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from syncd.cli.common import config_option, load_config, store_line
from syncd.plan.value import OPS
from syncd.redact import MASK, SECRET_ATTRIBUTE, redact

#: Attribute names whose values are never shown, whatever the mapping put there.
#: Journal fields shown as they are (the rest of a change's detail is its values).
_PLAIN = ("id", "op", "kind", "source_id", "target_id", "name", "reason")
CSV_FIELDS = ("at", "flow", "run_id", "kind", "op", "name", "source_id", "target_id",
              "result", "error", "reason", "detail")


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """``--since``/``--until``: a duration back from now (``2h``, ``7d``, ``1h30m``) or an
    ISO 8601 date or date-time (``2025-03-01``, ``2025-03-01T08:00``, ``…+02:00``); without
    an offset it is UTC, like every time syncd shows."""
    from syncd.config.durations import parse_duration

    now = now or datetime.now(UTC)
    try:
        return now - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is neither a duration (2h, 7d) nor an ISO 8601 date or time "
            f"(2025-03-01, 2025-03-01T08:00, 2025-03-01T08:00+02:00)") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


class _When(click.ParamType):
    name = "WHEN"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_when(str(value))
        except click.BadParameter as exc:
            self.fail(exc.message, param, ctx)


@click.command("log")
@config_option
@click.option("--flow", default=None, help="Only this flow.")
@click.option("--run", "run_id", default=None, metavar="RUN_ID", help="Only this run.")
@click.option("--object", "obj", default=None, metavar="X",
              help="Only this object: its source id (anchor), target id, or name "
                   "(userName, displayName or DN as journaled; any ASCII case).")
@click.option("--op", "ops", multiple=True, type=click.Choice([*OPS, "run"]),
              help="Only these operations (repeatable); 'run': refused, aborted and "
                   "failed runs.")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(["user", "group", "run"]),
              help="Only users, groups or runs (repeatable).")
@click.option("--result", "results", multiple=True,
              type=click.Choice(["ok", "failed", "refused", "aborted", "running"]),
              help="Only changes that went ok / failed, or runs that failed, were refused, "
                   "aborted or are still running (repeatable).")
@click.option("--since", type=_When(), default=None,
              help="From this time on: a duration back (2h, 7d) or ISO 8601 (UTC unless "
                   "it says otherwise).")
@click.option("--until", type=_When(), default=None, help="Before this time (same forms).")
@click.option("--limit", type=click.IntRange(min=0), default=100, show_default=True,
              help="At most this many entries, newest first; 0: all.")
@click.option("--output", "-o", type=click.Choice(["text", "json", "csv"]), default="text",
              show_default=True)
def log_command(config_path: str, flow: str | None, run_id: str | None, obj: str | None,
                ops: tuple[str, ...], kinds: tuple[str, ...], results: tuple[str, ...],
                since: datetime | None, until: datetime | None, limit: int,
                output: str) -> None:
    """The provisioning log: each change applied or failed, and each run that was refused,
    aborted or failed (with its reason), newest first, from the state store.

    Filters combine (all must hold). The journal keeps runs for [state] journal_keep
    (default 90d): the daemon prunes older runs and their changes daily, each flow's last
    run excepted, so older entries are gone.
    """
    from syncd.state.journal import LogQuery
    from syncd.state.opening import safe_url
    from syncd.state.store import Store

    cfg = load_config(config_path, secrets=False)
    query = LogQuery(flow=flow, run_id=run_id, object=obj, ops=frozenset(ops),
                     results=frozenset(results), kinds=frozenset(kinds), since=since,
                     until=until, limit=limit or None)
    store = Store(cfg.state_url, readonly=True)
    try:
        entries = [shown(e) for e in store.log(query)]
    finally:
        store.close()
    if output == "json":
        click.echo(json.dumps({"state_store": safe_url(cfg.state_url),
                               "journal_keep": cfg.journal_keep, "entries": entries},
                              indent=2, ensure_ascii=False, default=str))
        return
    if output == "csv":  # the data on stdout, the store on stderr
        click.echo(store_line(cfg), err=True)
        click.echo(to_csv(entries), nl=False)
        return
    click.echo(store_line(cfg))
    for e in entries:
        click.echo(text_line(e))
    if not entries:
        click.echo("no entries")
    elif limit and len(entries) == limit:
        click.echo(f"(the newest {limit}: --limit N for more, --limit 0 for all)")
    keep = cfg.journal_keep
    click.echo("the journal is never pruned (state.journal_keep = \"forever\")"
               if cfg.journal_keep_seconds is None else
               f"runs older than {keep} and their changes are pruned "
               f"(state.journal_keep = \"{keep}\")")


def shown(e: Any) -> dict[str, Any]:
    """A log entry as a person (or a script) sees it: secrets and passwords masked."""
    out: dict[str, Any] = {
        "at": e.at.isoformat(), "flow": e.flow, "run_id": e.run_id, "kind": e.kind,
        "op": e.op, "name": e.name, "source_id": e.source_id, "target_id": e.target_id,
        "result": e.result, "error": redact(e.error) if e.error else e.error,
    }
    if e.kind == "run":
        out["summary"] = e.detail
        return out
    out["reason"] = redact(str(e.detail.get("reason", "")))
    for key, value in e.detail.items():
        if key not in _PLAIN:
            out[key] = _masked(value) if isinstance(value, dict) else value
    return out


def _masked(values: dict[str, Any]) -> dict[str, Any]:
    return {k: MASK if SECRET_ATTRIBUTE.search(k) else _clean(v) for k, v in values.items()}


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def text_line(e: dict[str, Any]) -> str:
    when = e["at"][:19].replace("T", " ") + "Z"
    head = f"{when}  {e['flow']}  {e['run_id']}  {e['result']:8} "
    if e["kind"] == "run":
        s = e.get("summary") or {}
        line = head + (f"run: {s.get('applied', 0)} applied, {s.get('failed', 0)} failed"
                       + (f"; planned {_planned(s['plan'])}" if s.get("plan") else ""))
        return line + (f" — {e['error']}" if e["error"] else "")
    ids = e["source_id"] or ""
    if e["target_id"]:
        ids += f" -> {e['target_id']}"
    line = head + f"{e['op']} {e['kind']} {e['name'] or e['source_id']}  [{ids}]"
    what = _what(e)
    if what:
        line += "  " + what
    if e["reason"]:
        line += f"  ({e['reason']})"
    return line + (f"  error: {e['error']}" if e["error"] else "")


def _planned(plan: dict[str, Any]) -> str:
    from syncd.cycle.render import summary_line

    return summary_line(plan)


def _value(v: Any, width: int = 60) -> str:
    text = json.dumps(v, ensure_ascii=False) if v is not None else "(none)"
    return text if len(text) <= width else text[:width - 1] + "…"


def _what(e: dict[str, Any]) -> str:
    parts: list[str] = []
    for side, prefix in (("", ""), ("source_", "on the source: ")):
        attrs, before = e.get(f"{side}attrs") or {}, e.get(f"{side}before") or {}
        if attrs:
            if e["op"] == "create":
                shown_ = ", ".join(f"{k}={_value(v, 40)}" for k, v in attrs.items())
            else:
                shown_ = "; ".join(f"{k}: {_value(before.get(k))} -> {_value(v)}"
                                   for k, v in attrs.items())
            parts.append(prefix + shown_)
        add, remove = e.get(f"{side}add") or [], e.get(f"{side}remove") or []
        if add or remove:
            parts.append(f"{prefix}members +{len(add)} -{len(remove)}")
    return "; ".join(parts)


def to_csv(entries: list[dict[str, Any]]) -> str:
    """One row per entry under a header; what has no column of its own (changed values,
    members, a run's summary) is a JSON object in `detail`."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for e in entries:
        rest = {k: v for k, v in e.items() if k not in CSV_FIELDS}
        w.writerow({**e, "reason": e.get("reason", ""),
                    "detail": json.dumps(rest, ensure_ascii=False, default=str)})
    return buf.getvalue()
