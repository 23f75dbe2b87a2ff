"""``[alerts]`` in the config file: every mistake names ``alerts.…``; header values are secrets
that only the commands which send alerts resolve."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from syncd import config
from syncd.cli.main import main
from syncd.errors import ConfigError
from syncd.secrets import UnresolvedSecret

BASE = """
[state]
url = "sqlite:///{state}"
[connectors.src]
type = "memory"
directory = "cfg-src"
[connectors.dst]
type = "memory"
directory = "cfg-dst"
[flows.f]
source = "src"
target = "dst"
[flows.f.users.mapping]
userName = "uid"
"""


def write(tmp_path: Path, alerts: str) -> Path:
    path = tmp_path / "syncd.toml"
    path.write_text(BASE.format(state=tmp_path / "s.db") + "[alerts]\n" + alerts)
    return path


def error_of(tmp_path: Path, alerts: str) -> str:
    path = write(tmp_path, alerts)
    with pytest.raises(ConfigError) as exc:
        config.load(path)
    message = str(exc.value)
    assert message.startswith(f"{path}: ")
    return message


def hook(url: str, extra: str = "") -> str:
    return f'webhooks = [{{ url = "{url}"{extra} }}]\n'


@pytest.mark.parametrize(("alerts", "key", "reason"), [
    (hook("ftp://hooks.example.com/x"), "alerts.webhooks[0].url", "https:// URL with a host"),
    (hook("hooks.example.com/x"), "alerts.webhooks[0].url", "https:// URL with a host"),
    (hook("https://"), "alerts.webhooks[0].url", "https:// URL with a host"),
    (hook("https://hooks.example.com:99999/x"), "alerts.webhooks[0].url", "port"),
    (hook("http://hooks.example.com/x"), "alerts.webhooks[0].url",
     "allow_http = true"),
    (hook("http://10.0.0.7/x"), "alerts.webhooks[0].url", "clear text"),
    (hook("https://a.example.com/x") + 'events = ["refused", "exploded"]\n',
     "alerts.events[1]", "'refused', 'quarantined', 'failed', 'aborted' or 'recovered'"),
    (hook("https://a.example.com/x") + 'flows = ["f", "nope"]\n', "alerts.flows[1]",
     "unknown flow 'nope' (defined: f)"),
    (hook("https://a.example.com/x", ", retries = 3"), "alerts.webhooks[0].retries",
     "unknown key"),
    (hook("https://a.example.com/x", ', headers = { "Bad Name" = "x" }'),
     "alerts.webhooks[0].headers", "not an HTTP header name"),
    (hook("https://a.example.com/x", ', ca_file = "/nonexistent/ca.pem"'),
     "alerts.webhooks[0].ca_file", "not found"),
    ('command = ["notify", "--flag"]\n', "alerts.command", "absolute path"),
    ('command = ["/nonexistent/notify"]\n', "alerts.command", "not an executable file"),
    ('command = []\n', "alerts.command", "give the program"),
    ('command = ["/bin/true"]\ncommand_timeout = "soon"\n', "alerts.command_timeout",
     "not a duration"),
    ('events = ["failed"]\n', "alerts", "sends nowhere"),
    ("unknown = 1\n", "alerts.unknown", "unknown key"),
])
def test_alerts_errors_name_the_key(tmp_path: Path, alerts: str, key: str,
                                    reason: str) -> None:
    message = error_of(tmp_path, alerts)
    assert f": {key}: " in message, message
    assert reason in message, message


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9000/hook", "http://[::1]:9000/hook", "http://localhost/hook",
    "https://hooks.example.com/services/x?code=1",
])
def test_https_anywhere_and_plain_http_to_loopback_load(tmp_path: Path, url: str) -> None:
    cfg = config.load(write(tmp_path, hook(url)))
    (w,) = cfg.alerts.webhooks
    assert w.url == url and w.tls_verify is True and w.ca_file is None
    assert cfg.alerts.events == ["refused", "quarantined", "failed", "aborted", "recovered"]
    assert cfg.alerts.flows is None and cfg.alerts.command is None


def test_allow_http_lets_plain_http_reach_another_host(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, hook("http://alerts.lan/x", ", allow_http = true")))
    assert cfg.alerts.webhooks[0].url == "http://alerts.lan/x"


def test_no_alerts_table_means_no_receivers(tmp_path: Path) -> None:
    path = tmp_path / "syncd.toml"
    path.write_text(BASE.format(state=tmp_path / "s.db"))
    assert not config.load(path).alerts.enabled


def test_header_values_are_secrets_resolved_only_when_needed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, hook("https://a.example.com/x",
                                ', headers = { Authorization = "env:HOOK_TOKEN" }'))
    monkeypatch.delenv("HOOK_TOKEN", raising=False)
    with pytest.raises(ConfigError) as exc:
        config.load(path, service=True)  # the daemon
    assert (f"{path}: alerts.webhooks[0].headers.Authorization: " in str(exc.value)
            and "HOOK_TOKEN is not set" in str(exc.value))
    # a command that sends no alert (run, status, validate) does not need the credential
    assert isinstance(config.load(path).alerts.webhooks[0].headers["Authorization"],
                      UnresolvedSecret)
    deferred = config.load(path, secrets=False)
    assert isinstance(deferred.alerts.webhooks[0].headers["Authorization"], UnresolvedSecret)
    assert CliRunner().invoke(main, ["validate", "--config", str(path)]).exit_code == 0

    monkeypatch.setenv("HOOK_TOKEN", "Bearer tok-12345")
    cfg = config.load(path, service=True)
    value = cfg.alerts.webhooks[0].headers["Authorization"]
    assert isinstance(value, SecretStr) and value.get_secret_value() == "Bearer tok-12345"
    assert "tok-12345" not in repr(cfg.alerts)


def test_command_and_filters_load(tmp_path: Path) -> None:
    script = tmp_path / "notify"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    cfg = config.load(write(tmp_path, f'command = ["{script}", "--flag"]\n'
                                      'command_timeout = "30s"\n'
                                      'events = ["refused", "recovered"]\nflows = ["f"]\n'))
    assert cfg.alerts.command == [str(script), "--flag"]
    assert cfg.alerts.command_timeout == "30s"
    assert cfg.alerts.events == ["refused", "recovered"] and cfg.alerts.flows == ["f"]
    assert cfg.alerts.enabled
