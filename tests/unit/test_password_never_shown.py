"""A mapped password (an initial password given as a constant) is sent to the target and
shown or kept nowhere: not in plans (text, JSON, saved files), the journal, `syncd log`,
`explain` or `test-mapping`."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from syncd.cli.main import main
from syncd.testing import DIRECTORIES, directory

SECRET = "Init-Pa55-word-7f3"

CONFIG = f"""
[state]
url = "sqlite:///{{state}}"
[connectors.src]
type = "memory"
directory = "pw-src"
[connectors.dst]
type = "memory"
directory = "pw-dst"
[flows.f]
source = "src"
target = "dst"
[flows.f.users.mapping]
userName = "uid"
password = {{ const = "{SECRET}", apply = "on_create" }}
"""


def test_a_mapped_password_is_sent_and_never_shown(tmp_path: Path) -> None:
    src, dst = directory("pw-src"), directory("pw-dst")
    try:
        src.put("user", {"uid": "ann"}, "s1")
        cfg = tmp_path / "c.toml"
        cfg.write_text(CONFIG.replace("{state}", str(tmp_path / "s.db")))
        entry = tmp_path / "e.json"
        entry.write_text(json.dumps({"uid": "ann"}))
        outputs = []
        for args in (["run", "--dry-run"], ["run", "--dry-run", "-o", "json"],
                     ["plan", "--out", str(tmp_path / "p.json")], ["run"],
                     ["log"], ["log", "-o", "json"], ["log", "-o", "csv"],
                     ["explain", "ann"], ["explain", "-o", "json", "ann"],
                     ["test-mapping", "--input", str(entry)],
                     ["test-mapping", "--input", str(entry), "-o", "json"]):
            res = CliRunner().invoke(main, [args[0], "-c", str(cfg), *args[1:]])
            assert res.exit_code == 0, (args, res.output)
            outputs.append(res.output)
        (user,) = dst.objects["user"].values()
        assert user["password"] == SECRET  # sent
        assert [i for i, out in enumerate(outputs) if SECRET in out] == []
        assert SECRET not in (tmp_path / "p.json").read_text()
        assert "[redacted]" in outputs[0]
    finally:
        DIRECTORIES.pop("pw-src", None)
        DIRECTORIES.pop("pw-dst", None)
