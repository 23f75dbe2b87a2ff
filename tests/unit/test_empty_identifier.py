"""A mapping that yields an empty identifier (a user's userName, a group's displayName) holds
that entry at plan time with the reason, instead of sending a nameless create; the rest of the
flow goes on, and `test-mapping` / `explain` say the same."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from syncd.cli.main import main
from syncd.testing import DIRECTORIES, directory

CONFIG = """
[state]
url = "sqlite:///{state}"
[connectors.src]
type = "memory"
directory = "ei-src"
[connectors.dst]
type = "memory"
directory = "ei-dst"
[flows.f]
source = "src"
target = "dst"
[flows.f.users.mapping]
userName = { from = "uid", transform = [{ replace = { pattern = "^svc-.*", with = "" } }] }
[flows.f.groups.mapping]
displayName = { if = { attribute = "cn", present = true }, then = { from = "cn" } }
"""


def test_empty_identifiers_are_held_with_the_rule(tmp_path: Path) -> None:
    src, dst = directory("ei-src"), directory("ei-dst")
    try:
        src.put("user", {"uid": "ann"}, "u1")
        src.put("user", {"uid": "svc-backup"}, "u2")
        src.put("group", {"description": "no name"}, "g1")
        src.put("group", {"cn": "staff"}, "g2")
        cfg = tmp_path / "c.toml"
        cfg.write_text(CONFIG.replace("{state}", str(tmp_path / "s.db")))
        res = CliRunner().invoke(main, ["run", "-c", str(cfg), "-o", "json"])
        assert res.exit_code == 0, res.output
        doc = json.loads(res.stdout)
        held = {h["source_id"]: h["reason"] for f in doc["flows"] for h in f["held"]}
        assert set(held) == {"u2", "g1"}
        assert "mapping 'userName'" in held["u2"] and "a user needs one" in held["u2"]
        assert "replace" in held["u2"]
        assert "mapping 'displayName'" in held["g1"] and "a group needs one" in held["g1"]
        assert sorted(u["userName"] for u in dst.objects["user"].values()) == ["ann"]
        assert sorted(g["displayName"] for g in dst.objects["group"].values()) == ["staff"]

        entry = tmp_path / "e.json"
        entry.write_text(json.dumps({"uid": "svc-x"}))
        res = CliRunner().invoke(main, ["test-mapping", "-c", str(cfg), "--input", str(entry)])
        assert res.exit_code == 1
        assert "entry would be HELD: mapping 'userName'" in res.output
    finally:
        DIRECTORIES.pop("ei-src", None)
        DIRECTORIES.pop("ei-dst", None)
