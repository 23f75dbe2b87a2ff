"""The status page: gathered from a store real runs wrote, rendered, served on the metrics
listener (scraped with a real HTTP client) and written by ``syncd report --html``. Escaping
is a property: whatever text a directory puts in a name or a peer in an error, the HTML parsed
back holds that text and no element, comment or declaration made of it. The same page in a
real browser: tests/e2e/test_status_browser.py."""

from __future__ import annotations

import json
import os
import socket
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from hypothesis import example, given, settings
from hypothesis import strategies as st

from syncd.cli.main import main
from syncd.daemon.metrics import Metrics
from syncd.daemon.status_data import (
    ConflictView,
    FlowView,
    HeldView,
    History,
    HistoryRow,
    RunView,
    Snapshot,
    gather,
    mask_value,
)
from syncd.daemon.status_page import CSP, render
from syncd.daemon.web import host_allowed
from syncd.state.store import Store
from tests.unit import status_scenario as sc


@pytest.fixture
def scenario(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[sc.Scenario]:
    s = sc.build(tmp_path, monkeypatch)
    yield s
    sc.drop(s)


class Parsed(HTMLParser):
    """Start tags (with attributes), text, and any other markup the parser met."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []
        self.other: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += attrs

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def handle_comment(self, data: str) -> None:
        self.other.append(f"comment {data}")

    def handle_decl(self, decl: str) -> None:
        self.other.append(f"decl {decl}")

    def unknown_decl(self, data: str) -> None:
        self.other.append(f"unknown {data}")

    def handle_pi(self, data: str) -> None:
        self.other.append(f"pi {data}")

    @property
    def all_text(self) -> str:
        return "".join(self.text)


def snapshot(t: str) -> Snapshot:
    """Every place a directory's or a peer's text reaches, holding `t`."""
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    runs = (RunView("r2", at, at, "refused", 0, 0, 1.5, t, t, (t,)),
            RunView("r1", at, at, "failed", 1, 1, 0.2, t, t, (), (t,)))
    held = (HeldView("f", "user", t, t, "update", 5, at, True, t),
            HeldView("f", "user", "s2", t, "create", 1, at, False, t))
    conflict = ConflictView("c1", "user", t, t, t, t, t, t, t)
    flow = FlowView("f", "src", "dst", "push", {"user": {"active": 3}}, runs, held, 2,
                    (conflict,), 1)
    row = HistoryRow(at, "f", "r1", "user", "update", "failed", t, t, t, t, ((t, t),), t)
    return Snapshot(at, "sqlite:////x.db", "/etc/syncd/syncd.toml", (flow,),
                    History(t, "f", (row,), held))


EVIL = ["<script>alert(1)</script>", "\"'><img src=x onerror=alert(1)>", "<!-- x -->",
        "<![CDATA[x]]>", "&lt;b&gt;", "&amp;", "</td></tr></table><b>", "<?php ?>",
        "<!DOCTYPE x>", "a\r\nb", "</style><script>x</script>", "&#60;i&#62;"]


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(min_size=1), st.sampled_from(EVIL),
                 st.text(alphabet="<>&\"'/=!?-[] abx;#", min_size=1)))
@example("<script>alert(1)</script>")
def test_any_text_renders_as_text_never_as_markup(t: str) -> None:
    benign = Parsed(render(snapshot("plain")))
    page = Parsed(render(snapshot(t)))
    assert page.tags == benign.tags  # no element came from the text
    assert page.other == benign.other == ["decl DOCTYPE html"]
    assert t in page.all_text
    assert ("data-object", t) in page.attrs and ("value", t) in page.attrs
    assert "<script" not in render(snapshot(t)).lower()


def test_values_shown_are_masked_and_redacted() -> None:
    assert mask_value("password", "hunter2") == "[redacted]"
    assert mask_value("urn:ietf:params:scim:schemas:core:2.0:User:password", "x") == "[redacted]"
    assert mask_value("title", ("a", "b")) == '["a", "b"]'
    assert "s3cr3t" not in mask_value("description", "note: password=s3cr3t")
    assert len(mask_value("title", "x" * 10_000)) < 400


def test_page_from_real_runs(scenario: sc.Scenario) -> None:
    snap = gather(scenario.cfg)
    assert snap.error is None
    by_name = {f.name: f for f in snap.flows}
    assert [r.result for r in by_name["people"].runs] == ["failed", "failed", "ok"]
    assert [r.result for r in by_name["hr"].runs] == ["refused", "ok"]
    hr = by_name["hr"].awaiting
    assert hr is not None and hr.refused == (
        "3 users would be deprovisioned, over max_deprovision=1: h0, h1, h2",)
    (held,) = by_name["people"].held
    assert (held.name, held.quarantined, held.attempts) == ("qbert", True, 2)
    assert by_name["people"].runs[0].failures == (
        "update user qbert: Rejected: title refused; password=[redacted]",)
    (conflict,) = by_name["pair"].conflicts
    assert (conflict.name, conflict.source_value, conflict.target_value) == (
        sc.EVIL, "from-left", "from-right")
    html = render(snap)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert sc.LEAKED not in html and sc.PASSWORD_VALUE not in html
    text = Parsed(html).all_text
    assert "syncd plan --config" in text and "syncd apply plan.json --approve-all" in text


def test_object_history_by_name_or_id_hides_passwords(scenario: sc.Scenario) -> None:
    h = gather(scenario.cfg, obj="alice", flow="people").history
    assert h is not None
    (row,) = h.rows
    assert (row.op, row.result, row.name) == ("create", "applied", "alice")
    assert ("password", "[redacted]") in row.values and ("title", "dev") in row.values
    assert sc.PASSWORD_VALUE not in render(gather(scenario.cfg, obj="alice"))
    by_id = gather(scenario.cfg, obj="s-qbert").history
    assert by_id is not None
    assert [r.result for r in by_id.rows] == ["failed", "failed", "applied"]
    assert [h.name for h in by_id.held] == ["qbert"]
    assert all(sc.LEAKED not in (r.error or "") for r in by_id.rows)
    # a target id finds it too, and nothing is found in another flow
    target_id = by_id.rows[-1].target_id
    found = gather(scenario.cfg, obj=target_id, flow="people").history
    assert found is not None and len(found.rows) == 3
    none = gather(scenario.cfg, obj="qbert", flow="hr").history
    assert none is not None and none.rows == () and none.held == ()


def test_engine_keeps_each_refusal_reason(scenario: sc.Scenario) -> None:
    store = Store(scenario.cfg.state_url, readonly=True)
    try:
        (last, _) = store.recent_runs("hr", 2)
    finally:
        store.close()
    assert json.loads(last["summary"])["refused"] == [
        "3 users would be deprovisioned, over max_deprovision=1: h0, h1, h2"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_served_on_the_metrics_listener(scenario: sc.Scenario) -> None:
    m = Metrics(page=lambda: scenario.cfg)
    port = free_port()
    m.serve(f"127.0.0.1:{port}")
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=10) as c:
            pages = [c.get("/"), c.get("/status"), c.get("/status", params={
                "object": sc.EVIL, "flow": "people"})]
            metrics = c.get("/metrics")
            post = c.post("/status")
            foreign = c.get("/", headers={"Host": "attacker.example:80"})
            by_name = c.get("/", headers={"Host": f"localhost:{port}"})
            head = c.head("/")
    finally:
        m.close()
    for r in pages:
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/html; charset=utf-8"
        assert r.headers["content-security-policy"] == CSP
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "<script>" not in r.text and "qbert" in r.text
    assert 'data-object="&lt;script&gt;alert(1)&lt;/script&gt;"' in pages[2].text
    assert "# HELP syncd_runs_total" in metrics.text
    assert post.status_code == 405
    assert foreign.status_code == 421 and "qbert" not in foreign.text
    assert by_name.status_code == 200
    assert head.status_code == 200 and head.content == b""


def test_unreadable_store_is_said_on_the_page(tmp_path: Path) -> None:
    (tmp_path / "state.db").write_bytes(b"this is not a database" * 100)
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(f'[state]\nurl = "sqlite:///{tmp_path / "state.db"}"\n'
                        '[connectors.a]\ntype = "memory"\ndirectory = "sp-a"\n'
                        '[connectors.b]\ntype = "memory"\ndirectory = "sp-b"\n'
                        '[flows.f]\nsource = "a"\ntarget = "b"\n'
                        '[flows.f.users.mapping]\nuserName = "uid"\n')
    from syncd import config

    snap = gather(config.load(cfg_path))
    assert snap.error is not None and "state.db" in snap.error
    assert "The state store cannot be read" in render(snap)
    res = CliRunner().invoke(main, ["report", "--config", str(cfg_path), "--html",
                                    str(tmp_path / "r.html")])
    assert res.exit_code == 1 and not (tmp_path / "r.html").exists()


def test_report_html_is_written_whole_and_private(scenario: sc.Scenario,
                                                  tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    out.write_text("old")
    res = CliRunner().invoke(main, ["report", "--config", str(scenario.path), "--html",
                                    str(out), "--object", "qbert"])
    assert res.exit_code == 0, res.output
    assert f"wrote {out}" in res.stdout and "state store: sqlite:///" in res.stdout
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    html = out.read_text()
    assert "<form" not in html and "<a href=\"status?" not in html  # no server behind it
    assert f'<meta http-equiv="Content-Security-Policy" content="{CSP}">' in html
    parsed = Parsed(html)
    assert "qbert" in parsed.all_text and "max_deprovision=1" in parsed.all_text
    assert set(parsed.tags) <= {"html", "head", "meta", "title", "style", "body", "h1", "h2",
                                "h3", "p", "code", "nav", "a", "section", "article", "ul",
                                "ol", "li", "pre", "table", "thead", "tbody", "tr", "th",
                                "td", "span", "div", "time", "q", "br", "footer"}
    assert not any(k in {"src", "href"} and v and not v.startswith("#")
                   for k, v in parsed.attrs)  # nothing fetched, nowhere to go
    res = CliRunner().invoke(main, ["report", "--config", str(scenario.path), "--html",
                                    str(out), "--object", "x", "--flow", "nope"])
    assert res.exit_code == 2 and "unknown flow 'nope'" in res.stderr


def test_report_needs_no_secrets(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[state]\nurl = "sqlite:///{tmp_path / "s.db"}"\n'
                   '[connectors.corp]\ntype = "ldap"\nurl = "ldap://127.0.0.1:1"\n'
                   'bind_dn = "cn=x,dc=example,dc=com"\nbind_password = "file:nowhere"\n'
                   'users = { base = "ou=people,dc=example,dc=com" }\n'
                   '[connectors.dst]\ntype = "memory"\ndirectory = "sp-dst"\n'
                   '[flows.f]\nsource = "corp"\ntarget = "dst"\n'
                   '[flows.f.users.mapping]\nuserName = "uid"\n')
    res = CliRunner().invoke(main, ["report", "--config", str(cfg), "--html",
                                    str(tmp_path / "r.html")])
    assert res.exit_code == 0, res.output
    assert "No runs yet." in (tmp_path / "r.html").read_text()


@pytest.mark.parametrize(("host", "ok"), [
    ("127.0.0.1:9464", True), ("[::1]:9464", True), ("localhost:9464", True),
    ("LOCALHOST.", True), ("app.localhost", True), ("10.1.2.3", True), ("::1", True),
    ("evil.example:9464", False), ("", False), ("127.0.0.1.nip.io", False),
])
def test_page_answers_only_to_ip_localhost_or_own_name(host: str, ok: bool) -> None:
    assert host_allowed(host) is ok
    assert host_allowed(socket.gethostname())
