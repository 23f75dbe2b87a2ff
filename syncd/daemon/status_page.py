"""The status page as HTML: one renderer for the daemon's listener (``/``, ``/status``) and
``syncd report --html``.

`render` turns a `syncd.daemon.status_data.Snapshot` into one self-contained document:
inline CSS, no script, no image, no font, nothing fetched (the page carries its own
Content-Security-Policy, so a report opened from a file is held to the same rules as the
served page). Every value is HTML-escaped where it is written (`_e`): names and errors come
from directories and peers, and ``<script>`` in a displayName is text.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from datetime import UTC, datetime
from html import escape
from urllib.parse import urlencode

from syncd.daemon.status_data import (
    ConflictView,
    FlowView,
    HeldView,
    History,
    HistoryRow,
    RunView,
    Snapshot,
)

#: Also sent as a header by the daemon; the meta tag covers a report opened from a file.
CSP = "default-src 'none'; style-src 'unsafe-inline'"

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:0 1em 3em;
color:#1d2330;background:#fbfbfc}
h1{font-size:1.5em;margin:.8em 0 .2em}h2{font-size:1.2em;margin:1.6em 0 .5em;
border-bottom:1px solid #d5d9e0;padding-bottom:.2em}h3{font-size:1.05em;margin:1em 0 .3em}
.meta,.none,footer{color:#5b6272}nav a{margin-right:1em}
table{border-collapse:collapse;width:100%;margin:.4em 0}
th,td{text-align:left;vertical-align:top;padding:.25em .5em;border-bottom:1px solid #e3e6eb}
th{background:#eef0f4;font-weight:600}td.v{font-family:ui-monospace,monospace;font-size:.92em}
pre,code{font-family:ui-monospace,monospace;background:#eef0f4;border-radius:3px}
pre{padding:.6em;overflow-x:auto;white-space:pre-wrap;word-break:break-all}
.badge{display:inline-block;border-radius:3px;padding:0 .45em;color:#fff;font-weight:600;
font-size:.9em}
.r-ok{background:#2e7d32}.r-failed,.r-error{background:#c62828}.r-refused{background:#ef6c00}
.r-aborted{background:#6a1b9a}.r-running{background:#1565c0}.r-other{background:#607d8b}
.strip{display:flex;gap:3px;margin:.3em 0}.strip span{width:14px;height:14px;border-radius:2px}
ol.timeline{list-style:none;margin:.4em 0;padding:0 0 0 1.1em;border-left:3px solid #d5d9e0}
ol.timeline li{position:relative;margin:0 0 .7em;padding-left:.4em}
ol.timeline li .dot{position:absolute;left:-1.72em;top:.3em;width:11px;height:11px;
border-radius:50%}
.err,.reasons{color:#8e1b1b}.refused{border-left:4px solid #ef6c00;padding:.1em .8em;
background:#fff4e5;margin:.6em 0}.error{background:#fdecea;border-left:4px solid #c62828;
padding:.6em}.lookup{margin:.6em 0}.lookup input{width:18em}
"""

RESULTS = ("ok", "failed", "error", "refused", "aborted", "running")


