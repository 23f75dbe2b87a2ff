"""Config errors name the file, the key path and the reason; secrets resolve and stay hidden."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from syncd import config
from syncd.cli import main
from syncd.errors import ConfigError

GOOD = """
[state]
url = "sqlite:///{state}"

[connectors.corp]
type = "ldap"
url = "ldap://127.0.0.1:3890"
bind_dn = "cn=admin,dc=example,dc=org"
bind_password = "env:CORP_LDAP_PASSWORD"
users = {{ base = "ou=people,dc=example,dc=org", filter = "(objectClass=inetOrgPerson)" }}
groups = {{ base = "ou=groups,dc=example,dc=org", filter = "(objectClass=groupOfNames)" }}

[connectors.app]
type = "scim"
url = "http://127.0.0.1:8080/scim/v2"
token = "env:APP_SCIM_TOKEN"

[flows.corp-to-app]
source = "corp"
target = "app"
deprovision = "disable"
match = ["userName"]

[flows.corp-to-app.users.mapping]
userName = "uid"
displayName = "cn"
"name.givenName" = "givenName"
"name.familyName" = "sn"
"emails.work" = "mail"
title = "title"
"enterprise.employeeNumber" = "employeeNumber"
externalId = "entryUUID"

[flows.corp-to-app.groups.mapping]
displayName = "cn"
"""


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORP_LDAP_PASSWORD", "s3cret-ldap")
    monkeypatch.setenv("APP_SCIM_TOKEN", "s3cret-token")


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "syncd.toml"
    p.write_text(text.replace("{state}", str(tmp_path / "s.db")).replace("{{", "{")
                 .replace("}}", "}"))
    return p


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as exc:
        config.load(write(tmp_path, text))
    return str(exc.value)


def test_issue_contract_config_loads(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, GOOD))
    flow = cfg.flows["corp-to-app"]
    assert [k.kind for k in flow.kinds] == ["user", "group"]
    users = flow.kind("user")
    assert users is not None and users.match == ("userName",)
    assert "enterprise.employeeNumber" in users.mapping.paths
    ldap = cfg.connectors["corp"].config
    assert ldap.bind_password.get_secret_value() == "s3cret-ldap"  # type: ignore[attr-defined]
    assert "s3cret" not in repr(ldap)


def test_default_state_url_uses_state_directory(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "st"))
    cfg = config.load(write(tmp_path, GOOD.replace('[state]\nurl = "sqlite:///{state}"', "")))
    assert cfg.state_url == f"sqlite:///{tmp_path / 'st' / 'syncd-state.db'}"


def test_toml_syntax_error_names_file(tmp_path: Path) -> None:
    msg = error_of(tmp_path, GOOD + "\n[flows\n")
    assert "syncd.toml" in msg and "not valid TOML" in msg


def test_bad_enum_names_key_path(tmp_path: Path) -> None:
    msg = error_of(tmp_path, GOOD.replace('deprovision = "disable"', 'deprovision = "nuke"'))
    assert "flows.corp-to-app.deprovision" in msg


def test_unknown_key_is_an_error(tmp_path: Path) -> None:
    msg = error_of(tmp_path, GOOD.replace('match = ["userName"]', 'mach = ["userName"]'))
    assert "flows.corp-to-app.mach: unknown key" in msg


def test_unknown_connector_reference(tmp_path: Path) -> None:
    msg = error_of(tmp_path, GOOD.replace('target = "app"', 'target = "ap"'))
    assert "flows.corp-to-app.target" in msg and "'ap'" in msg


def test_unknown_connector_type_lists_known(tmp_path: Path) -> None:
    msg = error_of(tmp_path, GOOD.replace('type = "scim"', 'type = "skim"'))
    assert "connectors.app" in msg and "ldap" in msg and "scim" in msg


def test_connector_field_error_names_connector_key(tmp_path: Path) -> None:
    msg = error_of(tmp_path, GOOD.replace('bind_dn = "cn=admin,dc=example,dc=org"',
                                          'bind_dn = "cn=admin"\nbogus = 1'))
    assert "connectors.corp.bogus" in msg


def test_missing_secret_env_is_config_error_without_value(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APP_SCIM_TOKEN")
    msg = error_of(tmp_path, GOOD)
    assert "connectors.app.token" in msg and "APP_SCIM_TOKEN" in msg


def test_file_secret(tmp_path: Path) -> None:
    (tmp_path / "tok").write_text("from-file\n")
    cfg = config.load(write(tmp_path, GOOD.replace('"env:APP_SCIM_TOKEN"',
                                                   f'"file:{tmp_path / "tok"}"')))
    assert cfg.connectors["app"].config.token.get_secret_value() == "from-file"  # type: ignore[attr-defined]


def test_bad_mapping_names_flow_kind_and_path(tmp_path: Path) -> None:
    msg = error_of(tmp_path, GOOD.replace('title = "title"',
                                          'title = { from = "title", on_empty = "nope" }'))
    assert "flows.corp-to-app.users.mapping.title" in msg


def test_unknown_target_path_is_caught(tmp_path: Path) -> None:
    msg = error_of(tmp_path, GOOD.replace('"name.givenName" = "givenName"',
                                          '"name.givenname" = "givenName"'))
    assert "name.givenname" in msg


def test_match_key_must_be_mapped(tmp_path: Path) -> None:
    msg = error_of(tmp_path, GOOD.replace('match = ["userName"]', 'match = ["nickName"]'))
    assert "flows.corp-to-app.match" in msg and "nickName" in msg


def test_cli_validate_exit_codes(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(main, ["validate", "--config", str(write(tmp_path, GOOD))])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(main, ["validate", "--config", str(tmp_path / "missing.toml")])
    assert bad.exit_code == 2 and "not found" in bad.output


def test_cli_run_with_invalid_config_touches_nothing(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD.replace('deprovision = "disable"', 'deprovision = 3'))
    res = CliRunner().invoke(main, ["run", "--config", str(p)])
    assert res.exit_code == 2
    assert not (tmp_path / "s.db").exists()


@pytest.mark.parametrize("path", sorted(Path(__file__).resolve().parents[2].glob("config/*.toml")),
                         ids=lambda p: p.name)
def test_shipped_configs_validate(path: Path, monkeypatch: pytest.MonkeyPatch,
                                  tmp_path: Path) -> None:
    for var in ("ENTRA_CLIENT_SECRET", "CORP_LDAP_PASSWORD", "APP_SCIM_TOKEN"):
        monkeypatch.setenv(var, "x")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    (tmp_path / "corp-ldap-password").write_text("x")
    import re

    for name in re.findall(r'"env:([A-Z_0-9]+)"', path.read_text()):
        monkeypatch.setenv(name, "x")
    for name in re.findall(r'"file:([^"/]+)"', path.read_text()):
        (tmp_path / name).write_text("x")
    cfg = config.load(path)
    assert cfg.flows
