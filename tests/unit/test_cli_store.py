"""Inspecting the service from a shell: which state store a command opens, and commands that
only read the store need none of the connectors' secrets. Through the real CLI; the LDAP
connector's config is validated (never connected) and its password is a ``file:`` reference
that exists only inside the service (systemd ``LoadCredential=``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from syncd.cli.main import main
from syncd.config import loader as load_module

CONFIG = """
{state}
[connectors.corp]
type = "ldap"
url = "ldap://127.0.0.1:1"
bind_dn = "cn=syncd,dc=example,dc=com"
bind_password = "file:ldap-bind-password"
users = {{ base = "ou=people,dc=example,dc=com" }}
[connectors.dst]
type = "memory"
directory = "cli-store-dst"
[flows.f]
source = "corp"
target = "dst"
[flows.f.users.mapping]
userName = "uid"
"""


def write(where: Path, state: str = "", name: str = "syncd.toml") -> Path:
    where.mkdir(parents=True, exist_ok=True)
    path = where / name
    path.write_text(CONFIG.format(state=state))
    return path


def cli(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(main, list(args))
    return res.exit_code, res.stdout, res.stderr


@pytest.fixture(autouse=True)
def _no_service_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.chdir(tmp_path)


def test_read_only_commands_need_no_secrets(tmp_path: Path) -> None:
    cfg = str(write(tmp_path / "etc"))
    for args in (["status"], ["status", "-o", "json"], ["conflicts"], ["validate"],
                 ["release", "--flow", "f"]):
        code, out, err = cli(*args, "--config", cfg)
        assert code == 0, (args, out, err)
    code, out, err = cli("validate", "--config", cfg)
    assert "connectors.corp.bind_password = 'file:ldap-bind-password'" in out
    assert "cannot read secret file" in out
    # a command that opens the connector still needs the secret: exit 2, naming it
    code, out, err = cli("run", "--dry-run", "--config", cfg)
    assert code == 2 and "bind_password" in err and "cannot read secret file" in err


def test_every_command_names_its_store(tmp_path: Path) -> None:
    cfg = write(tmp_path / "etc")
    store = f"sqlite:///{tmp_path / 'etc' / 'syncd-state.db'}"
    for args in (["status"], ["conflicts"], ["validate"], ["release", "--flow", "f"]):
        code, out, _err = cli(*args, "--config", str(cfg))
        assert f"state store: {store}" in out.splitlines(), (args, out)
    code, out, _ = cli("status", "-o", "json", "--config", str(cfg))
    assert code == 0 and json.loads(out)["f"]["state_store"] == store
    code, _out, err = cli("conflicts", "-o", "json", "--config", str(cfg))
    assert code == 0 and f"state store: {store}" in err


def test_default_store_does_not_depend_on_the_current_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write(tmp_path / "etc")
    seen = set()
    for cwd in (tmp_path, tmp_path / "etc", Path("/")):
        monkeypatch.chdir(cwd)
        seen.add(load_module.load(cfg, secrets=False).state_url)
    assert seen == {f"sqlite:///{tmp_path / 'etc' / 'syncd-state.db'}"}
    # a relative sqlite path is relative to the config file too
    rel = write(tmp_path / "other", '[state]\nurl = "sqlite:///data/s.db"')
    assert load_module.load(rel, secrets=False).state_url == (
        f"sqlite:///{tmp_path / 'other' / 'data' / 's.db'}")


def test_service_and_shell_agree_on_the_store(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """/etc/syncd/syncd.toml -> StateDirectory=syncd; /etc/syncd/NAME.toml -> syncd/NAME."""
    etc, var = tmp_path / "etc-syncd", tmp_path / "var-lib-syncd"
    monkeypatch.setattr(load_module, "SERVICE_CONFIG_DIR", etc)
    monkeypatch.setattr(load_module, "SERVICE_STATE_DIR", var)
    main_cfg, hr_cfg = write(etc), write(etc, name="hr.toml")
    shell = {p.name: load_module.load(p, secrets=False).state_url for p in (main_cfg, hr_cfg)}
    assert shell == {"syncd.toml": f"sqlite:///{var / 'syncd-state.db'}",
                     "hr.toml": f"sqlite:///{var / 'hr' / 'syncd-state.db'}"}
    for path, state_dir in ((main_cfg, var), (hr_cfg, var / "hr")):  # what systemd sets
        monkeypatch.setenv("STATE_DIRECTORY", str(state_dir))
        assert load_module.load(path, secrets=False).state_url == shell[path.name]
