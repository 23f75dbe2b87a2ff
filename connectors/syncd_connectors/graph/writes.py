"""Writes of the Graph connector: users and security groups, and their membership.

Why apart from the reads: each write is one request (or, for membership, a few) whose
outcome is per object; payloads are built by `delta.py` (a PATCH sends exactly the changed
properties, None as JSON null). Membership has Graph's own limits: at most 20 references per
``members@odata.bind`` PATCH, and a chunk refused because one member is already there is
redone one reference at a time. A user's ``manager`` is a reference too, set with ``PUT
/users/{id}/manager/$ref`` and taken away with ``DELETE`` (404: there was none, success).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from syncd.errors import Rejected
from syncd.model import Attrs, Entry, Kind, Value
from syncd_connectors.graph import delta
from syncd_connectors.graph.client import GraphClient
from syncd_connectors.graph.errors import odata_error

#: Graph accepts at most 20 references per ``members@odata.bind`` PATCH.
BIND_CHUNK = 20


class GraphWrites(GraphClient):
    """`create`, `update`, `set_members`, `deactivate` and `delete` (module docstring)."""

    def create(self, kind: Kind, attrs: Attrs) -> Entry:
        label = str(attrs.get("userPrincipalName" if kind == "user" else "displayName") or "?")
        attrs = dict(attrs)
        manager = attrs.pop(delta.MANAGER, None) if kind == "user" else None
        try:
            payload = delta.create_payload(kind, attrs)
        except ValueError as exc:
            raise Rejected(f"create {kind} {label}: {exc}", connector=self.name) from None
        obj = self._call(self._send("POST", self._url(kind), payload), f"create {kind} {label}")
        if not isinstance(obj, dict) or not obj.get("id"):
            raise Rejected(f"create {kind} {label}: no id in Graph's answer", connector=self.name)
        made = delta.target_attrs(kind, obj)
        if manager:  # a create takes no manager: set right after (a failure fails the
            self._manager(str(obj["id"]), manager)  # create; the 409 path adopts it)
            made[delta.MANAGER] = str(manager)
        return Entry(kind, str(obj["id"]), raw=delta.raw_values(obj), attrs=made,
                     name=delta.label(obj) or label)

    def update(self, kind: Kind, external_id: str, changes: Mapping[str, Value]) -> None:
        """PATCH with exactly the changed properties (None -> JSON null)."""
        if not changes:
            return
        changes = dict(changes)
        has_manager = kind == "user" and delta.MANAGER in changes
        manager = changes.pop(delta.MANAGER, None) if has_manager else None
        what = f"update {kind} {external_id}"
        try:
            payload = delta.patch_payload(kind, changes)
        except ValueError as exc:
            raise Rejected(f"{what}: {exc}", connector=self.name) from None
        if payload:
            self._call(self._send("PATCH", self._url(kind, external_id), payload), what)
        if has_manager:
            self._manager(external_id, manager)

    def _manager(self, user_id: str, manager: Value) -> None:
        """Set (``PUT manager/$ref``) or take away (``DELETE``; 404: none) a user's manager."""
        if isinstance(manager, tuple):
            manager = manager[0] if manager else None
        url = f"{self._url('user', user_id)}/manager/$ref"
        if manager:
            ref = f"{self.config.endpoint}/users/{quote(str(manager), safe='')}"
            self._call(self._send("PUT", url, {"@odata.id": ref}),
                       f"set manager of user {user_id}")
            return
        try:
            self._call(self._send("DELETE", url), f"remove manager of user {user_id}")
        except Rejected as exc:
            if getattr(exc, "status", None) != 404:
                raise

    def set_members(self, external_id: str, add: Sequence[str], remove: Sequence[str]) -> None:
        self._call(self._members(external_id, list(add), list(remove)),
                   f"set members of group {external_id}")

    def deactivate(self, kind: Kind, external_id: str) -> None:
        """Users: ``accountEnabled = false``. Groups have no disabled state in Graph: the
        engine deprovisions a group by removing the members it manages, nothing to do here."""
        if kind == "user":
            self.update("user", external_id, {"accountEnabled": False})

    def delete(self, kind: Kind, external_id: str) -> None:
        """DELETE; a user goes to deletedItems (restorable for 30 days), a security group is
        gone. 404 counts as success: the object is not there, which is what we wanted."""
        what = f"delete {kind} {external_id}"
        try:
            self._call(self._send("DELETE", self._url(kind, external_id)), what)
        except Rejected as exc:
            if getattr(exc, "status", None) != 404:
                raise

    async def _members(self, gid: str, add: list[str], remove: list[str]) -> None:
        """Adds through ``members@odata.bind`` in chunks of 20; a chunk refused because one
        member is already there is redone one ``members/$ref`` at a time (an existing member
        is then success). Removes one ``DELETE members/{id}/$ref`` each; 404 = not a member."""
        group = self._url("group", gid)
        sem = asyncio.Semaphore(self.config.concurrency)

        def ref(uid: str) -> str:
            return f"{self.config.endpoint}/directoryObjects/{quote(uid, safe='')}"

        async def one(coro: Awaitable[Any], ok_status: int | None, ok_text: str) -> None:
            async with sem:
                try:
                    await coro
                except Exception as exc:
                    message = odata_error(exc)[1]
                    status = getattr(exc, "response_status_code", None)
                    if status == ok_status or (ok_text and ok_text in message.lower()):
                        return
                    raise

        for i in range(0, len(add), BIND_CHUNK):
            chunk = add[i:i + BIND_CHUNK]
            try:
                await self._send("PATCH", group, {"members@odata.bind": [ref(u) for u in chunk]})
            except Exception as exc:
                if "already exist" not in odata_error(exc)[1].lower():
                    raise
                await asyncio.gather(*(
                    one(self._send("POST", f"{group}/members/$ref", {"@odata.id": ref(u)}),
                        None, "already exist") for u in chunk))
        await asyncio.gather(*(
            one(self._send("DELETE", f"{group}/members/{quote(u, safe='')}/$ref"), 404, "")
            for u in remove))
