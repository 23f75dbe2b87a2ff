"""What the status page shows, read from the state store and nothing else: a `Snapshot`.

`gather` opens its own read-only `Store` and closes it before returning, so every page served
by the daemon (one thread per request) or written by ``syncd report --html`` has a
connection of its own: nothing is shared between threads, and a SQLite reader in WAL mode
never blocks the daemon's writers. A store that cannot be read becomes `Snapshot.error`,
not an exception: the page says so.

Nothing secret gets in: free texts (errors, reasons, refusals, journaled values) go through
`syncd.redact`, and values of attributes whose name says password, secret, token, key or
hash are masked (`mask_value`). Everything stays plain text here; escaping is the
renderer's job (`syncd.daemon.status_page`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from syncd.cycle.render import summary_line
from syncd.redact import MASK, SECRET_ATTRIBUTE, redact
from syncd.state.records import aware

#: Runs shown per flow, newest first.
RUNS = 20
#: Pending retries / quarantined objects and conflicts listed per flow at most.
MAX_LISTED = 200
#: Failed changes listed per run at most (the count is in `RunView.failed`).
MAX_FAILURES = 5
#: Journal rows of one object's history at most.
MAX_HISTORY = 200
#: Longest value shown (an attribute value, an error): the page stays readable.
MAX_VALUE = 300
#: Attribute names whose values are never shown (the one list: `syncd.redact`).
SECRET_NAME = SECRET_ATTRIBUTE


@dataclass(frozen=True)
class RunView:
    id: str
    started_at: datetime | None
    finished_at: datetime | None
    result: str
    applied: int
    failed: int
    duration_s: float | None
    counts: str
    error: str | None
    refused: tuple[str, ...] = ()
    #: The run's failed changes from the journal ("op kind name: error"), the first few.
    failures: tuple[str, ...] = ()


@dataclass(frozen=True)
class HeldView:
    """A change waiting for a retry, or quarantined after failing MAX_ATTEMPTS times."""

    flow: str
    kind: str
    source_id: str
    name: str
    op: str
    attempts: int
    next_at: datetime | None
    quarantined: bool
    error: str


@dataclass(frozen=True)
class ConflictView:
    id: str
    kind: str
    source_id: str
    name: str
    path: str
    source_value: str
    target_value: str
    base_value: str
    resolution: str | None


@dataclass(frozen=True)
class FlowView:
    name: str
    source: str
    target: str
    mode: str
    links: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    runs: tuple[RunView, ...] = ()
    held: tuple[HeldView, ...] = ()
    held_total: int = 0
    conflicts: tuple[ConflictView, ...] = ()
    conflicts_total: int = 0
    #: The instance that owns or runs the flow (``syncd daemon HOST:PID``), when several
    #: share a PostgreSQL store; None when nobody does or the store cannot tell (SQLite).
    runs_on: str | None = None

    @property
    def awaiting(self) -> RunView | None:
        """The latest run, when the safety check refused it: its plan awaits approval."""
        return self.runs[0] if self.runs and self.runs[0].result == "refused" else None

    @property
    def quarantined(self) -> int:
        return sum(1 for h in self.held if h.quarantined)


@dataclass(frozen=True)
class HistoryRow:
    at: datetime | None
    flow: str
    run_id: str
    kind: str
    op: str
    result: str
    name: str
    source_id: str
    target_id: str
    reason: str
    values: tuple[tuple[str, str], ...]
    error: str | None


@dataclass(frozen=True)
class History:
    """One object's journal rows (`?object=NAME_OR_ID&flow=F`) and its pending retry."""

    query: str
    flow: str | None
    rows: tuple[HistoryRow, ...] = ()
    held: tuple[HeldView, ...] = ()


@dataclass(frozen=True)
class Snapshot:
    generated_at: datetime
    store: str
    config_path: str
    flows: tuple[FlowView, ...] = ()
    history: History | None = None
    error: str | None = None
    #: SCIM requests the daemon answered since it started, (kind, status, count); None when
    #: it serves no SCIM (``[serve]``). Filled by the daemon's page, not from the store.
    received: tuple[tuple[str, str, int], ...] | None = None


def gather(cfg: Any, *, runs: int = RUNS, obj: str | None = None,
           flow: str | None = None) -> Snapshot:
    """The snapshot of `cfg`'s flows (a `syncd.config.flows.Config`; no secrets needed), and
    the history of `obj` (in `flow`, else in any flow) when given."""
    from syncd.errors import SyncdError
    from syncd.state.opening import safe_url
    from syncd.state.store import Store

    base = Snapshot(datetime.now(UTC), safe_url(cfg.state_url), str(cfg.path))
    try:
        store = Store(cfg.state_url, readonly=True)
        try:
            flows = tuple(_flow(store, f, runs) for f in cfg.flows.values())
            history = (_history(store, obj, flow, [flow] if flow else list(cfg.flows))
                       if obj else None)
        finally:
            store.close()
    except SyncdError as exc:  # StoreError and ConfigError: the page says why
        return replace(base, error=redact(str(exc)))
    return replace(base, flows=flows, history=history)


def _flow(store: Any, flow: Any, runs: int) -> FlowView:
    held = [_held(p) for p in store.pending(flow.name).values()]
    held.sort(key=lambda h: (not h.quarantined, h.name.casefold(), h.source_id))
    conflicts = store.conflicts(flow.name)
    rows = store.recent_runs(flow.name, runs)
    failures = _failures(store, [str(r["id"]) for r in rows if r.get("result") != "ok"])
    return FlowView(
        flow.name, flow.source, flow.target, flow.mode, store.link_counts(flow.name),
        tuple(_run(r, failures.get(str(r["id"]), ())) for r in rows),
        tuple(held[:MAX_LISTED]), len(held),
        tuple(_conflict(c) for c in conflicts[:MAX_LISTED]), len(conflicts),
        store.runs_on(flow.name))


