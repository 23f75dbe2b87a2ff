"""Writes of the SCIM connector: creates (one by one or through /Bulk), updates, members,
deactivation and deletes.

Why apart from the reads: each write has its own rules against a server that may have
applied a request whose answer was lost: creates go out as plain JSON validated against the
server's schema (`session.ScimSession._payload`), /Bulk bodies are split to the server's
limits (`bulk.py`), member changes are adaptive PATCHes never blindly resent (`members.py`),
other PATCH/PUT/DELETE go through scim2-client, and a server whose DELETE only deactivates
is found out once (``delete_is_soft``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from syncd.errors import ConnectorError, Fatal, Rejected, Retriable
from syncd.model import Attrs, Entry, Kind, Value
from syncd_connectors.scim import bulk, paths
from syncd_connectors.scim.members import MemberChange
from syncd_connectors.scim.session import ScimSession
from syncd_connectors.scim.status import checked_json, scim_errors


class ScimWrites(ScimSession):
    """The contract's writes (see the module docstring)."""

    def create(self, kind: Kind, attrs: Attrs) -> Entry:
        payload = self._payload(kind, self._supported(kind, attrs))
        resp = self._http_or_fatal.request(
            "POST", self._endpoints[kind], content=bulk.encode(payload), headers=bulk.JSON_HEADERS
        )
        return self._entry(kind, checked_json(resp, self._what(kind, attrs), self.name, (200, 201)))

    def create_many(self, kind: Kind, items: Sequence[Attrs]) -> list[Entry | ConnectorError]:
        """Create through /Bulk: one result per item, in order (errors in their slots).

        Requests respect the server's maxOperations and maxPayloadSize (measured on the
        encoded body) and go out `concurrency` at a time. A 429/503 for a whole request is
        retried per Retry-After, then every slot gets `Retriable`; a request whose response
        was lost is *not* resent (it may have been applied: the next run adopts). Without
        bulk support this is a loop of `create`. `Fatal` (authentication) is raised.
        """
        if not self._caps.bulk:
            out: list[Entry | ConnectorError] = []
            for attrs in items:
                try:
                    out.append(self.create(kind, attrs))
                except Fatal:
                    raise
                except ConnectorError as exc:
                    out.append(exc)
            return out
        return bulk.BulkCreate(
            http=self._http_or_fatal, stats=self._stats, connector=self.name, kind=kind,
            endpoint=self._endpoints[kind],
            payload=lambda a: self._payload(kind, self._supported(kind, a)),
            create=lambda a: self.create(kind, a), entry=lambda r: self._entry(kind, r),
            max_operations=self._caps.bulk_max_operations,
            max_payload=self._caps.bulk_max_payload, concurrency=self.config.concurrency,
        ).run(items)  # fmt: skip

    def update(self, kind: Kind, external_id: str, changes: Mapping[str, Value]) -> None:
        kept = self._supported(kind, changes)
        if not kept:
            return
        if not self._caps.patch:
            self._put(kind, external_id, kept)
            return
        decl = self._declared[kind]
        current = None
        if self._path_call(kind, lambda: paths.needs_current(decl, kept)):
            # parts of a typed item (addresses.work.locality): the item as it is, changed
            current = self._get(f"{self._endpoints[kind]}/{external_id}",
                                f"update {kind} {external_id}")
        ops = self._path_call(kind, lambda: paths.patch_operations(decl, kept, current))
        self._patch(kind, external_id, ops, f"update {kind} {external_id}")

    def set_members(self, external_id: str, add: Sequence[str], remove: Sequence[str]) -> None:
        """All of it in one call: PATCHes whose size adapts to the server's answers, never a
        blind resend of one that may have been applied (`syncd_connectors.scim.members`). An error
        raised after part of it was applied carries ``members_done = (added, removed)``."""
        if not add and not remove:
            return
        MemberChange(
            http=self._http_or_fatal, endpoint=self._endpoints["group"], group=external_id,
            add=list(add), remove=list(remove), initial=self.config.members_per_patch,
            timeout=self.config.timeout, limits=self._limits, connector=self.name,
            sleep=lambda s: self.sleep(s), clock=lambda: self.clock(),
        ).run()  # fmt: skip

    def set_member_groups(self, external_id: str, add: Sequence[str],
                          remove: Sequence[str]) -> None:
        """Groups as members (``nested = "preserve"``): as `set_members`, each added value
        typed ``"type": "Group"`` (RFC 7643 §4.2). Only where the server declares it
        (`discovery.groups_as_members`); the engine refuses the flow elsewhere."""
        if not add and not remove:
            return
        MemberChange(
            http=self._http_or_fatal, endpoint=self._endpoints["group"], group=external_id,
            add=list(add), remove=list(remove), initial=self.config.members_per_patch,
            timeout=self.config.timeout, limits=self._limits, connector=self.name,
            sleep=lambda s: self.sleep(s), clock=lambda: self.clock(), member_type="Group",
        ).run()  # fmt: skip

    def deactivate(self, kind: Kind, external_id: str) -> None:
        if kind != "user":
            raise Rejected(f"cannot deactivate a SCIM {kind}", connector=self.name)
        self.update(kind, external_id, {"active": False})

    def delete(self, kind: Kind, external_id: str) -> None:
        """DELETE; 404 means already gone, which is what we wanted."""
        try:
            with scim_errors(f"delete {kind} {external_id}", self.name):
                self._client.delete(self._model(kind), external_id)
        except Rejected as exc:
            if getattr(exc, "status", None) != 404:
                raise
            return
        if kind == "user" and not self._soft_checked:
            self._probe_soft_delete(external_id)

    # --- internals -----------------------------------------------------------------------

    def _patch(self, kind: Kind, external_id: str, ops: list[dict[str, Any]], what: str) -> None:
        from scim2_models import Context, PatchOp  # (`client`: only writes need scim2-models)

        model = self._model(kind)
        with scim_errors(what, self.name):
            patch = PatchOp[model].model_validate(  # type: ignore[valid-type]
                {"schemas": [paths.URN_PATCH], "Operations": ops},
                scim_ctx=Context.RESOURCE_PATCH_REQUEST,
            )
            self._client.modify(model, external_id, patch)

    def _put(self, kind: Kind, external_id: str, changes: Mapping[str, Value]) -> None:
        """GET + PUT for servers without PATCH (the If-Match is scim2-client's business)."""
        from scim2_models import Context

        model = self._model(kind)
        with scim_errors(f"update {kind} {external_id}", self.name):
            current = self._client.query(model, external_id, check_response_payload=False)
            if not isinstance(current, dict):
                raise Rejected(f"update {kind} {external_id}: GET answered no JSON object",
                               connector=self.name)
            decl = self._declared[kind]
            body = self._path_call(kind, lambda: paths.apply_changes(decl, current, changes))
            resource = model.model_validate(body, scim_ctx=Context.RESOURCE_REPLACEMENT_REQUEST)
            resource.id = external_id
            self._client.replace(resource)

    def _probe_soft_delete(self, external_id: str) -> None:
        """One GET after the first user delete: still there means DELETE only deactivates."""
        try:
            r = self._http_or_fatal.request("GET", f"{self._endpoints['user']}/{external_id}")
        except Retriable:  # the delete itself succeeded: probe again after the next one
            return
        with self._lock:
            self._soft_checked = True
            if r.status_code == 200 and not self._caps.delete_is_soft:
                self._caps = dataclasses.replace(self._caps, delete_is_soft=True)
