"""Watermark reads, for any server: ``(modifyTimestamp>=T)``.

T is the start of the previous read minus ``watermark_overlap`` (the server's ``currentTime``
when the root DSE offers it, else our clock). Changed entries only; **deletes are
invisible**: the periodic full read finds them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from syncd.model import Batch, Kind
from syncd_connectors.ldap.config import SearchSpec
from syncd_connectors.ldap.feeds.cursor import BadCursor, make_cursor
from syncd_connectors.ldap.feeds.listing import Listings
from syncd_connectors.ldap.wire.decode import Plan
from syncd_connectors.ldap.wire.events import SearchEntry

_GENERALIZED = re.compile(r"^\d{14}Z$")


class WatermarkReads(Listings):
    """Watermark reads (see the module docstring)."""

    def _watermark_now(self) -> bytes:
        """Start of this read as generalizedTime, minus the overlap: the server's clock when
        it tells (AD, 389-ds: currentTime in the root DSE), else ours."""
        now = datetime.now(UTC)
        if "currenttime" in self._root_dse():
            for event in self._search("", "(objectClass=*)", "base", ["currentTime"]):
                if isinstance(event, SearchEntry):
                    for value in event.attrs.get("currenttime", []):
                        text = value.decode("ascii", "replace")[:14]
                        if text.isdigit() and len(text) == 14:
                            now = datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        then = now - timedelta(seconds=self.config.watermark_overlap)
        return then.strftime("%Y%m%d%H%M%SZ").encode("ascii")

    def _watermark(
        self,
        kind: Kind,
        spec: SearchSpec,
        request: list[str],
        plan: Plan,
        fp: str,
        since: bytes,
    ) -> Iterator[Batch]:
        text = since.decode("ascii", "replace")
        if not _GENERALIZED.match(text):
            raise BadCursor(f"malformed watermark {text!r}")
        cursor = make_cursor("watermark", fp, self._watermark_now())
        filter_ = f"(&{spec.filter}(modifyTimestamp>={text}))"
        yield from self._listing(kind, spec, filter_, request, plan, False, cursor)
