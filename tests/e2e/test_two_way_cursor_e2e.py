"""Two-way cursors taken after syncd's own writes (`syncd.cycle.catch_up`), on real servers.

slapd (syncrepl cookies) and scim2-server (meta.lastModified watermarks), through the CLI.
Another writer is simulated by a connector hook: the first write syncd sends to a side first
makes a plain edit of *another* object on that side, so the edit lands while syncd applies,
after the cycle's read and before its writes end. No sleeps: the hook runs inside the apply.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from syncd.model import Batch, Kind, Value
from syncd_connectors.ldap.connector import LdapConnector
from syncd_connectors.scim import reads
from syncd_connectors.scim.connector import ScimConnector
from tests.e2e.test_two_way_e2e import TwoWayPeers, updates
from tests.peers.directory import user_dn, user_uid
from tests.peers.scim_servers import Scim2Server
from tests.peers.slapd import Slapd


@pytest.fixture
def tw(tmp_path: Path, slapd: Slapd, scim2_server: Scim2Server,
       monkeypatch: pytest.MonkeyPatch) -> Iterator[TwoWayPeers]:
    yield TwoWayPeers(tmp_path, slapd, scim2_server, monkeypatch)


class Counted:
    """Users each connector type returned from its reads, per run."""

    def __init__(self, mp: pytest.MonkeyPatch) -> None:
        self.read: dict[str, int] = {"ldap": 0, "scim": 0}
        for name, cls in (("ldap", LdapConnector), ("scim", ScimConnector)):
            mp.setattr(cls, "read", self._counting(name, cls.read))

    def _counting(self, name: str, read: Callable[..., Iterator[Batch]]
                  ) -> Callable[..., Iterator[Batch]]:
        def counted(conn: Any, kind: Kind, *args: Any, **kw: Any) -> Iterator[Batch]:
            for batch in read(conn, kind, *args, **kw):
                if kind == "user":
                    self.read[name] += len(batch.entries)
                yield batch
        return counted

    def reset(self) -> None:
        self.read = dict.fromkeys(self.read, 0)


def foreign_edit_on_first_write(mp: pytest.MonkeyPatch, cls: type, edit: Callable[[], None]
                                ) -> list[bool]:
    """`edit` runs once, inside the apply, just before syncd's first update on `cls`."""
    fired: list[bool] = []
    update = cls.update  # type: ignore[attr-defined]

    def hooked(conn: Any, kind: Kind, external_id: str, changes: Mapping[str, Value]) -> None:
        if not fired:
            fired.append(True)
            edit()
        update(conn, kind, external_id, changes)

    mp.setattr(cls, "update", hooked)
    return fired


def test_write_back_is_not_read_again(tw: TwoWayPeers, monkeypatch: pytest.MonkeyPatch
                                      ) -> None:
    """The LDAP entry syncd writes back is not read by the next cycle: the syncrepl cookie
    stored is taken after the write (the catch-up read found only syncd's own write)."""
    tw.settle()
    counted = Counted(monkeypatch)
    tw.scim_patch(user_uid(2), [{"op": "replace", "path": "title", "value": "From App"}])
    doc = tw.run()
    (c,) = updates(doc)
    assert c["source_attrs"] == {"title": "From App"}
    counted.reset()
    assert tw.run()["changes"] == []
    assert counted.read["ldap"] == 0, "syncd's write-back was read again"


def test_foreign_scim_edit_while_syncd_applies_is_merged_next_cycle(
        tw: TwoWayPeers, monkeypatch: pytest.MonkeyPatch) -> None:
    """On SCIM the watermark's overlap (incremental_overlap, 2 s) also covers an edit this
    recent; the check that fails without the catch-up's echo rule is the LDAP one below
    (an exact syncrepl cookie) and the oracle's rule with exact memory cursors."""
    tw.settle()
    tw.ldap_set(1, "title", "From LDAP")  # syncd will PATCH SCIM user 1
    fired = foreign_edit_on_first_write(monkeypatch, ScimConnector, lambda: tw.scim_patch(
        user_uid(3), [{"op": "replace", "path": "name.givenName", "value": "Meanwhile"}]))
    doc = tw.run()
    assert fired and [c["name"] for c in updates(doc)] == [user_uid(1)]
    assert tw.scim_user(user_uid(1))["title"] == "From LDAP"
    doc = tw.run()  # the edit made while syncd applied is read and merged now
    (c,) = updates(doc)
    assert c["name"] == user_uid(3) and c["source_attrs"] == {"givenname": "Meanwhile"}
    assert tw.ldap_entry(user_uid(3))["givenName"] == ["Meanwhile"]  # type: ignore[index]
    assert tw.run()["changes"] == []


def test_foreign_ldap_edit_while_syncd_writes_back_is_merged_next_cycle(
        tw: TwoWayPeers, monkeypatch: pytest.MonkeyPatch) -> None:
    tw.settle()
    tw.scim_patch(user_uid(4), [{"op": "replace", "path": "title", "value": "From App"}])
    fired = foreign_edit_on_first_write(monkeypatch, LdapConnector, lambda: tw.ldap.modify(
        f"dn: {user_dn(5)}\nchangetype: modify\nreplace: title\ntitle: Meanwhile\n"))
    doc = tw.run()
    assert fired and [c["name"] for c in updates(doc)] == [user_uid(4)]
    doc = tw.run()
    (c,) = updates(doc)
    assert c["name"] == user_uid(5) and c["attrs"] == {"title": "Meanwhile"}
    assert tw.scim_user(user_uid(5))["title"] == "Meanwhile"
    assert tw.run()["changes"] == []


def test_a_foreign_edit_in_the_initial_syncs_wide_catch_up_window_is_kept(
        tw: TwoWayPeers, monkeypatch: pytest.MonkeyPatch) -> None:
    """The catch-up after an initial sync lists every user syncd created: wider than a page
    (page_size = 2) and the whole directory, so it is read unfiltered and kept client-side
    (`syncd_connectors.scim.reads.listing`). A SCIM edit another writer makes right after
    syncd's creates is in that window: the pre-write cursor stays, and the next cycle merges
    the edit into LDAP. No overlap (``incremental_overlap = 0``), so that it is the
    catch-up's verdict, not the watermark's margin, that keeps the edit."""
    token = 'token = "env:TW_SCIM_TOKEN"\n'
    tw.config.write_text(tw.config.read_text().replace(
        token, token + "page_size = 2\nincremental_overlap = 0\n"))
    sizes: list[int | None] = []
    directory_size = reads.directory_size

    def counted(*args: Any) -> int | None:
        sizes.append(directory_size(*args))
        return sizes[-1]

    monkeypatch.setattr(reads, "directory_size", counted)
    create_many = ScimConnector.create_many
    fired: list[bool] = []

    def then_edit(conn: ScimConnector, kind: Kind, items: Any) -> Any:
        out = create_many(conn, kind, items)
        if kind == "user" and not fired:
            fired.append(True)
            tw.scim_patch(user_uid(3), [{"op": "replace", "path": "name.givenName",
                                         "value": "Meanwhile"}])
        return out

    monkeypatch.setattr(ScimConnector, "create_many", then_edit)
    doc = tw.run()
    assert fired and doc["summary"]["user"]["create"] == 30
    assert sizes == [30, 4], "each catch-up (users, groups) listed its window whole, once"
    doc = tw.run()
    (c,) = updates(doc)
    assert c["name"] == user_uid(3) and c["source_attrs"] == {"givenname": "Meanwhile"}
    assert tw.ldap_entry(user_uid(3))["givenName"] == ["Meanwhile"]  # type: ignore[index]
    assert tw.run()["changes"] == []
