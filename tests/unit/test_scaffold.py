"""`syncd init` (a commented config per source/target pair) and `syncd config-schema` (its
JSON Schema for editors): every written config loads, and the schema accepts exactly the
shapes syncd accepts — checked with a real JSON Schema validator."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from syncd import config
from syncd.cli.main import main
from syncd.cli.scaffold import EXAMPLES


def cli(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(main, list(args))
    return res.exit_code, res.stdout, res.stderr


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    code, out, err = cli("config-schema")
    assert code == 0, err
    schema = json.loads(out)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize(("source", "target", "two_way"), sorted(EXAMPLES))
def test_init_writes_a_config_that_loads_and_fits_the_schema(
        tmp_path: Path, source: str, target: str, two_way: bool,
        validator: jsonschema.Draft202012Validator) -> None:
    out = tmp_path / "syncd.toml"
    args = ["init", "--source", source, "--target", target, "--out", str(out)]
    code, _text, err = cli(*args, *(["--two-way"] if two_way else []))
    assert code == 0, err
    cfg = config.load(out, secrets=False)  # no secrets needed to check the shape
    assert cfg.flows
    assert list(validator.iter_errors(tomllib.loads(out.read_text()))) == []
    code, _text, err = cli(*args, *(["--two-way"] if two_way else []))
    assert code == 2 and "not overwritten" in err


def test_the_schema_rejects_what_load_rejects(tmp_path: Path,
                                              validator: jsonschema.Draft202012Validator
                                              ) -> None:
    doc = tomllib.loads(cli("init")[1])
    for path, bad in ((("flows", "corp-to-app", "deprovison"), "delete"),
                      (("connectors", "corp", "bind_pasword"), "x"),
                      (("flows", "corp-to-app", "safety", "max_deprovision"), -1),
                      (("state", "url"), 3)):
        broken = json.loads(json.dumps(doc))
        node = broken
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = bad
        assert list(validator.iter_errors(broken)), path


def test_init_names_the_pairs_it_knows() -> None:
    code, _out, err = cli("init", "--source", "graph", "--target", "graph")
    assert code == 2 and "ldap -> scim" in err
