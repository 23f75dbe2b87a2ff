"""Searches and paged reads of the LDAP connector, through either decoder.

A mixin of `ldap.base.LdapBase` (which owns connections, `_msg` and the config): kept apart so
each file stays readable. The lean decoder's paged read is pipelined (`_paged_lean`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence

import ldap3

from syncd.errors import Fatal, Retriable
from syncd_connectors.ldap.config import LdapConfig
from syncd_connectors.ldap.wire.ber import Malformed, sequence
from syncd_connectors.ldap.wire.decode import Plan, Row, row_from_event
from syncd_connectors.ldap.wire.events import (
    Event,
    Failed,
    Interrupted,
    SearchDone,
    SearchEntry,
    SearchRef,
)
from syncd_connectors.ldap.wire.lean import lean_search, parse_reply, receive_reply, send_search
from syncd_connectors.ldap.wire.reply import parse_message
from syncd_connectors.ldap.wire.request import PAGED_RESULTS, RequestControl, paged_control
from syncd_connectors.ldap.wire.stock import stock_search

log = logging.getLogger("syncd.connectors.ldap")

# Result codes (RFC 4511) that decide what a failed search means.
_TIME_LIMIT, _SIZE_LIMIT, _REFERRAL, _ADMIN_LIMIT = 3, 4, 10, 11
_NO_SUCH_OBJECT, _BUSY, _UNAVAILABLE = 32, 51, 52
TRANSIENT = {_TIME_LIMIT, _BUSY, _UNAVAILABLE}
CUT_SHORT = {_SIZE_LIMIT, _ADMIN_LIMIT, _REFERRAL}


class PagedSearch:
    """Searching for `LdapBase`: one search, paged reads, errors mapped to ours."""

    name: str
    config: LdapConfig

    def _connection(self) -> ldap3.Connection:
        raise NotImplementedError

    def _connect(self) -> ldap3.Connection:
        raise NotImplementedError

    def _reset(self) -> None:
        raise NotImplementedError

    def _drop(self, conn: ldap3.Connection) -> None:
        raise NotImplementedError

    def _msg(self, what: str) -> str:
        raise NotImplementedError

    def _search(
        self,
        base: str,
        filter_: str,
        scope: str,
        attributes: Sequence[str],
        controls: Sequence[RequestControl] = (),
        plan: Plan | None = None,
    ) -> Iterator[Event | Row]:
        """One search through the configured decoder, with errors mapped to ours (with a
        `plan`, the lean decoder yields plain entries as rows). A lean search abandoned
        before its end leaves replies on the socket: drop the connection."""
        conn = self._connection()
        lean = self.config.decoder == "lean"
        run = lean_search if lean else stock_search
        finished = False
        try:
            with self._errors(base):
                for event in run(conn, base, filter_, scope, attributes, controls, plan):
                    if type(event) is SearchDone:
                        finished = True
                    yield event
        finally:
            if not finished and (lean or conn.closed):
                self._drop(conn)

    @contextlib.contextmanager
    def _errors(self, base: str) -> Iterator[None]:
        """The decoders' exceptions as ours: network trouble is transient, the rest not."""
        try:
            yield
        except Interrupted as exc:
            raise Retriable(
                self._msg(f"read of {base} interrupted: {exc}"), connector=self.name
            ) from None
        except Malformed as exc:
            raise Fatal(
                self._msg(
                    f"read of {base}: undecodable reply ({exc}); "
                    'set decoder = "stock" and report this server'
                ),
                connector=self.name,
            ) from None
        except Failed as exc:
            raise Fatal(self._msg(f"read of {base} failed: {exc}"), connector=self.name) from None

    def _check(self, done: SearchDone, base: str, count: int) -> bool:
        """Raise for a failed search; return True when the server cut the listing short."""
        code = done.code
        if code == 0:
            return False
        if code == _NO_SUCH_OBJECT:
            raise Fatal(
                self._msg(f"search base {base} does not exist (noSuchObject)"),
                connector=self.name,
            )
        if code in TRANSIENT:
            raise Retriable(self._msg(f"read of {base}: result {code} {done.message}"))
        if code in CUT_SHORT:
            log.warning(
                "%s",
                self._msg(
                    f"read of {base} cut short by the server (result {code} {done.message}) "
                    f"after a page of {count}: marking it incomplete"
                ),
            )
            return True
        raise Fatal(
            self._msg(f"read of {base} failed: result {code} {done.message}"),
            connector=self.name,
        )

    def _paged(
        self, base: str, filter_: str, scope: str, attributes: list[str], plan: Plan
    ) -> Iterator[tuple[list[Row], bool, bool]]:
        """Yield ``(rows, is_last_page, cut_short)`` per page of a paged search."""
        if self.config.decoder == "lean":
            yield from self._paged_lean(base, filter_, scope, attributes, plan)
            return
        cookie: bytes | None = None
        while True:
            rows: list[Row] = []
            referrals = False
            done: SearchDone | None = None
            control = [paged_control(self.config.page_size, cookie)]
            for event in self._search(base, filter_, scope, attributes, control, plan):
                if isinstance(event, SearchEntry):
                    rows.append(row_from_event(event, plan))
                elif isinstance(event, SearchRef):
                    referrals = True
                elif isinstance(event, SearchDone):
                    done = event
            assert done is not None
            if self._check(done, base, len(rows)):
                yield rows, True, True
                return
            cookie = self._cookie(done)
            yield rows, not cookie, referrals
            if not cookie:
                return

    def _paged_lean(
        self, base: str, filter_: str, scope: str, attributes: list[str], plan: Plan
    ) -> Iterator[tuple[list[Row], bool, bool]]:
        """The lean decoder's paged search, pipelined: each page's reply is read whole, the
        next page is requested with its cookie, and only then is this page decoded — the
        server prepares page n+1 while we decode page n (two cores, not one after the other).
        The read has a connection of its own: between pages its consumer may search too
        (member DN lookups), and this connection has the next page's reply in flight."""
        conn = self._connect()
        size = self.config.page_size
        try:
            with self._errors(base):
                mid = send_search(conn, base, filter_, scope, attributes,
                                  [paged_control(size, None)])  # fmt: skip
                while True:
                    buf, ds, de = receive_reply(conn)
                    done = parse_message(buf, ds, de, mid)
                    assert isinstance(done, SearchDone)
                    cut = self._check(done, base, 0)
                    cookie = None if cut else self._cookie(done)
                    nxt = None
                    if cookie:  # the server starts on the next page while we decode this one
                        control = [paged_control(size, cookie)]
                        nxt = send_search(conn, base, filter_, scope, attributes, control)
                    rows: list[Row] = []
                    referrals = False
                    for event in parse_reply(buf, mid, plan):
                        if type(event) is tuple:  # plain entries: by far the most events
                            rows.append(event)
                        elif isinstance(event, SearchEntry):
                            rows.append(row_from_event(event, plan))
                        elif isinstance(event, SearchRef):
                            referrals = True
                    yield rows, nxt is None, cut or referrals
                    if nxt is None:
                        return
                    mid = nxt
        except Retriable:
            self._reset()  # the server went away: this thread's connection is stale too
            raise
        finally:
            self._drop(conn)

    def _cookie(self, done: SearchDone) -> bytes | None:
        value = done.controls.get(PAGED_RESULTS)
        if value is None:
            return None
        parts = sequence(value)
        if len(parts) != 2 or parts[1][0] != 0x04:
            raise Fatal(self._msg("invalid paged results control"), connector=self.name)
        return parts[1][1] or None
