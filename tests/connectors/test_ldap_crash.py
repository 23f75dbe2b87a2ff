"""A syncrepl cursor and slapd killed (SIGKILL, a power loss) against a real OpenLDAP.

syncprov then restarts with the contextCSN of its last checkpoint, older than its newest
entries (`syncd_connectors.ldap.feeds.csn`). The connector must never answer "nothing changed" for
changes made after its cursor: a cookie the entries have outrun is no cursor.
"""

from __future__ import annotations

import pytest

from syncd_connectors.ldap.feeds.csn import cookie_csn
from tests.connectors.test_ldap_incremental import changes, full_read, opened
from tests.peers.directory import PEOPLE, user_dn
from tests.peers.slapd import Slapd

pytestmark = pytest.mark.peers


def _restart_after_crash(slapd: Slapd) -> None:
    slapd.kill()
    slapd.start()


def _uids(batches: list) -> set[str]:  # type: ignore[type-arg]
    return {e.raw["uid"][0] for b in batches for e in b.entries}


def test_change_after_the_cursor_survives_a_crash(slapd: Slapd) -> None:
    """Cursor at the checkpoint (a clean restart checkpoints); a user added; slapd killed:
    its contextCSN is back at the cursor's, and the new user must still be read."""
    slapd.stop()
    slapd.start()
    conn = opened(slapd)
    _b, cursor = full_read(conn)
    slapd.add(f"dn: uid=late,{PEOPLE}\nobjectClass: inetOrgPerson\nuid: late\ncn: L\nsn: L\n")
    _restart_after_crash(slapd)
    conn.close()
    conn = opened(slapd)
    batches = changes(conn, cursor)
    assert "late" in _uids(batches)
    conn.close()


def test_full_read_after_a_crash_keeps_no_cursor_until_the_server_catches_up(
        slapd: Slapd) -> None:
    """The server's contextCSN is older than entries written before the crash: a cookie
    taken now would claim them; the read keeps no cursor. After the next write the
    contextCSN is the newest again and the cursor is kept."""
    slapd.stop()
    slapd.start()
    slapd.modify(f"dn: {user_dn(1)}\nchangetype: modify\nreplace: title\ntitle: X\n")
    _restart_after_crash(slapd)
    conn = opened(slapd)
    batches = list(conn.read("user", None, ["uid"]))
    assert batches[-1].cursor is None and batches[-1].complete
    conn.close()
    slapd.modify(f"dn: {user_dn(2)}\nchangetype: modify\nreplace: title\ntitle: Y\n")
    conn = opened(slapd)
    _b, cursor = full_read(conn)
    assert changes(conn, cursor)[-1].entries == ()  # a quiet directory reads nothing
    conn.close()


@pytest.mark.parametrize(("cookie", "csn"), [
    (b"rid=000,csn=20261201215000.123456Z#000000#000#000000",
     "20261201215000.123456Z#000000#000#000000"),
    (b"csn=20261201215000.123456Z#000000#000#000000",
     "20261201215000.123456Z#000000#000#000000"),
    (b"rid=000,csn=20261201215000.1Z#000000#001#000000;20261201215001.1Z#000000#002#000000",
     None),  # multi-provider: not checked
    (b"rid=000", None),
    (b"rid=000,csn=", None),
])
def test_cookie_csn(cookie: bytes, csn: str | None) -> None:
    assert cookie_csn(cookie) == csn