def _failures(store: Any, run_ids: list[str]) -> dict[str, tuple[str, ...]]:
    """run id -> its first MAX_FAILURES failed changes, from the journal."""
    if not run_ids or store.engine is None:
        return {}
    from sqlalchemy import and_, select

    from syncd.state import schema

    t = schema.change
    out: dict[str, list[str]] = {}
    q = (select(t.c.run_id, t.c.op, t.c.kind, t.c.name, t.c.source_id, t.c.error)
         .where(and_(t.c.run_id.in_(run_ids), t.c.result == "failed")).order_by(t.c.id))
    with store.engine.connect() as conn:
        for r in conn.execute(q):
            listed = out.setdefault(r.run_id, [])
            if len(listed) < MAX_FAILURES:
                listed.append(_text(f"{r.op} {r.kind} {r.name or r.source_id}: {r.error}"))
    return {k: tuple(v) for k, v in out.items()}


def _run(r: Mapping[str, Any], failures: tuple[str, ...] = ()) -> RunView:
    try:
        s = json.loads(r.get("summary") or "{}")
    except ValueError:
        s = {}
    started, finished = aware(r.get("started_at")), aware(r.get("finished_at"))
    duration = s.get("duration_s")
    if duration is None and started and finished:
        duration = (finished - started).total_seconds()
    refused = tuple(_text(x) for x in s.get("refused") or ())
    error = r.get("error")
    if r.get("result") == "refused" and not refused and error:
        refused = (_text(error),)  # a run journaled before the reasons were kept apart
    return RunView(str(r["id"]), started, finished, str(r.get("result") or "?"),
                   int(s.get("applied") or 0), int(s.get("failed") or 0),
                   float(duration) if duration is not None else None,
                   summary_line(s.get("plan") or {}) or "no plan",
                   _text(error) if error else None, refused, failures)


def _held(p: Any) -> HeldView:
    return HeldView(p.flow, p.kind, p.source_id, p.name, p.op, p.attempts, aware(p.next_at),
                    bool(p.quarantined), _text(f"{p.error_class}: {p.error}"))


def _conflict(c: Mapping[str, Any]) -> ConflictView:
    path = str(c["path"])
    return ConflictView(
        str(c["id"]), str(c["kind"]), str(c["source_id"]), str(c.get("name") or ""), path,
        mask_value(path, c["source_value"]), mask_value(path, c["target_value"]),
        mask_value(path, c["base_value"]),
        mask_value(path, c["resolution"]) if c.get("resolved") else None)


def _history(store: Any, obj: str, flow: str | None, flows: list[str]) -> History:
    from sqlalchemy import and_, func, or_, select

    from syncd.state import schema

    held = tuple(_held(p) for f in flows for p in store.pending(f).values()
                 if obj in (p.source_id, p.name) or p.name.casefold() == obj.casefold())
    keys = {(h.flow, h.source_id) for h in held}
    if store.engine is not None:
        t = schema.change
        match = or_(t.c.source_id == obj, t.c.target_id == obj, t.c.name == obj,
                    func.lower(t.c.name) == obj.lower())
        with store.engine.connect() as conn:
            keys |= {(f, s) for f, s in conn.execute(
                select(t.c.flow, t.c.source_id).where(and_(t.c.flow.in_(flows), match))
                .distinct().limit(50)) if s is not None}
            rows = [] if not keys else list(conn.execute(
                select(t).where(or_(*(and_(t.c.flow == f, t.c.source_id == s)
                                      for f, s in sorted(keys))))
                .order_by(t.c.id.desc()).limit(MAX_HISTORY)))
    else:
        rows = []
    return History(obj, flow, tuple(_history_row(r._mapping) for r in rows), held)


def _history_row(r: Mapping[str, Any]) -> HistoryRow:
    try:
        detail = json.loads(r.get("detail") or "{}")
    except ValueError:
        detail = {}
    values = list(_values(detail.get("attrs") or {}, "", detail.get("before") or {}))
    values += _values(detail.get("source_attrs") or {}, "source ",
                      detail.get("source_before") or {})
    for key, label in (("add", "members added"), ("remove", "members removed")):
        if detail.get(key):
            values.append((label, str(len(detail[key]))))
    return HistoryRow(
        aware(r.get("at")), str(r["flow"]), str(r["run_id"]), str(r["kind"]), str(r["op"]),
        str(r["result"]), str(r.get("name") or ""), str(r.get("source_id") or ""),
        str(r.get("target_id") or ""), _text(str(detail.get("reason") or "")),
        tuple(values), _text(r["error"]) if r.get("error") else None)


def _values(attrs: Mapping[str, Any], prefix: str, before: Mapping[str, Any]
            ) -> Iterable[tuple[str, str]]:
    for path in sorted(attrs):
        now = mask_value(path, attrs[path])
        if path in before:
            now = f"{mask_value(path, before[path])} → {now}"
        yield prefix + path, now


def mask_value(path: str, value: Any) -> str:
    """A stored value as the page shows it: masked for a password-like attribute, secrets
    redacted, cut to MAX_VALUE characters."""
    if SECRET_NAME.search(path):
        return MASK
    if isinstance(value, str):
        return _text(value)
    return _text(json.dumps(list(value) if isinstance(value, tuple) else value,
                            ensure_ascii=False, default=str))


def _text(text: str) -> str:
    return redact(str(text), limit=MAX_VALUE)
