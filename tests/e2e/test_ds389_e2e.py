"""389 Directory Server -> scim2-server through the CLI: creates, modifies, renames and
deletes converge through incremental cycles (389-ds's own RFC 4533 feed), for either anchor.
The SCIM side is read with plain HTTP (`tests.e2e.conftest.Sync`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import CONFIG, Sync
from tests.peers.ds389_fixtures import TREE_USERS, Tree
from tests.peers.scim_servers import _Peer

pytestmark = pytest.mark.peers


class Ds389Sync(Sync):
    """`Sync` pointed at one test's subtree of the shared 389-ds."""

    def __init__(self, tmp: Path, tree: Tree, scim: _Peer, mp: pytest.MonkeyPatch,
                 anchor: str) -> None:  # fmt: skip
        self.tree, self.anchor = tree, anchor
        super().__init__(tmp, tree.server, scim, mp)  # type: ignore[arg-type]

    def write(self, *, deprovision: str = "delete", match: str = '["userName"]',
              extra: str = "", scope: str = "", app_extra: str = "",
              mapping: str = "") -> None:  # fmt: skip
        text = CONFIG.format(
            state=self.state, ldap_url=self.tree.server.url, bind_dn=self.tree.server.admin_dn,
            people=self.tree.people, groups=self.tree.groups, scim_url=self.scim.url,
            deprovision=deprovision, match=match, extra=extra, scope=scope, app_extra=app_extra,
            mapping=mapping,
        )  # fmt: skip
        text = text.replace('type = "ldap"\n', f'type = "ldap"\nanchor = "{self.anchor}"\n', 1)
        self.config.write_text(text)


def reads(doc: dict[str, Any] | None) -> dict[str, str]:
    assert doc is not None
    return dict(doc["flows"][0]["reads"])


def ops(doc: dict[str, Any] | None, kind: str = "user") -> dict[str, list[str]]:
    assert doc is not None
    out: dict[str, list[str]] = {}
    for c in doc["changes"]:
        if c["kind"] == kind:
            out.setdefault(c["op"], []).append(c["name"])
    return out


@pytest.mark.parametrize("anchor", ["entryUUID", "nsUniqueId"])
def test_create_modify_delete_converge_incrementally(
    tmp_path: Path, ds389_tree: Tree, scim2_server: _Peer, monkeypatch: pytest.MonkeyPatch,
    anchor: str,
) -> None:  # fmt: skip
    tree = ds389_tree
    sync = Ds389Sync(tmp_path, tree, scim2_server, monkeypatch, anchor)
    first = sync.run()
    assert first.code == 0, first.out
    assert reads(first.doc) == {"user": "full", "group": "full"}
    assert len(sync.list("Users")) == TREE_USERS

    quiet = sync.run()
    assert quiet.code == 0, quiet.out
    assert reads(quiet.doc) == {"user": "incremental", "group": "incremental"}
    assert quiet.doc is not None and quiet.doc["changes"] == []
    assert quiet.doc["flows"][0]["warnings"] == []

    tree.add_user("fresh", mail="fresh@example.com", title="Newcomer")
    tree.server.modify(tree.user_dn(1), {"title": "Boss"})
    tree.server.rename(tree.user_dn(3), "uid=renamed")
    gone_id = sync.user("user000002")["id"]
    tree.server.delete(tree.user_dn(2))
    changed = sync.run()
    assert changed.code == 0, changed.out
    assert reads(changed.doc) == {"user": "incremental", "group": "incremental"}
    assert changed.doc is not None and changed.doc["flows"][0]["warnings"] == []
    got = ops(changed.doc)
    assert got.get("create") == ["fresh"]
    assert got.get("delete") == ["user000002"]
    assert sorted(got.get("update", [])) == ["renamed", "user000001"]
    assert sync.user("fresh")["title"] == "Newcomer"
    assert sync.user("user000001")["title"] == "Boss"
    assert sync.user("renamed")["id"]  # the same SCIM user, renamed: no second one
    assert not [u for u in sync.list("Users") if u["userName"] == "user000003"]
    assert sync.http.get(f"/Users/{gone_id}").status_code == 404
    assert len(sync.list("Users")) == TREE_USERS

    settled = sync.run()
    assert settled.code == 0, settled.out
    assert reads(settled.doc) == {"user": "incremental", "group": "incremental"}
    assert settled.doc is not None and settled.doc["changes"] == []
