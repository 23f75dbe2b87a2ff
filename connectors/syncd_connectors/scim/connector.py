"""SCIM 2.0 connector (target, and source for two-way flows) over one keep-alive client.

Payloads are built from canonical attributes by `syncd_connectors.scim.paths` for what the
server's own /Schemas declares (any extension URN; values in the declared type, or the entry
is refused), and validated with the scim2-models classes scim2-client builds from them
(`client`: built on the first write that needs them, so a run that writes nothing never
imports scim2-models); a path the server does not declare is dropped and reported (`path_problems`,
``capabilities.declares``), never sent. Creates, listings and /Bulk go out
as plain JSON through `syncd_connectors.scim.http` (validating every *response* with pydantic cost
more than the request); member PATCHes too (`members`: adaptive chunks, no blind resend);
other PATCH/PUT/DELETE go through scim2-client.

Module map: this module (the contract's reads, and `ScimConnector` itself), `session` (the
client, discovery's findings, resources <-> entries, shared by reads and writes), `writes`
(the contract's writes), `http` (retries, Retry-After, dead target, body bound, counters),
`transport` (client, TLS, unsafe-transport warnings), `discovery` (capabilities, from the
raw documents), `client` (scim2-client and the server's scim2-models classes), `bulk`
(/Bulk bodies, splitting), `reads` (raw attributes, lastModified cursors), `listing`
(ListResponse shape, completeness of a paged walk), `confirm` (`confirm_gone`), `members`
(`set_members`), `status` (errors), `schemas` (what /Schemas declares: where a canonical
path lives), `declarations` (what /Schemas or `rfc7643` declare), `paths` (canonical
attributes <-> SCIM JSON), `values` (typed values).

Dialect differences measured between scim2-server 0.8.3 and django-scim2-server 1.1.0:

 - Schemas: django publishes only userName, name.givenName/familyName, emails (value and
   primary, no type), active, externalId; no enterprise extension in its ResourceTypes (a
   payload carrying it is refused with 400). Unlisted attributes are silently dropped, so we
   derive ``capabilities.unsupported_attributes`` (and ``declares``, for extension paths)
   from /Schemas and drop them ourselves. scim2-server serves whatever schemas it is given,
   custom extensions included, and checks values against their declared types.
 - Typed emails: see `paths.patch_operations`. Removing an attribute: django stores ``""``;
   we read empty strings as absent. scim2-server omits ``active`` unless set; django: true.
 - DELETE of a user only deactivates on django (GET still answers 200), so
   ``delete_is_soft`` is learnt by a GET after the first user delete.
 - django answers PATCH with 200 + resource, scim2-server with 204; no ETags, no Location
   header, no /Bulk on django; its filter maxResults is 200.
 - /Bulk (scim2-server): maxOperations 1000, maxPayloadSize 1 MiB, checked on the body
   (413 beyond); each operation's outcome carries bulkId, status and location, no resource.
 - ``filter=meta.lastModified ge ".."`` works on scim2-server, 400 invalidFilter on django.
 - Filters: both unescape ``\\"`` and ``\\\\``; django has no complex ``emails[type eq ..]``
   filter, so typed values are found with ``emails.value eq`` and checked on the results.
   Comparison values are JSON strings (RFC 7644 §3.4.2.2, `paths.escape`): scim2-server
   answers 400 invalidFilter for a raw TAB/CR/LF/NUL and decodes every JSON escape; django
   decodes only ``\\"`` and ``\\\\``, so there a value with a control character is not found
   (its create then meets 409 and is refused, never duplicated).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from syncd.connector import ConnectorConfig
from syncd.errors import Rejected
from syncd.model import Batch, Entry, Kind
from syncd_connectors.scim import confirm, paths, reads
from syncd_connectors.scim.config import ScimConfig
from syncd_connectors.scim.http import parse_retry_after
from syncd_connectors.scim.listing import Malformed, page_of
from syncd_connectors.scim.writes import ScimWrites

__all__ = ["ScimConnector", "parse_retry_after"]
log = logging.getLogger("syncd.connectors.scim")
#: Resources one `find` asks for: more than one is ambiguous anyway (the engine holds).
_FIND_COUNT = 50


class ScimConnector(ScimWrites):
    """A SCIM 2.0 service provider as a sync target and source."""

    config_model: ClassVar[type[ConnectorConfig]] = ScimConfig

    # --- contract: reads (lifecycle: session.py; writes: writes.py) -----------------------

    def read(
        self, kind: Kind, cursor: str | None = None, attributes: Sequence[str] | None = None
    ) -> Iterator[Batch]:
        """Pages of `page_size` (startIndex/count); incremental from a ``lastmodified:`` cursor
        when the server filters on meta.lastModified (`syncd_connectors.scim.reads`)."""
        incremental = self._supports_incremental(kind, cursor)
        since = reads.parse_cursor(cursor) if incremental else None
        if cursor is not None and since is None:
            log.info("%s: cursor %r is not usable for %ss: full read", self.name, cursor, kind)
        args: dict[str, Any] = {
            "connector": self.name, "kind": kind, "endpoint": self._endpoints[kind],
            "page_size": self._page_size, "entry": lambda r: self._entry(kind, r),
            "overlap": self.config.incremental_overlap,
        }  # fmt: skip
        try:
            yield from reads.listing(self._http_or_fatal, since=since, incremental=incremental,
                                     **args)  # fmt: skip
        except reads.FilterRefused:
            log.info("%s: server refused the lastModified filter: full read", self.name)
            with self._lock:
                self._incremental[kind] = False
            yield from reads.listing(self._http_or_fatal, since=None, incremental=False, **args)

    def _supports_incremental(self, kind: Kind, cursor: str | None = None) -> bool:
        """Probed once per kind, on the first read -- unless that read starts from a
        ``lastmodified:`` cursor: only a server that filtered on meta.lastModified gave one,
        and a server that stopped filtering answers 400 (`FilterRefused`: full read). The
        probe is a filtered listing, which scim2-server answers by walking every stored user
        (0.42 s of a 1.6 s no-change two-way cycle at 10k users)."""
        with self._lock:
            known = self._incremental.get(kind)
        if known is None and reads.parse_cursor(cursor) is not None:
            return True
        if known is None:
            known = reads.supports_incremental(
                self._http_or_fatal, self._endpoints[kind], self.name
            )
            with self._lock:
                self._incremental[kind] = known
        return known

    def find(self, kind: Kind, attribute: str, value: str) -> list[Entry]:
        decl = self._declared[kind]
        expr, recheck = self._path_call(kind, lambda: paths.filter_for(decl, attribute, value))
        what = f"find {kind} {attribute}={value[:100]!r}"
        endpoint = self._endpoints[kind]
        doc = self._get(endpoint, what, params={"filter": expr, "count": str(_FIND_COUNT)})
        try:
            page = page_of(doc, _FIND_COUNT)
        except Malformed as exc:  # not "no match": that once created every group twice
            raise Rejected(f"{what}: malformed listing from GET {endpoint}: {exc}",
                           connector=self.name) from None
        if page.total > len(page.resources):  # one returned of two is no "exactly one"
            raise Rejected(f"{what}: the server announced {page.total} matches and returned "
                           f"{len(page.resources)}: not a lookup to adopt or create on",
                           connector=self.name)
        found = [self._entry(kind, r) for r in page.resources]
        if recheck is not None:
            found = [e for e in found if e.attrs.get(recheck) == value]
        return found

    def confirm_gone(self, kind: Kind, external_ids: Sequence[str]) -> set[str]:
        """Of these ids, those a direct GET answers 404 for (rules in `confirm`)."""
        return confirm.confirm_gone(
            self._http_or_fatal, self._endpoints[kind], external_ids,
            concurrency=self.config.concurrency, connector=self.name,
        )  # fmt: skip
