"""Config errors name the file, the key path and the reason; secrets resolve and stay hidden."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from syncd import config
from syncd.cli.main import main
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


# -- safety hardening: offline checks -------------------------------------------------------------


@pytest.mark.parametrize(("url", "reason"), [
    ("not a url", "not a database URL"),
    ("nosuchdb://u@127.0.0.1/x", "unknown database dialect 'nosuchdb'"),
    ("mssql+pymssql://u@127.0.0.1/x", "the state store runs on sqlite or postgresql"),
    ("postgresql+asyncpg://u@127.0.0.1/x", "asyncio driver"),
])
def test_unusable_state_url_is_a_config_error(tmp_path: Path, url: str, reason: str) -> None:
    msg = error_of(tmp_path, GOOD.replace('url = "sqlite:///{state}"', f'url = "{url}"'))
    assert "syncd.toml: state.url" in msg and reason in msg


def test_config_file_that_is_not_utf8_is_exit_2_naming_the_offset(tmp_path: Path) -> None:
    p = tmp_path / "syncd.toml"
    p.write_bytes(b'# caf\xe9 in Latin-1\n' + GOOD.encode())
    with pytest.raises(ConfigError, match=r"syncd\.toml: not UTF-8: byte 0xe9 at offset 5"):
        config.load(p)
    res = CliRunner().invoke(main, ["validate", "--config", str(p)])
    assert res.exit_code == 2 and "not UTF-8" in res.stderr and "offset 5" in res.stderr


@pytest.mark.parametrize("connector", ["corp", "app"])
def test_ca_file_must_exist_and_hold_a_pem_certificate(tmp_path: Path, connector: str) -> None:
    import certifi

    anchor = ('bind_password = "env:CORP_LDAP_PASSWORD"' if connector == "corp"
              else 'token = "env:APP_SCIM_TOKEN"')

    def with_ca(path: str) -> str:
        return GOOD.replace(anchor, f'{anchor}\nca_file = "{path}"')

    missing = error_of(tmp_path, with_ca(str(tmp_path / "nope.pem")))
    assert f"connectors.{connector}.ca_file" in missing and "not found" in missing
    (tmp_path / "ca.der").write_bytes(b"\x30\x82\x01\x0a" + bytes(200))
    binary = error_of(tmp_path, with_ca(str(tmp_path / "ca.der")))
    assert f"connectors.{connector}.ca_file" in binary and "no PEM certificate" in binary
    (tmp_path / "fake.pem").write_text("-----BEGIN CERTIFICATE-----\nnope\n"
                                       "-----END CERTIFICATE-----\n")
    fake = error_of(tmp_path, with_ca(str(tmp_path / "fake.pem")))
    assert "no usable PEM certificate" in fake
    assert error_of(tmp_path, with_ca(str(tmp_path))).count("not a regular file") == 1
    cfg = config.load(write(tmp_path, with_ca(certifi.where())))
    assert cfg.connectors[connector].config.ca_file == certifi.where()  # type: ignore[attr-defined]


@pytest.mark.parametrize(("listen", "reason"), [
    ("127.0.0.1:99999", "not a number from 1 to 65535"),
    ("127.0.0.1:0", "not a number from 1 to 65535"),
    ("9464", "use host:port"),
    ("::1:9464", "IPv6 address goes in brackets"),
    ("[nope]:9464", "not a bracketed IPv6 address"),
    ("bad host!:9464", "neither an IP address nor a host name"),
    ("-x.example.com:9464", "neither an IP address nor a host name"),
])
def test_metrics_listen_is_checked_at_load(tmp_path: Path, listen: str, reason: str) -> None:
    text = GOOD + f'\n[metrics]\nlisten = "{listen}"\n'
    msg = error_of(tmp_path, text)
    assert "metrics.listen" in msg and reason in msg
    res = CliRunner().invoke(main, ["validate", "--config", str(write(tmp_path, text))])
    assert res.exit_code == 2 and "metrics.listen" in res.stderr


def test_good_listen_addresses_load_and_a_bad_port_does_not(tmp_path: Path) -> None:
    for listen in ("127.0.0.1:9464", "[::1]:9464", "localhost:9464", "metrics.example.com:80"):
        cfg = config.load(write(tmp_path, GOOD + f'\n[metrics]\nlisten = "{listen}"\n'))
        assert cfg.metrics.listen == listen
    assert "metrics.listen" in error_of(tmp_path, GOOD + '\n[metrics]\nlisten = "h:65536"\n')


def test_cron_sunday_is_0_and_7_like_crontab(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from syncd.daemon.service import trigger_for

    for cron in ("0 0 * * 0", "0 0 * * 7", "0 0 * * sun"):
        text = GOOD + f'\n[flows.corp-to-app.schedule]\ncron = "{cron}"\n'
        schedule = config.load(write(tmp_path, text)).flows["corp-to-app"].schedule
        trigger = trigger_for(schedule)
        start = datetime(2024, 1, 3, 12, tzinfo=UTC)  # a Wednesday
        fires = []
        for _ in range(3):
            nxt = trigger.get_next_fire_time(None, start)
            assert nxt is not None
            fires.append(nxt)
            start = nxt.replace(hour=1)
        assert [f.weekday() for f in fires] == [6, 6, 6], cron  # Sundays only
        assert [(f.day, f.hour, f.minute) for f in fires] == [(7, 0, 0), (14, 0, 0),
                                                              (21, 0, 0)], cron


@pytest.mark.parametrize(("cron", "reason"), [
    ("61 0 * * *", "61"),
    ("0 0 * * 8", "day of week"),
    ("0 0 * *", "expected 5 fields"),
    ("0 0 32 * *", "32"),
])
def test_bad_cron_names_the_flows_schedule_cron(tmp_path: Path, cron: str, reason: str) -> None:
    msg = error_of(tmp_path, GOOD + f'\n[flows.corp-to-app.schedule]\ncron = "{cron}"\n')
    assert "flows.corp-to-app.schedule.cron" in msg and reason in msg


def test_state_password_is_a_secret_reference(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASS", "pg-Secret-1")
    url = "postgresql+psycopg://syncd@127.0.0.1:5432/syncd"
    text = GOOD.replace('url = "sqlite:///{state}"', f'url = "{url}"\npassword = "env:PGPASS"')
    cfg = config.load(write(tmp_path, text))
    assert cfg.state_url == url and "pg-Secret-1" not in repr(cfg)
    assert cfg.state_url.secret.get_secret_value() == "pg-Secret-1"  # type: ignore[attr-defined]
    (tmp_path / "pw").write_text("from-file\n")
    cfg = config.load(write(tmp_path, text.replace("env:PGPASS", f"file:{tmp_path / 'pw'}")))
    assert cfg.state_url.secret.get_secret_value() == "from-file"  # type: ignore[attr-defined]
    monkeypatch.delenv("PGPASS")
    msg = error_of(tmp_path, text)
    assert "state.password" in msg and "PGPASS" in msg


@pytest.mark.parametrize(("url", "reason"), [
    ("sqlite:///{state}", "SQLite has no password"),
    ("postgresql+psycopg://syncd:inline@127.0.0.1/syncd", "already holds a password"),
])
def test_state_password_misuse_is_a_config_error(tmp_path: Path, url: str, reason: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASS", "pg-Secret-1")
    text = GOOD.replace('url = "sqlite:///{state}"', f'url = "{url}"\npassword = "env:PGPASS"')
    msg = error_of(tmp_path, text)
    assert "state" in msg and reason in msg and "pg-Secret-1" not in msg and "inline" not in msg


def test_validate_checks_the_sqlite_store_offline(tmp_path: Path) -> None:
    (tmp_path / "s.db").write_bytes(b"not a database at all, just text" * 10)
    res = CliRunner().invoke(main, ["validate", "--config", str(write(tmp_path, GOOD))])
    assert res.exit_code == 1 and "not an SQLite database" in res.stderr
    (tmp_path / "s.db").unlink()
    (tmp_path / "file").write_text("")
    text = GOOD.replace('url = "sqlite:///{state}"',
                        f'url = "sqlite:///{tmp_path / "file" / "sub" / "s.db"}"')
    res = CliRunner().invoke(main, ["validate", "--config", str(write(tmp_path, text))])
    assert res.exit_code == 1 and "is not a directory" in res.stderr


@pytest.mark.parametrize(("typo", "where", "meant"), [
    ('deprovision = "disable"', 'deprovison = "disable"', "deprovision"),
    ('match = ["userName"]', 'match = ["userName"]\n[flows.corp-to-app.safety]\n'
                             'max_deprovisons = 3', "max_deprovision"),
    ('bind_password = "env:CORP_LDAP_PASSWORD"', 'bind_pasword = "env:CORP_LDAP_PASSWORD"',
     "bind_password"),
    ('[state]\nurl', '[state]\nurll = "x"\nurl', "url"),
    ('users = {{ base = "ou=people,dc=example,dc=org",', 'users = {{ bse = "x", '
     'base = "ou=people,dc=example,dc=org",', "base"),
])
def test_unknown_key_suggests_the_known_one(tmp_path: Path, typo: str, where: str,
                                             meant: str) -> None:
    msg = error_of(tmp_path, GOOD.replace(typo, where, 1))
    assert f"unknown key (did you mean {meant!r}?)" in msg, msg


def test_unknown_key_far_from_any_suggests_nothing(tmp_path: Path) -> None:
    msg = error_of(tmp_path, GOOD.replace('deprovision = "disable"', 'zzzqqq = 1', 1))
    assert "flows.corp-to-app.zzzqqq: unknown key" in msg and "did you mean" not in msg
