"""Apply a plan to the target: the only place that writes to connectors and links.

Stages run in plan order (users, groups, memberships, deprovisioning); inside a stage changes
run concurrently on a bounded thread pool (the target's ``concurrency``). Each change's link is
recorded as soon as it succeeded (flushed in small batches), so a crash loses at most the last
batch of link writes — and those objects are found again by the match keys on the next run and
adopted, never created twice. A SCIM 409 on create is handled the same way, on the spot.

Failure policy comes from `syncd.errors`: `Rejected`/`Retriable` fail one change and the rest
proceed (the next run re-plans it, because its link did not move); `Fatal` stops submitting
work, lets in-flight changes finish and records them, then aborts the flow.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from syncd.config.flows import Flow
from syncd.connector import Connector
from syncd.cycle.preserve import send_members
from syncd.cycle.ref_names import TargetNames
from syncd.cycle.session import ApplyResult, Failure, Session
from syncd.cycle.write_back import WriteBack, _Outcome
from syncd.errors import Collision, Conflict, ConnectorError, Fatal, Rejected, Retriable
from syncd.model import Kind, StoredAttrs, Value, digest
from syncd.plan.nesting import member_group_id
from syncd.plan.push import diff, label, match_value
from syncd.plan.value import Change, Plan
from syncd.redact import mask_attributes, redact
from syncd.state.records import Link
from syncd.state.store import Store

log = logging.getLogger("syncd.apply")




class Applier(WriteBack):
    def __init__(self, flow: Flow, target: Connector, store: Store, run_id: str,
                 progress: Callable[[str], None] | None = None,
                 stop: threading.Event | None = None, source: Connector | None = None) -> None:
        self.stop = stop or threading.Event()
        self.source = source  # two-way flows write back to it
        self.flow = flow
        self.target = target
        self.store = store
        self.run_id = run_id
        self.progress = progress
        self.links: dict[Kind, dict[str, Link]] = {}
        #: Users whose removal from a group failed this run (two-stage: members, then users).
        self.unremoved: set[str] = set()
        #: Reference values as the target writes them (target ids -> its names: LDAP DNs).
        self.names = TargetNames(flow, target)
        cfg: Any = getattr(target, "config", None)
        self.concurrency = max(1, int(getattr(cfg, "concurrency", 4) or 4))

    def apply(self, plan: Plan) -> ApplyResult:
        stages: dict[int, list[Change]] = {}
        for c in plan.changes:
            stages.setdefault(c.stage, []).append(c)
        with self.session(len(plan.changes)) as run:
            for stage in sorted(stages):
                self.links = self._stage_links(stages[stage])
                for task in self.tasks(stages[stage]):
                    if not run.submit(task):
                        break
                run.drain()
                if run.halted:
                    break
        return run.result

    def lock_lost(self) -> str | None:
        """Why the flow's lock is no longer ours (checked before each batch), or None."""
        return self.store.lock_lost(self.flow.name)

    def session(self, total: int | None = None) -> Session:
        """A pool of workers to submit tasks to; planned work can be fed while it runs."""
        return Session(self, total)

    @property
    def bulk_size(self) -> int | None:
        """Target creates per bulk request, or None when the target has no bulk endpoint."""
        caps = self.target.capabilities
        if not caps.bulk or not hasattr(self.target, "create_many"):
            return None
        return max(1, min(caps.bulk_max_operations or 100, 1000))

    def tasks(self, changes: list[Change], carry: list[Change] | None = None
              ) -> list[list[Change]]:
        """Units of work for the pool: one change each, except target creates, which go
        to the target's bulk endpoint in chunks when it has one (SCIM /Bulk).

        With `carry` (a list the caller keeps across calls: a read planned page by page), a
        last chunk that is not full waits there to be topped up by the next call's creates;
        `tasks(carry)` sends what is left."""
        try:  # every reference these changes write, named in one lookup per kind
            self.names.prefetch(changes)
        except ConnectorError as exc:  # each change asks again, and fails alone
            log.warning("naming reference values on %s failed: %s", self.target.name, exc)
        size = self.bulk_size
        if size is None:
            return [[c] for c in changes]
        creates = [*(carry or ()), *(c for c in changes if _bulk_create(c))]
        keep = len(creates) % size if carry is not None else 0
        if carry is not None:
            carry[:] = creates[len(creates) - keep:]
        sent = creates[:len(creates) - keep]
        return ([sent[i:i + size] for i in range(0, len(sent), size)]
                + [[c] for c in changes if not _bulk_create(c)])

    def _run_task(self, task: list[Change]) -> list[_Outcome]:
        bulk = _bulk_create(task[0]) and self.bulk_size is not None
        if not bulk:
            return [self._one(c) for c in task]
        try:
            results = self.target.create_many(  # type: ignore[attr-defined]
                task[0].kind, [self.names.out(c.kind, c.attrs) for c in task])
        except Exception as exc:  # the whole request failed: each change fails alike
            return [_Outcome(c, error=exc) for c in task]
        out = []
        for c, r in zip(task, results, strict=True):
            if isinstance(r, Conflict):
                out.append(self._one_guarded(self._adopt_after_conflict, c))
            elif isinstance(r, Exception):
                out.append(_Outcome(c, error=r))
            else:
                members: frozenset[str] | None = frozenset() if c.kind == "group" else None
                out.append(_Outcome(c, link=self._link(c, r.external_id, origin="created",
                                                       members=members),
                                    target_id=r.external_id))
        return out

    def _one_guarded(self, fn: Callable[[Change], _Outcome], c: Change) -> _Outcome:
        try:
            return fn(c)
        except Exception as exc:
            return _Outcome(c, error=exc)

    def _stage_links(self, changes: list[Change]) -> dict[Kind, dict[str, Link]]:
        """Only the links this stage touches, and member groups (``preserve``). Member users
        are resolved per change (`_resolve`): loading every member's link at once held a
        million links during an initial sync of 10,000 groups (~700 MB, issue 17)."""
        ids: dict[Kind, set[str]] = {"user": set(), "group": set()}
        for c in changes:
            if c.source_id:
                ids[c.kind].add(c.source_id)
            for m in (*c.add, *c.remove):
                if (g := member_group_id(m)) is not None:
                    ids["group"].add(g)
        return {k: self.store.links(self.flow.name, k, v) if v else {} for k, v in ids.items()}

    def _account(self, out: _Outcome, result: ApplyResult) -> None:
        c = out.change
        if out.error is None:
            result.applied += 1
            log.info("applied %s %s %s", c.op, c.kind, c.name,
                     extra={"change_id": c.id, "ref": out.target_id or c.target_id})
            return
        cls = type(out.error).__name__
        result.failures.append(Failure(c, cls, redact(str(out.error)),
                                       isinstance(out.error, Retriable),
                                       getattr(out.error, "retry_after", None)))
        log.warning("failed %s %s %s: %s: %s", c.op, c.kind, c.name, cls, out.error,
                    extra={"change_id": c.id})
        if isinstance(out.error, Fatal) and result.fatal is None:
            result.fatal = str(out.error)

    def _flush(self, outcomes: list[_Outcome]) -> None:
        saves = [o.link for o in outcomes if o.link is not None]
        self.store.save_links(saves)
        for kind in ("user", "group"):
            drops = [o.change.source_id for o in outcomes if o.drop and o.change.kind == kind]
            self.store.drop_links(self.flow.name, kind, drops)
            self.store.drop_references(self.flow.name, kind, drops)  # they name nothing now
        self.store.log_changes([_journal(self.flow.name, self.run_id, o) for o in outcomes])

    # -- one change ------------------------------------------------------------------------
    def _one(self, c: Change) -> _Outcome:
        try:
            prefix = "_source_" if c.side == "source" else "_"
            return getattr(self, f"{prefix}{c.op}")(c)
        except Exception as exc:  # Fatal included: _account decides; one object never sinks
            return _Outcome(c, error=exc)


    def _link(self, c: Change, target_id: str, *, origin: str, status: str = "active",
              members: frozenset[str] | None = None, base: Mapping[str, Value] | None = None
              ) -> Link:
        b = StoredAttrs.of(c.base if base is None else base)
        status_at = datetime.now(UTC) if status != "active" else None
        return Link(self.flow.name, c.kind, c.source_id, target_id, b, digest(b),
                    members, status, origin, status_at)

    def _create(self, c: Change) -> _Outcome:
        members: frozenset[str] | None = frozenset() if c.kind == "group" else None
        try:
            entry = self.target.create(c.kind, self.names.out(c.kind, c.attrs))
        except Conflict:
            return self._adopt_after_conflict(c)
        link = self._link(c, entry.external_id, origin="created", members=members)
        return _Outcome(c, link=link, target_id=entry.external_id)

    def _adopt_after_conflict(self, c: Change) -> _Outcome:
        """A 409 means the object exists (a crash before the link was written, or someone
        created it by hand): adopt it when exactly one matches, otherwise refuse."""
        kf = self.flow.kind(c.kind)
        # The server's uniqueness key is what the 409 was about, even when the flow does not
        # match on it; try the flow's keys first.
        identity = "displayName"
        if c.kind == "user":
            identity = next((k for k in ("userName", "userPrincipalName", "uid")
                             if k in c.attrs), "userName")
        keys = (*(kf.match if kf else ()), identity)
        for key in dict.fromkeys(keys):
            value = c.attrs.get(key)
            if match_value(value) is None:
                continue
            found = self.target.find(c.kind, key, str(value))
            if len(found) == 1:
                entry = found[0]
                self._not_owned(c, entry.external_id, key)
                changed = diff(self.names.out(c.kind, c.attrs), entry.attrs)
                if changed:
                    self.target.update(c.kind, entry.external_id, changed)
                members: frozenset[str] | None = frozenset() if c.kind == "group" else None
                link = self._link(c, entry.external_id, origin="adopted", members=members)
                return _Outcome(c, link=link, target_id=entry.external_id)
        raise Rejected(f"{c.kind} {c.name!r} already exists on the target (409) and no single "
                       f"object matches the flow's match keys; not creating a duplicate")

    def _not_owned(self, c: Change, target_id: str, key: str) -> None:
        """Ownership is exclusive: the object a 409 pointed at must not be linked to another
        source entry (a second entry with the same uid, or one differing only in case)."""
        owners = self.store.links(self.flow.name, c.kind, {target_id}, by_target=True)
        other = next((lk for lk in owners.values() if lk.source_id != c.source_id), None)
        if other is not None:
            raise Collision(
                f"collision: the target answered 409 and its {key}={c.attrs.get(key)!r} is "
                f"object {target_id}, linked to source entry {label(other.source_id, other.base)}"
                f"; {label(c.source_id, c.attrs, c.name)} is held, nothing written for it")

    def _adopt(self, c: Change) -> _Outcome:
        assert c.target_id
        changed = self.names.out(c.kind, c.attrs)
        if changed:
            self.target.update(c.kind, c.target_id, changed)
        members: frozenset[str] | None = frozenset() if c.kind == "group" else None
        return _Outcome(c, link=self._link(c, c.target_id, origin="adopted", members=members),
                        target_id=c.target_id)

    def _update(self, c: Change) -> _Outcome:
        current = self.links[c.kind].get(c.source_id)
        tid = c.target_id or (current.target_id if current else None)
        if tid is None:
            raise Rejected("no link for this object any more")
        changed = self.names.out(c.kind, c.attrs)
        if changed:
            self.target.update(c.kind, tid, changed)
        origin = current.origin if current else "created"
        members = current.members if current else None
        if c.source_attrs:
            assert self.source is not None
            try:
                self.source.update(c.kind, c.source_id, c.source_attrs)
            except Exception as exc:
                # The target part happened: record it, keep the source part pending, so the
                # next run still sees the target-side change and writes it back.
                old = current.base if current else {}
                partial = {**old, **{p: c.base.get(p) for p in c.attrs}}
                link = self._link(c, tid, origin=origin, members=members, base=partial)
                return _Outcome(c, link=link, target_id=tid, error=exc)
        return _Outcome(c, link=self._link(c, tid, origin=origin, members=members),
                        target_id=tid)

    def _resolve(self, source_ids: tuple[str, ...]) -> dict[str, str]:
        """Member source ids -> target ids through the links (member groups: `preserve`);
        member users' target ids are asked of the store for this change alone."""
        users, groups = self.links["user"], self.links.get("group", {})
        wanted = [s for s in source_ids if member_group_id(s) is None and s not in users]
        found = self.store.link_targets(self.flow.name, "user", wanted) if wanted else {}
        out = {}
        for s in source_ids:
            g = member_group_id(s)
            lk = (users.get(s) if g is None else groups.get(g))
            t = lk.target_id if lk is not None else found.get(s) if g is None else None
            if t is not None:
                out[s] = t
        return out

    def _set_members(self, c: Change) -> _Outcome:
        current = self.links["group"].get(c.source_id)
        if current is None:
            raise Rejected("group has no link (its create failed?): membership deferred")
        add, remove = self._resolve(c.add), self._resolve(c.remove)
        lost = set(c.remove) - set(remove)
        if add or remove:
            try:
                send_members(self.target, current.target_id, add, remove)
            except Exception as exc:
                # A connector may say which values it applied before failing (SCIM:
                # ``members_done``): the base records them, or a member removed on the target
                # and re-added in the source would never be sent again.
                done = getattr(exc, "members_done", None)
                added = {s for s, t in add.items() if done and t in done[0]}
                removed = {s for s, t in remove.items() if done and t in done[1]}
                self.unremoved.update(set(remove) - removed)  # links must outlive a delete
                if not added and not removed:
                    raise
                members = ((current.members or frozenset()) - removed) | added
                return _Outcome(c, link=replace(current, members=frozenset(members)),
                                target_id=current.target_id, error=exc)
        elif not c.source_add and not c.source_remove and c.members is None:
            # Nothing could be sent: never journaled as applied. The base keeps the members
            # it had, so the next run plans the same change again.
            raise Rejected(f"no member of this change resolves to a target object (users "
                           f"not provisioned: {', '.join(sorted({*c.add, *c.remove})[:5])}); "
                           f"nothing sent")
        # Members whose user has no link yet are left out of the base: retried next run. A
        # removal that could not be resolved stays in the base and is reported.
        members = ((current.members or frozenset()) - (set(c.remove) - lost)) | set(add)
        link = replace(current, members=frozenset(members), status="active", status_at=None)
        if lost:
            return _Outcome(c, link=link, target_id=current.target_id, error=Rejected(
                f"{len(lost)} member(s) to remove no longer resolve to a target object "
                f"({', '.join(sorted(lost)[:5])}): not removed; kept in the group's record"))
        if c.source_add or c.source_remove:
            assert self.source is not None
            try:
                self.source.set_members(c.source_id, list(c.source_add), list(c.source_remove))
            except Exception as exc:
                return _Outcome(c, link=link, target_id=current.target_id, error=exc)
            members = (members - set(c.source_remove)) | set(c.source_add)
            link = replace(link, members=frozenset(members))
        if c.members is not None:  # two-way: what both sides now hold (users not yet
            # provisioned on the target excepted: their add is planned again)
            link = replace(link, members=frozenset(c.members) - (set(c.add) - set(add)))
        return _Outcome(c, link=link, target_id=current.target_id)

    def _deprovision(self, c: Change) -> _Outcome:
        assert c.target_id
        current = self.links[c.kind].get(c.source_id)
        if c.kind == "group":
            remove = self._resolve(c.remove)
            if remove:
                send_members(self.target, c.target_id, {}, remove)
            origin = current.origin if current else "created"
            link = self._link(c, c.target_id, origin=origin, status="disabled",
                              members=frozenset())
            return _Outcome(c, link=link, target_id=c.target_id)
        self.target.deactivate(c.kind, c.target_id)
        origin = current.origin if current else "created"
        return _Outcome(c, link=self._link(c, c.target_id, origin=origin, status="disabled"),
                        target_id=c.target_id)

    def _delete(self, c: Change) -> _Outcome:
        assert c.target_id
        self.target.delete(c.kind, c.target_id)
        if c.kind == "user" and c.source_id in self.unremoved:
            # Its removal from a group failed this run: keep the link (disabled) so the next
            # run can still name the member it has to remove, instead of forgetting it.
            current = self.links[c.kind].get(c.source_id)
            origin = current.origin if current else "created"
            return _Outcome(c, link=self._link(c, c.target_id, origin=origin,
                                               status="disabled",
                                               base=current.base if current else None),
                            target_id=c.target_id)
        return _Outcome(c, drop=True, target_id=c.target_id)


def _bulk_create(c: Change) -> bool:
    """A target create: sent through the target's bulk endpoint when it has one."""
    return c.op == "create" and c.side == "target"


def _journal(flow: str, run_id: str, o: _Outcome) -> dict[str, Any]:
    c = o.change
    detail: dict[str, Any] = c.to_dict()
    detail.pop("base", None)
    for key in ("attrs", "before", "source_attrs", "source_before"):
        if key in detail:  # a mapped password is sent, never kept
            detail[key] = mask_attributes(detail[key])
    return {
        "run_id": run_id, "flow": flow, "kind": c.kind, "op": c.op,
        "source_id": c.source_id, "target_id": o.target_id or c.target_id, "name": c.name,
        "detail": json.dumps(detail, ensure_ascii=False, default=str),
        "result": "applied" if o.error is None else "failed",
        "error": None if o.error is None else redact(f"{type(o.error).__name__}: {o.error}"),
    }


def print_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
