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


PLAN_CONFIG = """
[state]
url = "sqlite:///{state}"
[connectors.src]
type = "memory"
directory = "{src}"
[connectors.dst]
type = "memory"
directory = "{dst}"
[flows.f]
source = "src"
target = "dst"
deprovision = "disable"
[flows.f.safety]
max_deprovision_percent = 100
max_member_removal_percent = 100
max_rewrite_percent = 100
[[flows.f.users.scope]]
attribute = "title"
equals = "gone"
not = true
[flows.f.users.mapping]
userName = "uid"
title = "title"
[flows.f.groups.mapping]
displayName = "cn"
"""


def test_plans_read_well(tmp_path: Path) -> None:
    """Names for members an incremental cycle did not read, why each deprovisioning happens,
    a summary per operation and attribute, and --detailed-exitcode."""
    from syncd.testing import DIRECTORIES, directory

    src = directory("plans-src")
    try:
        for i in range(30):
            src.put("user", {"uid": f"u{i}", "title": "t"}, f"s{i}")
        src.put("group", {"cn": "g"}, "g1")
        src.set_group_members("g1", {"s0", "s1"})
        cfg = tmp_path / "c.toml"
        cfg.write_text(PLAN_CONFIG.format(state=tmp_path / "s.db", src="plans-src",
                                          dst="plans-dst"))
        assert cli("run", "--config", str(cfg))[0] == 0
        code, out, _ = cli("run", "--dry-run", "--detailed-exitcode", "--config", str(cfg))
        assert code == 0, out  # in sync: 0 even with --detailed-exitcode
        src.put("user", {"uid": "u1", "title": "gone"}, "s1")  # leaves the scope
        src.remove("user", "s2")  # deleted
        src.set_group_members("g1", {"s0", "s1", "s3"})
        for i in range(4, 30):
            src.put("user", {"uid": f"u{i}", "title": "senior"}, f"s{i}")
        code, out, err = cli("run", "--dry-run", "--detailed-exitcode", "--config", str(cfg))
        assert code == 4, (out, err)
        line = next(x for x in out.splitlines() if "deprovision user u1" in x)
        assert "(left the scope: title equals ['gone'], which the scope excludes)" in line
        line = next(x for x in out.splitlines() if "deprovision user u2" in x)
        assert "deleted in the source" in line
        assert "by operation and attribute:" in out
        assert "26 update user: title 26" in out
        members = next(x for x in out.splitlines() if "members add:" in x)
        assert "u3" in members and "s3" not in members  # s3 was not read this cycle
        code, out, _ = cli("run", "--dry-run", "-o", "json", "--config", str(cfg))
        assert json.loads(out)["flows"][0]["member_names"]["s3"] == "u3"
    finally:
        DIRECTORIES.pop("plans-src", None)
        DIRECTORIES.pop("plans-dst", None)
