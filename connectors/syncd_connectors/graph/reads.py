"""Reads of the Graph connector: delta rounds, lookups, and proof of absence.

Why apart from the writes: a read is a delta round (full without a usable cursor, else only
changes) whose shape Graph dictates: users stream page by page, groups are gathered for the
whole round (`delta.GroupRound`); the payload rules are `delta.py`'s, the deprovisioning
rule `gone.py`'s. ``passwordProfile`` is never selected nor kept (`delta.SECRET_PROPERTIES`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import quote, urlencode

from syncd.errors import ConnectorError, Rejected, Retriable
from syncd.model import Batch, Entry, Kind
from syncd_connectors.graph import delta, gone
from syncd_connectors.graph.client import GraphClient, log
from syncd_connectors.graph.errors import _Gone


class GraphReads(GraphClient):
    """`read`, `find` and `confirm_gone` (see the module docstring)."""

    def read(
        self, kind: Kind, cursor: str | None = None, attributes: Sequence[str] | None = None
    ) -> Iterator[Batch]:
        """One delta round: full without a usable cursor, else only changes.

        Users stream page by page. Groups are gathered for the whole round before they are
        yielded, because one group can arrive in several objects (each with a slice of its
        ``members@delta``). With ``attributes=None`` (the engine listing a *target*) every
        known property is selected and entries carry canonical `attrs` too.
        """
        select = delta.select_for(kind, attributes)
        key = delta.select_key(select)
        with_attrs = attributes is None
        link: str | None = None
        if cursor:
            parsed = delta.parse_cursor(cursor, self.config.endpoint)
            if isinstance(parsed, str):
                log.warning("%s: %s; reading all %ss", self.name, parsed, kind)
            elif parsed[0] != key:
                log.warning("%s: the %s attributes changed since the last delta round; "
                            "reading all %ss", self.name, kind, kind)
            else:
                link = parsed[1]
        body: dict[str, Any] | None = None
        if link is not None:
            try:
                body = self._get(link, f"delta {kind}s", page=True)
            except _Gone as exc:
                log.warning("%s: delta token for %ss no longer valid (%s); reading all %ss",
                            self.name, kind, exc, kind)
                link = None
        full = link is None
        if body is None:
            body = self._call(self._first_page(kind, select), f"delta {kind}s")
        rnd = delta.GroupRound(full) if kind == "group" else None
        while True:
            items = body.get("value") or []
            next_link = body.get("@odata.nextLink")
            delta_link = body.get("@odata.deltaLink")
            new_cursor = delta.make_cursor(str(delta_link), key) if delta_link else None
            if rnd is not None:
                rnd.add(items)
            else:
                entries: list[Entry] = []
                deleted: list[str] = []
                for item in items:
                    if "@removed" in item:
                        if not full and item.get("id"):
                            deleted.append(str(item["id"]))
                    elif item.get("id"):
                        entries.append(delta.user_entry(item, with_attrs))
                yield Batch("user", tuple(entries), cursor=None if next_link else new_cursor,
                            full=full, deleted=tuple(deleted))
            if not next_link:
                break
            body = self._get(str(next_link), f"delta {kind}s", page=True)
        if rnd is not None:
            groups = rnd.entries(with_attrs)
            gone: tuple[str, ...] = tuple(rnd.deleted) if not full else ()
            size = self.config.page_size
            chunks = [groups[i:i + size] for i in range(0, len(groups), size)] or [[]]
            for n, chunk in enumerate(chunks):
                last = n == len(chunks) - 1
                yield Batch("group", tuple(chunk), cursor=new_cursor if last else None,
                            full=full, deleted=gone if last else ())

    def find(self, kind: Kind, attribute: str, value: str) -> list[Entry]:
        """Objects whose `attribute` equals `value` (``$filter`` eq, quotes doubled)."""
        try:
            expr, advanced = delta.filter_for(kind, attribute, value)
        except ValueError as exc:
            raise Rejected(str(exc), connector=self.name) from None
        select = [s for s in delta.select_for(kind, None) if s not in ("members", delta.MANAGER)]
        params = {"$filter": expr, "$select": ",".join(select), "$top": "50"}
        if kind == "user":  # a relationship: expanded, not selected (delta.py)
            params["$expand"] = f"{delta.MANAGER}($select=id)"
        headers = {}
        if advanced:
            params["$count"] = "true"
            headers["ConsistencyLevel"] = "eventual"
        url = f"{self._url(kind)}?{urlencode(params, quote_via=quote, safe='$,()=')}"
        body = self._get(url, f"find {kind} {attribute}={value!r}", headers=headers)
        out = []
        for obj in body.get("value") or []:
            if kind == "user":
                out.append(delta.user_entry(obj, True))
            else:
                out.append(Entry("group", str(obj["id"]), raw=delta.raw_values(obj),
                                 attrs=delta.target_attrs("group", obj), name=delta.label(obj)))
        return out

    def confirm_gone(self, kind: Kind, external_ids: Sequence[str]) -> set[str]:
        """Of these ids, those a direct lookup proves gone (`gone.py`: only a 404
        ``Request_ResourceNotFound`` does). Never raises: what cannot be proven is left out,
        so the engine holds it instead of deprovisioning it."""
        ids = list(dict.fromkeys(str(i) for i in external_ids if i))
        if not ids:
            return set()
        try:
            return self._call(gone.absent(self._client, self._send_info, kind, ids,
                                          self.config.concurrency), f"confirm_gone {kind}s")
        except ConnectorError as exc:
            log.warning("%s: confirm_gone %ss: %s; nothing confirmed", self.name, kind, exc)
            return set()

    async def _first_page(self, kind: Kind, select: Sequence[str]) -> dict[str, Any]:
        """The first page of a full round, built by the SDK's delta request builder
        (``/users/delta()?$select=...``)."""
        from kiota_abstractions.base_request_configuration import RequestConfiguration

        with warnings.catch_warnings():  # the builders are imported on first use
            warnings.simplefilter("ignore", DeprecationWarning)
            root = self._client.users if kind == "user" else self._client.groups
            builder = root.delta
        params = builder.DeltaRequestBuilderGetQueryParameters(select=list(select))
        config = RequestConfiguration(query_parameters=params)
        config.headers.add("Prefer", f"odata.maxpagesize={self.config.page_size}")
        body = await self._send_info(builder.to_get_request_information(config))
        if not isinstance(body, dict):
            raise Retriable(f"delta {kind}s: empty or non-JSON answer", connector=self.name)
        return body
