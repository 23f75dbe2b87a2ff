"""The lean search path: requests written to ldap3's socket, replies parsed by `reply`.

ldap3 keeps the connection (connect, StartTLS, bind, timeouts); a search here encodes its
request with ldap3's encoder, writes it to ldap3's socket (plain or TLS) and parses the replies
with `reply.parse_message` / `reply.scan_rows`. Two shapes:

- `lean_search`: one search, decoded as the bytes arrive (syncrepl, DirSync, lookups);
- `send_search` + `receive_reply` + `parse_reply`: one page at a time, whole, so a paged read
  can send the next page's request before decoding this one (`paging.PagedSearch._paged`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import ldap3
from ldap3.core.exceptions import LDAPException

from syncd_connectors.ldap.wire.ber import Malformed, header
from syncd_connectors.ldap.wire.decode import Plan, Row
from syncd_connectors.ldap.wire.events import Event, Failed, Interrupted, SearchDone
from syncd_connectors.ldap.wire.reply import parse_message, scan_rows, split_messages
from syncd_connectors.ldap.wire.request import RequestControl, ldap_message, search_request

_RECV = 1 << 18  # socket read size of the lean path


def send_search(
    conn: ldap3.Connection,
    base: str,
    filter_: str,
    scope: str,
    attributes: Sequence[str],
    controls: Sequence[RequestControl] = (),
) -> int:
    """Write a search request on ldap3's socket; its message id (see `receive_reply`)."""
    try:
        message_id = conn.server.next_message_id()
        payload = ldap_message(
            message_id,
            search_request(
                base, filter_, scope, tuple(attributes), conn.auto_escape, conn.auto_encode
            ),
            controls,
        )
    except LDAPException as exc:
        raise Failed(str(exc)) from None
    send(conn, payload)
    return message_id


def send(conn: ldap3.Connection, payload: bytes) -> None:
    """Write one encoded LDAPMessage to ldap3's socket (its TLS socket for ldaps/StartTLS);
    a closed connection or a socket error is `Interrupted`."""
    sock = conn.socket
    if sock is None or conn.closed:
        raise Interrupted("the connection is closed")
    try:
        sock.sendall(payload)
    except OSError as exc:
        raise Interrupted(f"connection error: {exc}") from None


def receive_reply(conn: ldap3.Connection) -> tuple[bytes, int, int]:
    """The whole reply to the search in flight, up to its SearchResultDone, undecoded, and
    where that last message's content is (for `parse_message`).

    Why: a paged read pipelines — it takes the next page's cookie from the end of this reply,
    sends that request, and only then decodes this page (`parse_reply`), so the server
    produces the next page while we decode. Walking message boundaries is all done here."""
    buf, pos = b"", 0
    for chunk in _chunks(conn):
        buf = buf + chunk if buf else chunk
        for s, e, nxt in split_messages(buf, pos):
            pos = nxt
            if _is_done(buf, s, e):
                if pos != len(buf):
                    raise Malformed("unexpected data after the end of the search")
                return buf, s, e
    raise Interrupted("the server closed the connection")  # _chunks never ends otherwise


def receive_message(conn: ldap3.Connection) -> tuple[bytes, int, int]:
    """One whole LDAPMessage (the answer to a single-reply operation, e.g. the lean add's
    AddResponse) and where its content is (for `reply.parse_response`). Nothing else may
    follow it: only one request was in flight."""
    buf = b""
    for chunk in _chunks(conn):
        buf = buf + chunk if buf else chunk
        for s, e, nxt in split_messages(buf, 0):
            if nxt != len(buf):
                raise Malformed("unexpected data after the reply")
            return buf, s, e
    raise Interrupted("the server closed the connection")  # _chunks never ends otherwise


def _chunks(conn: ldap3.Connection) -> Iterator[bytes]:
    """What the server sends on ldap3's socket, as it arrives; network trouble (timeout,
    reset, closed) raises `Interrupted`."""
    sock = conn.socket
    if sock is None or conn.closed:
        raise Interrupted("the connection is closed")
    try:
        while True:
            chunk = sock.recv(_RECV)
            if not chunk:
                raise Interrupted("the server closed the connection")
            yield chunk
    except TimeoutError as exc:
        raise Interrupted(f"timed out waiting for the server: {exc}") from None
    except OSError as exc:
        raise Interrupted(f"connection error: {exc}") from None


def _is_done(buf: bytes, start: int, end: int) -> bool:
    """Is the message in ``buf[start:end]`` a SearchResultDone (its protocolOp tag)?"""
    if buf[start] == 0x02 and 0 < buf[start + 1] <= 4:
        op = start + 2 + buf[start + 1]
    else:
        _t, _s, op = header(buf, start, end, 0x02)
    return op < end and buf[op] == 0x65


def parse_reply(buf: bytes, message_id: int, plan: Plan | None) -> Iterator[Event | Row]:
    """The events (rows, with a `plan`) of one complete reply from `receive_reply`."""
    pos = 0
    while True:
        if plan is not None:
            rows: list[Row] = []
            pos = scan_rows(buf, pos, message_id, plan, rows)
            yield from rows
        found = next(split_messages(buf, pos), None)
        if found is None:
            raise Malformed("a search reply cut before its end")
        s, e, pos = found
        event = parse_message(buf, s, e, message_id, plan)
        yield event
        if type(event) is SearchDone:
            return


def lean_search(
    conn: ldap3.Connection,
    base: str,
    filter_: str,
    scope: str,
    attributes: Sequence[str],
    controls: Sequence[RequestControl] = (),
    plan: Plan | None = None,
) -> Iterator[Event | Row]:
    """Send a search on ldap3's socket and parse the replies ourselves (see module doc);
    with a `plan`, plain entries come back as rows (`decode.row_from_ber`).

    The caller must read to the `SearchDone`; abandoning the iterator midway leaves replies
    on the socket, so the caller must then drop the connection."""
    message_id = send_search(conn, base, filter_, scope, attributes, controls)
    buf = b""
    for chunk in _chunks(conn):
        buf = buf + chunk if buf else chunk
        pos = 0
        while True:
            if plan is not None:  # a run of plain entries, the bulk of a full read
                rows: list[Row] = []
                pos = scan_rows(buf, pos, message_id, plan, rows)
                yield from rows
            found = next(split_messages(buf, pos), None)
            if found is None:
                break  # incomplete: wait for more
            s, e, pos = found
            event = parse_message(buf, s, e, message_id, plan)
            yield event
            if type(event) is SearchDone:
                if pos != len(buf):
                    raise Malformed("unexpected data after the end of the search")
                return
        buf = buf[pos:]
