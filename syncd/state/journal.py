"""The provisioning log: the run journal read back (`syncd log`, `syncd status --runs`) and
pruned (``[state] journal_keep``). A mixin of `Store`.

The log is one stream, newest first, of two kinds of entries: each journaled change (``ok``
or ``failed``) and each run that did not end ``ok`` (``failed``, ``refused``, ``aborted``, or
still ``running`` — also a run whose process died), so a refused run and its reason stay
visible after its output scrolled away. A run entry's time is when the run ended (when it
started, if it has not).

Scale (a million change rows): every filter is a WHERE on an indexed column — the newest N of
a flow, op or result are an index walk (``(flow, at)``, ``(op, at)``, ``(result, at)``), an
object is three index lookups (source id, target id, ``lower(name)``) — and each of the two
queries stops at the limit; pruning deletes by lists of run ids, never row by row.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, exists, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from syncd.state import schema
from syncd.state.records import aware
from syncd.state.tables import Rows

#: Results a change can have in the log (stored as "applied" / "failed").
CHANGE_RESULTS = {"ok": "applied", "failed": "failed"}
#: Results of the runs the log shows (an "ok" run is in the log through its changes).
RUN_RESULTS = ("failed", "refused", "aborted", "running")
RESULTS = ("ok", "failed", "refused", "aborted", "running")
#: The op (and kind) of a run entry.
RUN = "run"
_CHUNK = 500


@dataclass(frozen=True)
class LogQuery:
    """What `Store.log` returns: entries matching every given filter (empty sets: any)."""

    flow: str | None = None
    run_id: str | None = None
    #: A source id, a target id, or a name (ASCII letters in any case): the journal's
    #: name is the object's label — its userName or displayName, else its DN.
    object: str | None = None
    ops: frozenset[str] = frozenset()  # "run" selects run entries
    results: frozenset[str] = frozenset()
    kinds: frozenset[str] = frozenset()  # "user", "group"; "run" selects run entries
    since: datetime | None = None  # at >= since
    until: datetime | None = None  # at < until
    limit: int | None = 100

    def wants_changes(self) -> bool:
        return ((not self.ops or bool(self.ops - {RUN}))
                and (not self.kinds or bool(self.kinds - {RUN}))
                and (not self.results or bool(self.results & set(CHANGE_RESULTS))))

    def wants_runs(self) -> bool:
        return (self.object is None
                and (not self.ops or RUN in self.ops)
                and (not self.kinds or RUN in self.kinds)
                and (not self.results or bool(self.results & set(RUN_RESULTS))))


@dataclass(frozen=True)
class LogEntry:
    at: datetime
    flow: str
    run_id: str
    kind: str  # user | group | run
    op: str  # create, update, ... | run
    name: str
    source_id: str | None
    target_id: str | None
    result: str  # one of RESULTS
    error: str | None
    #: A change: what was journaled (attrs, before, members added/removed, reason). A run:
    #: its summary (plan counts, applied, failed, duration).
    detail: dict[str, Any] = field(default_factory=dict)
    #: The change row's id (orders changes of the same instant); 0 for a run.
    seq: int = 0

    def order(self) -> tuple[datetime, bool, int, str]:
        """Sort key, newest last: a run that ended in the instant of its last changes
        follows them (it ended after them)."""
        return (self.at, self.kind == RUN, self.seq, self.run_id)


class JournalMixin(Rows):
    def log(self, q: LogQuery) -> list[LogEntry]:
        """The provisioning log, newest first, at most `q.limit` entries (None: all)."""
        if self.engine is None or q.limit == 0:
            return []
        changes = self._change_entries(q) if q.wants_changes() else []
        runs = self._run_entries(q) if q.wants_runs() else []
        merged = sorted([*changes, *runs], key=LogEntry.order, reverse=True)
        return merged if q.limit is None else merged[:q.limit]

    def _change_entries(self, q: LogQuery) -> list[LogEntry]:
        assert self.engine is not None
        t = schema.change
        cond: list[ColumnElement[bool]] = []
        if q.flow is not None:
            cond.append(t.c.flow == q.flow)
        if q.run_id is not None:
            cond.append(t.c.run_id == q.run_id)
        if q.object is not None:
            cond.append(or_(t.c.source_id == q.object, t.c.target_id == q.object,
                            func.lower(t.c.name) == func.lower(q.object)))
        if q.ops:
            cond.append(t.c.op.in_(sorted(q.ops - {RUN})))
        if q.kinds:
            cond.append(t.c.kind.in_(sorted(q.kinds - {RUN})))
        if q.results:
            cond.append(t.c.result.in_(sorted(CHANGE_RESULTS[r] for r in q.results
                                              if r in CHANGE_RESULTS)))
        if q.since is not None:
            cond.append(t.c.at >= q.since)
        if q.until is not None:
            cond.append(t.c.at < q.until)
        stmt = select(t).where(*cond).order_by(t.c.at.desc(), t.c.id.desc())
        if q.limit is not None:
            stmt = stmt.limit(q.limit)
        with self.engine.connect() as conn:
            return [LogEntry(_utc(r.at), r.flow, r.run_id, r.kind, r.op, r.name,
                             r.source_id, r.target_id,
                             "ok" if r.result == "applied" else r.result, r.error,
                             json.loads(r.detail or "{}"), r.id)
                    for r in conn.execute(stmt)]

    def _run_entries(self, q: LogQuery) -> list[LogEntry]:
        assert self.engine is not None
        t = schema.run
        at = func.coalesce(t.c.finished_at, t.c.started_at)
        wanted = [r for r in RUN_RESULTS if not q.results or r in q.results]
        cond: list[ColumnElement[bool]] = [t.c.result.in_(wanted)]
        if q.flow is not None:
            cond.append(t.c.flow == q.flow)
        if q.run_id is not None:
            cond.append(t.c.id == q.run_id)
        if q.since is not None:
            cond.append(at >= q.since)
        if q.until is not None:
            cond.append(at < q.until)
        stmt = select(t).where(*cond).order_by(at.desc(), t.c.id.desc())
        if q.limit is not None:
            stmt = stmt.limit(q.limit)
        with self.engine.connect() as conn:
            return [LogEntry(_utc(r.finished_at or r.started_at), r.flow,
                             r.id, RUN, RUN, "", None, None, r.result, r.error,
                             json.loads(r.summary or "{}"))
                    for r in conn.execute(stmt)]

    def runs(self, flow: str, limit: int = 5, *, hide_empty: bool = False
             ) -> list[dict[str, Any]]:
        """The flow's last `limit` runs, newest first (`syncd status --runs`); `hide_empty`
        skips runs that ended ok having planned, applied and failed nothing."""
        if self.engine is None or limit <= 0:
            return []
        t = schema.run
        out: list[dict[str, Any]] = []
        page = limit if not hide_empty else max(limit, 200)
        last: tuple[datetime, str] | None = None
        with self.engine.connect() as conn:
            while len(out) < limit:
                stmt = select(t).where(t.c.flow == flow)
                if last is not None:  # keyset paging: runs older than the last one seen
                    stmt = stmt.where(or_(t.c.started_at < last[0], and_(
                        t.c.started_at == last[0], t.c.id < last[1])))
                rows = [dict(r._mapping) for r in conn.execute(stmt.order_by(
                    t.c.started_at.desc(), t.c.id.desc()).limit(page))]
                out += [r for r in rows if not (hide_empty and _empty(r))]
                if len(rows) < page:
                    break
                last = (rows[-1]["started_at"], rows[-1]["id"])
        return out[:limit]

    def recent_going(self, flow: str, since: datetime) -> dict[str, int]:
        """Per kind: the objects this flow's applied changes took away since `since` --
        deprovisions, deletes and updates turning ``active`` false -- leaving out runs let
        through with --allow-deletes (their summary says ``"allowed": true``). For the
        safety check's window (`syncd.plan.safety`): a flood split across small runs."""
        if self.engine is None:
            return {}
        r, c = schema.run, schema.change
        allowed = select(r.c.id).where(r.c.flow == flow, r.c.started_at >= since,
                                       r.c.summary.like('%"allowed": true%'))
        base = and_(c.c.flow == flow, c.c.at >= since, c.c.result == "applied",
                    c.c.run_id.not_in(allowed))
        out: dict[str, int] = {}
        with self.engine.connect() as conn:
            gone = select(c.c.kind, func.count()).where(
                base, c.c.op.in_(("deprovision", "delete"))).group_by(c.c.kind)
            for kind, n in conn.execute(gone):
                out[kind] = out.get(kind, 0) + n
            maybe = select(c.c.kind, c.c.detail).where(
                base, c.c.op == "update", c.c.detail.like('%"active": false%'))
            for kind, detail in conn.execute(maybe):
                if json.loads(detail).get("attrs", {}).get("active") is False:
                    out[kind] = out.get(kind, 0) + 1
        return out

    def prune_journal(self, older_than: datetime) -> tuple[int, int]:
        """Delete the runs that started before `older_than`, with their changes, in one
        transaction — except each flow's last run, whatever its age. Returns how many runs
        and how many changes went. Deletes go by lists of run ids, in bulk."""
        if self.engine is None:
            return 0, 0
        r, c = schema.run, schema.change
        later = r.alias("later")
        doomed = select(r.c.id).where(r.c.started_at < older_than, exists().where(
            later.c.flow == r.c.flow, later.c.started_at > r.c.started_at))
        changes = 0
        with self.engine.begin() as conn:
            ids = [row[0] for row in conn.execute(doomed)]  # the same set for both deletes
            for chunk in _chunks(ids):
                changes += conn.execute(delete(c).where(c.c.run_id.in_(chunk))).rowcount
                conn.execute(delete(r).where(r.c.id.in_(chunk)))
        return len(ids), changes


def _utc(ts: datetime) -> datetime:
    out = aware(ts)
    assert out is not None
    return out


def _empty(run: dict[str, Any]) -> bool:
    if run.get("result") != "ok":
        return False
    s = json.loads(run.get("summary") or "{}")
    plan = s.get("plan") or {}
    planned = sum(n for ops in plan.values() if isinstance(ops, dict)
                  for n in ops.values() if isinstance(n, int))
    return not (planned or s.get("applied") or s.get("failed"))


def _chunks(ids: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(ids), _CHUNK):
        yield ids[i:i + _CHUNK]