def render(snap: Snapshot, *, served: bool = True) -> str:
    """The whole page. `served`: links to object histories and the lookup form (a report
    written to a file has no server behind it)."""
    flows = {f.name for f in snap.flows}
    body = [
        f"<h1>syncd status</h1>\n<p class=\"meta\">state store <code>{_e(snap.store)}"
        f"</code> · config <code>{_e(snap.config_path)}</code> · {_when(snap.generated_at)}"
        " · read-only: reload the page to refresh</p>",
        '<nav><a href="#approval">refused plans</a><a href="#held">quarantine and retries</a>'
        '<a href="#conflicts">conflicts</a><a href="#runs">runs</a></nav>',
    ]
    if served:
        body.append(_lookup(snap))
    if snap.error is not None:
        body.append(f'<p class="error" role="alert">The state store cannot be read: '
                    f"{_e(snap.error)}</p>")
    if snap.history is not None:
        body.append(_history(snap.history, served, flows))
    body += [_approvals(snap), _held(snap, served), _conflicts(snap), _runs(snap)]
    if snap.received is not None:
        body.append(_received(snap.received))
    body.append("<footer><p>syncd: this page only reads the state store.</p></footer>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>syncd status</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def _received(counts: tuple[tuple[str, str, int], ...]) -> str:
    out = ['<section id="received">', "<h2>Received over SCIM since the daemon started</h2>"]
    if not counts:
        out.append("<p>No request yet.</p>")
    else:
        out.append(_table(("kind", "status", "requests"),
                          ([_e(k), _e(s), _e(n)] for k, s, n in counts), "received"))
    return "\n".join([*out, "</section>"])


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _when(ts: datetime | None) -> str:
    if ts is None:
        return "—"
    ts = ts.astimezone(UTC)
    return f'<time datetime="{ts.isoformat()}">{ts:%Y-%m-%d %H:%M:%S} UTC</time>'


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds:.2f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _result_class(result: str) -> str:
    if result == "applied":  # a journaled change
        return "r-ok"
    return f"r-{result}" if result in RESULTS else "r-other"


def _object_link(flow: str, source_id: str, text: str, served: bool) -> str:
    if not served:
        return _e(text)
    query = urlencode({"object": source_id, "flow": flow})
    return f'<a href="status?{_e(query)}">{_e(text)}</a>'


def _table(head: Iterable[str], rows: Iterable[Iterable[str]], cls: str) -> str:
    """`rows` hold cells already escaped."""
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    trs = "\n".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return (f'<table class="{cls}">\n<thead><tr>{th}</tr></thead>\n<tbody>\n{trs}\n'
            "</tbody>\n</table>")


def _lookup(snap: Snapshot) -> str:
    h = snap.history
    chosen = h.flow if h is not None else None
    options = '<option value="">any flow</option>' + "".join(
        f'<option value="{_e(f.name)}"{" selected" if f.name == chosen else ""}>'
        f"{_e(f.name)}</option>" for f in snap.flows)
    value = _e(h.query) if h is not None else ""
    return ('<form class="lookup" method="get" action="status"><label>Object history: '
            f'<input name="object" value="{value}" placeholder="name, source id or target id">'
            f"</label> <select name=\"flow\" aria-label=\"flow\">{options}</select> "
            "<button type=\"submit\">Show</button></form>")


def _history(h: History, served: bool, flows: set[str]) -> str:
    where = f" in flow {_e(h.flow)}" if h.flow else ""
    out = [f'<section id="history" data-object="{_e(h.query)}">',
           f"<h2>History of <q>{_e(h.query)}</q>{where}</h2>"]
    if h.flow and h.flow not in flows:
        out.append(f'<p class="none">There is no flow {_e(h.flow)} in this config.</p>')
    if h.held:
        out.append(_held_table(h.held, served))
    if h.rows:
        out.append(_table(
            ("when", "flow", "run", "change", "name", "result", "why", "values", "error"),
            (_history_cells(r) for r in h.rows), "history"))
    else:
        out.append(f'<p class="none">No journal rows for <q>{_e(h.query)}</q>{where} '
                   "(matched by source id, target id or name).</p>")
    out.append("</section>")
    return "\n".join(out)


def _history_cells(r: HistoryRow) -> list[str]:
    values = "<br>".join(f"{_e(k)}: {_e(v)}" for k, v in r.values)
    name = _e(r.name) + (f'<br><span class="meta">{_e(r.source_id)}</span>'
                         if r.source_id else "")
    return [_when(r.at), _e(r.flow), f"<code>{_e(r.run_id)}</code>", f"{_e(r.op)} {_e(r.kind)}",
            name, f'<span class="badge {_result_class(r.result)}">{_e(r.result)}</span>',
            _e(r.reason), f'<span class="v">{values}</span>',
            f'<span class="err">{_e(r.error)}</span>' if r.error else ""]


def _approvals(snap: Snapshot) -> str:
    out = ['<section id="approval">', "<h2>Refused plans awaiting approval</h2>"]
    waiting = [f for f in snap.flows if f.awaiting is not None]
    if not waiting:
        out.append('<p class="none">No refused plan awaits approval.</p>')
    for f in waiting:
        run = f.awaiting
        assert run is not None
        config = shlex.quote(snap.config_path)
        flow = shlex.quote(f.name)
        out.append(
            f'<article class="refused" data-flow="{_e(f.name)}">'
            f"<h3>flow {_e(f.name)}: refused by the safety check at {_when(run.started_at)}"
            f"</h3>\n<p>run <code>{_e(run.id)}</code> planned {_e(run.counts)}; nothing was "
            "applied. Every scheduled run is refused again until the plan is approved or "
            "the directories change.</p>\n<ul class=\"reasons\">"
            + "".join(f"<li>{_e(r)}</li>" for r in run.refused) + "</ul>\n"
            "<p>Review the plan, then approve it as a whole or object by object:</p>\n"
            f"<pre>syncd plan --config {_e(config)} --flow {_e(flow)} --out plan.json\n"
            "syncd apply plan.json --approve-all        # or: --approve NAME [--approve NAME ...]"
            "</pre></article>")
    out.append("</section>")
    return "\n".join(out)


def _held(snap: Snapshot, served: bool) -> str:
    out = ['<section id="held">', "<h2>Quarantined objects and pending retries</h2>"]
    items = [h for f in snap.flows for h in f.held]
    if not items:
        out.append('<p class="none">Nothing quarantined, no retry pending.</p>')
    else:
        out.append(_held_table(items, served))
        out.append(f'<p class="meta">Release quarantined objects for a retry: <code>syncd '
                   f"release --config {_e(shlex.quote(snap.config_path))} --flow FLOW "
                   "[OBJECT ...]</code></p>")
    for f in snap.flows:
        if f.held_total > len(f.held):
            out.append(f'<p class="meta">flow {_e(f.name)}: {f.held_total - len(f.held)} more '
                       "not listed here (syncd status).</p>")
    out.append("</section>")
    return "\n".join(out)


def _held_table(items: Iterable[HeldView], served: bool) -> str:
    def cells(h: HeldView) -> list[str]:
        state = ('<span class="badge r-failed">quarantined</span>' if h.quarantined
                 else f"retry at {_when(h.next_at)}")
        return [_e(h.flow), state, f"{_e(h.op)} {_e(h.kind)}",
                _object_link(h.flow, h.source_id, h.name or h.source_id, served),
                str(h.attempts), f'<span class="err">{_e(h.error)}</span>']

    return _table(("flow", "state", "change", "object", "attempts", "last error"),
                  (cells(h) for h in items), "held")


def _conflicts(snap: Snapshot) -> str:
    out = ['<section id="conflicts">', "<h2>Held two-way conflicts</h2>"]
    rows: list[tuple[FlowView, ConflictView]] = [(f, c) for f in snap.flows
                                                 for c in f.conflicts]
    if not rows:
        out.append('<p class="none">No conflict held.</p>')
    else:
        out.append(_table(
            ("id", "flow", "object", "attribute", "source", "target", "base", "state"),
            ([f"<code>{_e(c.id)}</code>", _e(f.name), f"{_e(c.kind)} {_e(c.name)}",
              _e(c.path), f'<span class="v">{_e(c.source_value)}</span>',
              f'<span class="v">{_e(c.target_value)}</span>',
              f'<span class="v">{_e(c.base_value)}</span>',
              "held" if c.resolution is None else
              f"resolved to {_e(c.resolution)} (applied next run)"] for f, c in rows),
            "conflicts"))
        out.append('<p class="meta">Settle one: <code>syncd conflicts resolve ID --take '
                   "source|target|VALUE</code></p>")
    for f in snap.flows:
        if f.conflicts_total > len(f.conflicts):
            out.append(f'<p class="meta">flow {_e(f.name)}: {f.conflicts_total - len(f.conflicts)}'
                       " more conflicts (syncd conflicts).</p>")
    out.append("</section>")
    return "\n".join(out)


def _runs(snap: Snapshot) -> str:
    out = ['<section id="runs">', "<h2>Last runs</h2>"]
    if not snap.flows:
        out.append('<p class="none">No flow configured.</p>')
    for i, f in enumerate(snap.flows):
        links = "; ".join(
            f"{_e(kind)}s {sum(v.values())} ("
            + ", ".join(f"{n} {_e(s)}" for s, n in v.items()) + ")"
            for kind, v in f.links.items()) or "none"
        out.append(
            f'<section class="flow" id="flow-{i}" data-flow="{_e(f.name)}">'
            f"<h3>flow {_e(f.name)}</h3>\n<p class=\"meta\">{_e(f.source)} → {_e(f.target)} "
            f"({_e(f.mode)}) · links: {links} · {f.quarantined} quarantined, "
            f"{len(f.held) - f.quarantined} pending retries · {len(f.conflicts)} conflicts"
            + (f" · runs on {_e(f.runs_on)}" if f.runs_on else "") + "</p>")
        if not f.runs:
            out.append('<p class="none">No runs yet.</p></section>')
            continue
        strip = "".join(f'<span class="{_result_class(r.result)}" title="'
                        f'{_e(r.result)} {r.started_at:%Y-%m-%d %H:%M} UTC"></span>'
                        if r.started_at else "" for r in reversed(f.runs))
        out.append(f'<div class="strip" aria-hidden="true">{strip}</div>')
        out.append(f'<ol class="timeline" aria-label="runs of {_e(f.name)}, newest first">'
                   + "".join(_run_item(r) for r in f.runs) + "</ol></section>")
    out.append("</section>")
    return "\n".join(out)


def _run_item(r: RunView) -> str:
    cls = _result_class(r.result)
    extra = ""
    if r.refused:
        extra += '<ul class="reasons">' + "".join(f"<li>{_e(x)}</li>" for x in r.refused) + "</ul>"
    elif r.error:
        extra += f'<div class="err">error: {_e(r.error)}</div>'
    if r.failures:
        more = r.failed - len(r.failures)
        extra += ('<ul class="reasons">' + "".join(f"<li>{_e(x)}</li>" for x in r.failures)
                  + (f"<li>… {more} more</li>" if more > 0 else "") + "</ul>")
    return (f'<li class="run" data-result="{_e(r.result)}" data-run="{_e(r.id)}">'
            f'<span class="dot {cls}"></span><div class="meta">{_when(r.started_at)} · '
            f"{_duration(r.duration_s)} · run <code>{_e(r.id)}</code></div>"
            f'<div><span class="badge {cls}">{_e(r.result)}</span> {r.applied} applied, '
            f"{r.failed} failed — {_e(r.counts)}</div>{extra}</li>")
