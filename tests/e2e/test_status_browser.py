"""The status page in a real browser: Debian's Chromium, headless, driven by selenium through
Debian's chromedriver (scripts/bootstrap.sh installs both; nothing is downloaded, and the
test fails rather than skips when they are missing). The store is written by real runs
(tests/unit/status_scenario.py); the page is served by the daemon's own listener and, the
second time, opened from the file ``syncd report --html`` wrote. What is asserted is what a
person sees: the DOM's visible text, not the HTML source."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from click.testing import CliRunner
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from syncd.cli.main import main
from syncd.daemon.service import Daemon
from tests.unit import status_scenario as sc

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT_S = 30


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    for path in (CHROMIUM, CHROMEDRIVER):
        assert os.access(path, os.X_OK), (
            f"{path} is missing: scripts/bootstrap.sh installs Debian's chromium and "
            "chromium-driver")
    tmp = tmp_path_factory.mktemp("chromium")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM  # given, so selenium-manager looks nothing up
    for arg in ("--headless=new", "--no-sandbox",  # root in CI: no user namespace sandbox
                "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1600",
                f"--user-data-dir={tmp / 'profile'}", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-extensions"):
        opts.add_argument(arg)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SE_OFFLINE", "true")
        service = Service(executable_path=CHROMEDRIVER,
                          log_output=str(tmp / "chromedriver.log"))
        driver = webdriver.Chrome(service=service, options=opts)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def scenario(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[sc.Scenario]:
    s = sc.build(tmp_path, monkeypatch)
    yield s
    sc.drop(s)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def load(driver: WebDriver, url: str, wait_for: str = "footer") -> None:
    driver.get(url)
    WebDriverWait(driver, WAIT_S).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, wait_for)))


def visible_text(driver: WebDriver, css: str) -> str:
    el = driver.find_element(By.CSS_SELECTOR, css)
    assert el.is_displayed(), css
    return str(el.text)


def check_overview(driver: WebDriver, shot: Path) -> None:
    """What the page must show of the scenario, as a person sees it."""
    runs = {f: [li.get_attribute("data-result") for li in driver.find_elements(
        By.CSS_SELECTOR, f'section.flow[data-flow="{f}"] ol.timeline li.run')]
        for f in ("people", "hr", "pair")}
    assert runs == {"people": ["failed", "failed", "ok"], "hr": ["refused", "ok"],
                    "pair": ["ok", "ok", "ok"]}
    people = visible_text(driver, 'section.flow[data-flow="people"]')
    assert "3 applied, 0 failed — users: 3 create" in people
    assert "update user qbert: Rejected: title refused; password=[redacted]" in people
    refused = visible_text(driver, '#approval article.refused[data-flow="hr"]')
    assert "3 users would be deprovisioned, over max_deprovision=1: h0, h1, h2" in refused
    assert "syncd plan --config" in refused and "--flow hr --out plan.json" in refused
    assert "syncd apply plan.json --approve-all" in refused
    held = driver.find_element(By.XPATH, '//section[@id="held"]//tr[td[.="qbert"]]')
    assert held.is_displayed() and "quarantined" in held.text and "update user" in held.text
    conflicts = visible_text(driver, "#conflicts table")
    assert f"user {sc.EVIL}" in conflicts  # the name as text, angle brackets and all
    assert "from-left" in conflicts and "from-right" in conflicts
    assert_inert(driver)
    body = visible_text(driver, "body")
    assert sc.LEAKED not in body and sc.PASSWORD_VALUE not in body
    driver.save_screenshot(str(shot))
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000


def assert_inert(driver: WebDriver) -> None:
    """No script element, no alert, nothing fetched besides the page itself."""
    assert driver.find_elements(By.TAG_NAME, "script") == []
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert  # noqa: B018 (the property raises when there is none)
    assert driver.execute_script("return document.scripts.length") == 0
    assert driver.execute_script(
        "return performance.getEntriesByType('resource').length") == 0


def test_served_page_in_chromium(browser: WebDriver, scenario: sc.Scenario,
                                 tmp_path: Path) -> None:
    daemon = Daemon(scenario.path)  # not run: its listener is what is tested
    port = free_port()
    daemon.metrics.serve(f"127.0.0.1:{port}")
    base = f"http://127.0.0.1:{port}"
    try:
        load(browser, f"{base}/")
        assert browser.title == "syncd status"
        check_overview(browser, tmp_path / "status.png")

        # an object's history by the query parameter: the name with markup in it
        load(browser, f"{base}/status?" + urlencode({"object": sc.EVIL, "flow": "people"}),
             "#history")
        assert sc.EVIL in visible_text(browser, "#history h2")
        (row,) = browser.find_elements(By.CSS_SELECTOR, "#history table.history tbody tr")
        assert "create user" in row.text and sc.EVIL in row.text and "applied" in row.text
        assert_inert(browser)

        # the quarantined object's link leads to its history
        load(browser, f"{base}/")
        browser.find_element(By.LINK_TEXT, "qbert").click()
        WebDriverWait(browser, WAIT_S).until(ec.url_contains("object=s-qbert"))
        results = [td.text for td in browser.find_elements(
            By.CSS_SELECTOR, "#history table.history tbody tr td:nth-child(6)")]
        assert results == ["failed", "failed", "applied"]
        assert "quarantined" in visible_text(browser, "#history table.held")

        # and the lookup form, by name in one flow
        load(browser, f"{base}/")
        browser.find_element(By.NAME, "object").send_keys("alice")
        Select(browser.find_element(By.NAME, "flow")).select_by_value("people")
        browser.find_element(By.CSS_SELECTOR, "form.lookup button").click()
        WebDriverWait(browser, WAIT_S).until(ec.url_contains("object=alice"))
        history = visible_text(browser, "#history table.history")
        assert "password: [redacted]" in history and "title: dev" in history
        assert sc.PASSWORD_VALUE not in browser.page_source
        browser.save_screenshot(str(tmp_path / "history.png"))
        assert (tmp_path / "history.png").read_bytes().startswith(b"\x89PNG")
    finally:
        daemon.metrics.close()


def test_report_file_in_chromium(browser: WebDriver, scenario: sc.Scenario,
                                 tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    res = CliRunner().invoke(main, ["report", "--config", str(scenario.path), "--html",
                                    str(out), "--object", sc.EVIL])
    assert res.exit_code == 0, res.output
    load(browser, out.as_uri())
    check_overview(browser, tmp_path / "report.png")
    assert browser.find_elements(By.CSS_SELECTOR, "form") == []
    rows = browser.find_elements(By.CSS_SELECTOR, "#history table.history tbody tr")
    assert [r.find_element(By.CSS_SELECTOR, "td:nth-child(2)").text for r in rows] == [
        "pair", "people"]  # the name in both flows, newest first
