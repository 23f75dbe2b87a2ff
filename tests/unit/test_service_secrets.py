"""The service's own secrets ([serve] tokens, [alerts] headers) are resolved only by the
commands that are the service (daemon, serve): an admin's shell runs `syncd run`, `plan`
and `explain` without the service's credentials."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from syncd.cli.main import main
from syncd.config import load
from syncd.errors import ConfigError
from syncd.testing import DIRECTORIES, directory

CONFIG = """
[state]
url = "sqlite:///{state}"
[connectors.inbox]
type = "scim_inbox"
[connectors.src]
type = "memory"
directory = "ss-src"
[connectors.dst]
type = "memory"
directory = "ss-dst"
[serve]
listen = "127.0.0.1:8443"
tokens = ["env:SYNCD_TEST_UNSET_SERVE_TOKEN"]
directory = "inbox"
[flows.f]
source = "src"
target = "dst"
[flows.f.users.mapping]
userName = "uid"
"""


def test_run_needs_no_serve_token_the_service_does(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYNCD_TEST_UNSET_SERVE_TOKEN", raising=False)
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG.format(state=tmp_path / "s.db"))
    directory("ss-src").put("user", {"uid": "ann"}, "s1")
    try:
        for args in (["run"], ["run", "--dry-run"], ["explain", "ann"]):
            res = CliRunner().invoke(main, [args[0], "-c", str(cfg), *args[1:]])
            assert res.exit_code == 0, (args, res.output)
        with pytest.raises(ConfigError, match=r"serve.tokens\[0\].*SYNCD_TEST_UNSET"):
            load(cfg, service=True)
    finally:
        DIRECTORIES.pop("ss-src", None)
        DIRECTORIES.pop("ss-dst", None)
