"""`syncd test-mapping` (offline mapping and scope check) and `syncd daemon`'s exit on a bad
config, through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from syncd.cli.main import main

CONFIG = """
[connectors.src]
type = "memory"
directory = "tm-src"
[connectors.dst]
type = "memory"
directory = "tm-dst"
[flows.f]
source = "src"
target = "dst"
[flows.f.users.mapping]
userName = { from = "uid", transform = ["lower"] }
displayName = "{givenName} {sn}"
title = { from = "title", on_empty = "keep" }
"emails.work" = { from = "mail", multi = true }
active = { from = "enabled", transform = ["bool"] }
[[flows.f.users.scope]]
attribute = "employeeType"
in = ["staff", "contractor"]
[flows.f.groups.mapping]
displayName = "cn"
"""


def setup(tmp: Path, entry: object) -> tuple[Path, Path]:
    cfg = tmp / "syncd.toml"
    cfg.write_text(CONFIG)
    inp = tmp / "entry.json"
    inp.write_text(json.dumps(entry))
    return cfg, inp


ANN = {"uid": "Ann", "givenName": "Ann", "sn": "Lee", "mail": ["a@example.com", "b@example.com"],
       "employeeType": "staff", "enabled": True, "street": "nowhere"}


def test_json_output_shows_rules_results_and_scope(tmp_path: Path) -> None:
    cfg, inp = setup(tmp_path, ANN)
    res = CliRunner().invoke(main, ["test-mapping", "--config", str(cfg), "--flow", "f",
                                    "--input", str(inp), "--output", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["in_scope"] is True and doc["held"] is None
    attrs = doc["attributes"]
    assert attrs["userName"]["result"] == "ann" and "lower" in attrs["userName"]["rule"]
    assert attrs["displayName"]["result"] == "Ann Lee"
    assert attrs["emails.work"]["result"] == ["a@example.com", "b@example.com"]
    assert attrs["title"] == {"rule": attrs["title"]["rule"], "result": None,
                              "managed": False, "error": None,
                              "steps": [["read title", []]]}
    assert attrs["active"]["result"] is True
    assert attrs["userName"]["steps"] == [["read uid", ["Ann"]], ["lower", ["ann"]]]
    assert doc["unused_attributes"] == ["street"]


def test_text_output_and_out_of_scope(tmp_path: Path) -> None:
    cfg, inp = setup(tmp_path, {**ANN, "employeeType": "robot"})
    res = CliRunner().invoke(main, ["test-mapping", "-c", str(cfg), "--flow", "f",
                                    "--input", str(inp)])
    assert res.exit_code == 0, res.output
    assert "in scope: NO" in res.stdout
    assert "userName" in res.stdout and '"ann"' in res.stdout
    assert "not managed for this entry" in res.stdout


def test_group_kind_and_stdin(tmp_path: Path) -> None:
    cfg, _ = setup(tmp_path, {})
    res = CliRunner().invoke(main, ["test-mapping", "-c", str(cfg), "--flow", "f", "--kind",
                                    "group", "--input", "-", "-o", "json"],
                             input=json.dumps({"cn": "staff"}))
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["attributes"]["displayName"]["result"] == "staff"


def test_mapping_error_is_shown_as_held(tmp_path: Path) -> None:
    cfg, inp = setup(tmp_path, {**ANN, "enabled": "maybe"})
    res = CliRunner().invoke(main, ["test-mapping", "-c", str(cfg), "--flow", "f",
                                    "--input", str(inp), "-o", "json"])
    assert res.exit_code == 1, res.output  # held: a script can tell
    doc = json.loads(res.stdout)
    assert doc["attributes"]["active"]["error"]
    assert doc["held"] and "active" in doc["held"]
    text = CliRunner().invoke(main, ["test-mapping", "-c", str(cfg), "--input", str(inp)])
    assert text.exit_code == 1 and "entry would be HELD" in text.stdout  # one flow: no --flow


def test_bad_flow_kind_or_input_is_exit_2(tmp_path: Path) -> None:
    cfg, inp = setup(tmp_path, ANN)
    runner = CliRunner()
    assert runner.invoke(main, ["test-mapping", "-c", str(cfg), "--flow", "nope",
                                "--input", str(inp)]).exit_code == 2
    (tmp_path / "bad.json").write_text("[1, 2]")
    assert runner.invoke(main, ["test-mapping", "-c", str(cfg), "--flow", "f",
                                "--input", str(tmp_path / "bad.json")]).exit_code == 2
    (tmp_path / "bad.json").write_text("{not json")
    assert runner.invoke(main, ["test-mapping", "-c", str(cfg), "--flow", "f",
                                "--input", str(tmp_path / "bad.json")]).exit_code == 2


def test_daemon_refuses_an_invalid_config_with_exit_2(tmp_path: Path) -> None:
    cfg = tmp_path / "syncd.toml"
    cfg.write_text(CONFIG + '\n[flows.f.schedule]\ninterval = "soon"\n')
    res = CliRunner().invoke(main, ["daemon", "--config", str(cfg)])
    assert res.exit_code == 2
    assert "flows.f.schedule.interval" in res.stderr
