"""Never act on the wrong object, end to end through a proxy in front of a real scim2-server:
a listing that shifts while paged, a value that breaks a filter, a target that dies mid-run.

The proxy rewrites or cuts what the real server answers where the server will not misbehave
on request; everything else is the real CLI against the real slapd and scim2-server.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Sync
from tests.e2e.test_two_way_e2e import TwoWayPeers
from tests.peers.directory import PEOPLE, user_dn, user_uid
from tests.peers.fault_proxy import Fault, FaultProxy
from tests.peers.ldap_fixtures import SMALL_USERS
from tests.peers.scim_servers import Scim2Server
from tests.peers.slapd import Slapd


@pytest.fixture
def proxy(scim2_server: Scim2Server) -> Iterator[FaultProxy]:
    with FaultProxy(scim2_server.url) as p:
        yield p


def _listing(fn: Callable[[dict], dict]) -> Callable[[bytes], bytes]:
    def rewrite(body: bytes) -> bytes:
        return json.dumps(fn(json.loads(body))).encode()
    return rewrite


def _shifted(doc: dict) -> dict:
    """Page 2 as the server answers after an object of page 1 was deleted meanwhile: its
    first object slid into page 1 (unseen), and the total went down by one."""
    return {**doc, "Resources": doc["Resources"][1:], "totalResults": doc["totalResults"] - 1}


def _last_missing(doc: dict) -> dict:
    return {**doc, "Resources": doc["Resources"][:-1], "totalResults": doc["totalResults"] - 1}


def _past_end(doc: dict) -> dict:
    return {**doc, "Resources": [], "totalResults": doc["totalResults"] - 1}


def _one_less(doc: dict) -> dict:
    return {**doc, "totalResults": doc["totalResults"] - 1}


@pytest.mark.parametrize("lie", ["shifted", "consistent"])
def test_a_listing_that_shifts_while_paged_deletes_nothing(
        tmp_path: Path, slapd: Slapd, scim2_server: Scim2Server, proxy: FaultProxy,
        monkeypatch: pytest.MonkeyPatch, lie: str) -> None:
    tw = TwoWayPeers(tmp_path, slapd, scim2_server, monkeypatch)
    tw.configure(extra='reverse_deprovision = "delete"')
    tw.config.write_text(tw.config.read_text().replace(
        f'url = "{scim2_server.url}"', f'url = "{proxy.url}"\npage_size = 10'))
    tw.settle()
    listing = dict(method="GET", path=r"/Users$")
    if lie == "shifted":  # totalResults moves between pages: the listing knows it is partial
        proxy.add(Fault("rewrite", skip=1, rewrite=_listing(_shifted), **listing))
    else:  # every page agrees on the lie (one object never listed): only a lookup can tell
        proxy.add(Fault("rewrite", skip=2, rewrite=_listing(_last_missing), **listing),
                  Fault("rewrite", skip=2, times=10, rewrite=_listing(_past_end), **listing),
                  Fault("rewrite", times=2, rewrite=_listing(_one_less), **listing))
    doc = tw.run("--full", ok=False)
    assert not [c for c in doc["changes"] if c["op"] in ("delete", "deprovision")], doc
    for i in range(SMALL_USERS):
        assert tw.ldap_entry(user_uid(i)) is not None, f"{user_uid(i)} was deleted"
    proxy.clear()
    assert tw.run("--full")["changes"] == []
    assert all(tw.ldap_entry(user_uid(i)) is not None for i in range(SMALL_USERS))


def test_a_value_that_breaks_a_filter_holds_one_entry_only(sync_scim2: Sync) -> None:
    sync = sync_scim2
    assert sync.run().code == 0
    for uid in ("tab\there", "quote\"and\\back", "fine.newcomer"):
        cn = uid.replace("\t", " ").replace('"', "").replace("\\", "")
        sync.ldap.add(f"dn: cn={cn},{PEOPLE}\nobjectClass: inetOrgPerson\ncn: {cn}\n"
                      f"sn: X\nuid:: {__import__('base64').b64encode(uid.encode()).decode()}\n"
                      f"mail: {cn.replace(' ', '.')}@example.com\n")
    sync.ldap.delete(user_dn(3))  # a leaver in the same run
    res = sync.run()
    assert res.code in (0, 1), res.out  # at most that one object failed: never an abort
    doc = res.doc
    assert doc is not None and doc["flows"][0]["result"] in ("ok", "failed")
    assert sync.user("fine.newcomer")["active"] is True
    assert sync.user(user_uid(3))["active"] is False  # the leaver was deprovisioned


def test_a_target_that_dies_mid_run_ends_it_fast_and_the_rerun_converges(
        sync_scim2: Sync, proxy: FaultProxy) -> None:
    sync = sync_scim2
    sync.write(app_extra='bulk = "never"\nconcurrency = 4')
    sync.config.write_text(sync.config.read_text().replace(
        f'url = "{sync.scim.url}"', f'url = "{proxy.url}"'))
    # after 10 creates the server is gone: every later request dies at the socket
    proxy.add(Fault("reset", method="POST", path=r"/Users$", skip=10, times=10_000))
    started = time.monotonic()
    res = sync.run()
    took = time.monotonic() - started
    assert res.code == 1, res.out
    assert took < 30, f"the run took {took:.0f}s against a dead target"
    flow = res.doc["flows"][0]  # type: ignore[index]
    assert flow["result"] == "aborted" and any("down" in e for e in flow["errors"]), flow
    posts = len(proxy.events("POST"))
    assert posts < 30, f"{posts} creates were still tried against a dead target"
    proxy.clear()
    assert sync.run().code == 0
    names = [u["userName"] for u in sync.list("Users")]
    assert len(names) == SMALL_USERS == len(set(names))


@pytest.mark.parametrize("status", [400, 502])
def test_a_token_the_server_echoes_is_never_logged_stored_or_shown(
        sync_scim2: Sync, proxy: FaultProxy, status: int) -> None:
    sync = sync_scim2
    token = sync.scim.token or ""
    assert len(token) >= 8
    sync.write(app_extra='bulk = "never"\nmax_retries = 0')
    sync.config.write_text(sync.config.read_text().replace(
        f'url = "{sync.scim.url}"', f'url = "{proxy.url}"'))
    echo = (f"<html><body><h1>Bad request</h1><pre>POST /v2/Users HTTP/1.1\r\n"
            f"Authorization: Bearer {token}\r\nX-Debug: token={token}\r\n</pre></body></html>")
    proxy.add(Fault("serve", method="POST", path=r"/Users$", status=status, times=3,
                    payload=lambda: [echo.encode()]))
    res = sync.run()
    assert res.code == 1, res.out
    assert token not in res.out
    status_out = _cli(sync, "status")
    assert token not in status_out
    if status == 400:  # the server's words are kept for the admin: masked
        assert "redacted" in status_out + res.out
    explained = _cli(sync, "explain", "--flow", "corp-to-app", user_uid(0))
    assert token not in explained
    for f in sync.state.parent.glob(sync.state.name + "*"):
        assert token.encode() not in f.read_bytes(), f


def _cli(sync: Sync, *args: str) -> str:
    from click.testing import CliRunner

    from syncd.cli.main import main

    command, *rest = args
    return CliRunner().invoke(main, [command, "--config", str(sync.config), *rest]).output
