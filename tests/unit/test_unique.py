"""Unique values: a ``unique`` rule's first candidate nobody holds (on the target, in the
links, earlier in the same plan), chosen once at create and never renamed afterwards; a
unique path cannot be a match key; adopting never forces an on_create value."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.cli.main import main
from syncd.config import load
from syncd.errors import ConfigError
from syncd.mapping.attributes import Mapping
from syncd.mapping.rules import MappingError, compile_rule
from syncd.testing import DIRECTORIES, directory

WHERE = "syncd.toml: flows.f.users.mapping"
RULE = {"unique": ["{givenName}.{sn}", "{givenName}.{sn}{n}"], "transform": ["ascii", "lower"],
        "unique_limit": 5}

CONFIG = """
[state]
url = "sqlite:///{state}"
[connectors.src]
type = "memory"
directory = "uq-src"
[connectors.dst]
type = "memory"
directory = "uq-dst"
[flows.f]
source = "src"
target = "dst"
match = ["externalId"]
[flows.f.users.mapping]
externalId = "id"
displayName = "{givenName} {sn}"
[flows.f.users.mapping.userName]
unique = ["{givenName}.{sn}", "{givenName}.{sn}{n}"]
transform = ["ascii", "lower"]
unique_limit = 3
"""


def test_candidates_in_order_through_the_transforms() -> None:
    rule = compile_rule("userName", RULE, WHERE)
    raw = {"givenname": ("Zoë",), "sn": ("Ångström",)}
    assert list(rule.candidates(raw)) == ["zoe.angstrom", "zoe.angstrom1", "zoe.angstrom2",
                                          "zoe.angstrom3", "zoe.angstrom4", "zoe.angstrom5"]
    assert rule.evaluate(raw) == "zoe.angstrom"
    assert rule.apply == "on_create"
    assert rule.source_attributes() == {"givenname", "sn"}
    m = Mapping.from_config({"userName": RULE}, WHERE)
    assert m.unique_attributes == ("givenname", "sn")
    assert m.on_create_only == {"userName"}


@pytest.mark.parametrize(("rule", "message"), [
    ({**RULE, "apply": "always"}, "chosen once, when syncd creates"),
    ({**RULE, "multi": True}, "chosen once"),
    ({"unique": ["a"], "unique_limit": 0}, "unique_limit"),
    ({"from": "a", "unique_limit": 3}, "unique_limit goes with unique"),
    ({"if": {"attribute": "a", "present": True}, "then": {"unique": ["a"]}},
     "then: unique applies to the whole rule"),
    ({"unique": ["a", True]}, "unique[1]: expected an attribute name"),
    ({"unique": ["a", {"const": True}]}, "unique[0] yields a string but unique[1] yields a"),
])
def test_unique_config_errors(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        compile_rule("userName", rule, WHERE)
    assert message in str(info.value)


def test_a_transform_error_in_a_candidate_names_path_and_value() -> None:
    rule = compile_rule("userName", {"unique": ["{a}"], "transform": [
        {"map": {"values": {"x": "y"}}}]}, WHERE)
    with pytest.raises(MappingError, match="userName"):
        list(rule.candidates({"a": ("zz",)}))


def _flow(tmp: Path, extra: str = "") -> Path:
    cfg = tmp / "c.toml"
    cfg.write_text(CONFIG.replace("{state}", str(tmp / "s.db")) + extra)
    return cfg


def _run(cfg: Path) -> dict[str, Any]:
    res = CliRunner().invoke(main, ["run", "-c", str(cfg), "-o", "json"])
    assert res.exit_code in (0, 4), res.output
    doc: dict[str, Any] = json.loads(res.stdout)["flows"][0]
    return doc


@pytest.fixture
def dirs() -> Any:
    yield directory("uq-src"), directory("uq-dst")
    DIRECTORIES.pop("uq-src", None)
    DIRECTORIES.pop("uq-dst", None)


def _names(dst: Any) -> dict[str, str]:
    return {a["externalId"]: a["userName"] for a in dst.objects["user"].values()
            if "externalId" in a}


def test_free_values_are_chosen_once_and_kept(tmp_path: Path, dirs: Any) -> None:
    src, dst = dirs
    dst.put("user", {"userName": "ann.lee", "displayName": "Ann Lee (someone else)"})
    for i in range(3):
        src.put("user", {"id": f"e{i}", "givenName": "Ann", "sn": "Lee"}, f"s{i}")
    cfg = _flow(tmp_path)
    _run(cfg)
    assert _names(dst) == {"e0": "ann.lee1", "e1": "ann.lee2", "e2": "ann.lee3"}
    again = _run(cfg)
    assert not again["held"] and not any(n for ops in again["summary"].values()
                                         for n in ops.values())
    # the holder of ann.lee leaves and e0's source name changes: nobody is renamed
    dst.objects["user"] = {k: v for k, v in dst.objects["user"].items()
                           if v.get("userName") != "ann.lee"}
    src.objects["user"]["s0"]["sn"] = "Lee-Smith"
    _run(cfg)
    assert _names(dst)["e0"] == "ann.lee1"
    # a fourth Ann Lee gets the freed ann.lee; a fifth finds nothing free and is held
    src.put("user", {"id": "e3", "givenName": "Ann", "sn": "Lee"}, "s3")
    src.put("user", {"id": "e4", "givenName": "Ann", "sn": "Lee"}, "s4")
    doc = _run(cfg)
    assert _names(dst)["e3"] == "ann.lee"
    (hold,) = [h for h in doc["held"] if h["source_id"] == "s4"]
    assert "no free value for userName: all 4 candidates" in hold["reason"]
    assert "e4" not in _names(dst)


def test_a_value_held_by_a_link_is_taken_even_if_the_target_lookup_misses_it(
        tmp_path: Path, dirs: Any) -> None:
    src, dst = dirs
    src.put("user", {"id": "e0", "givenName": "Bo", "sn": "Ek"}, "s0")
    cfg = _flow(tmp_path)
    _run(cfg)
    assert _names(dst) == {"e0": "bo.ek"}
    # the target "forgets" the object for lookups (a lagging index): the link still knows
    for a in dst.objects["user"].values():
        a["userName"] = "BO.EK-hidden"
    src.put("user", {"id": "e1", "givenName": "Bo", "sn": "Ek"}, "s1")
    _run(cfg)
    assert _names(dst)["e1"] == "bo.ek1"


def test_a_unique_path_cannot_be_a_match_key(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG.replace("{state}", str(tmp_path / "s.db")).replace(
        'match = ["externalId"]\n', ""))
    with pytest.raises(ConfigError) as info:
        load(str(cfg), secrets=False)
    assert "match key 'userName' is a unique value" in str(info.value)
    assert "flows.f.match" in str(info.value)


def test_adopting_does_not_force_on_create_values(tmp_path: Path, dirs: Any) -> None:
    src, dst = dirs
    dst.put("user", {"userName": "old.name", "externalId": "e0", "displayName": "x"})
    src.put("user", {"id": "e0", "givenName": "Cy", "sn": "Do"}, "s0")
    doc = _run(_flow(tmp_path))
    assert doc["summary"]["user"]["adopt"] == 1 and doc["summary"]["user"]["create"] == 0
    assert _names(dst) == {"e0": "old.name"}
    assert [a["displayName"] for a in dst.objects["user"].values()] == ["Cy Do"]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from(["ann.lee", "ann.lee1", "ann.lee3", "bo.ek"]), unique=True),
       st.integers(min_value=1, max_value=5))
def test_chosen_values_are_distinct_and_never_held_before(tmp_path_factory: Any,
                                                          taken: list[str], n: int) -> None:
    """For any set of names already on the target and any number of new Ann Lees created in
    one cycle: each gets a different value, none of them one the target held, and each is the
    earliest candidate left (the order is the rule's)."""
    tmp = tmp_path_factory.mktemp("uq")
    src, dst = directory("uq-src"), directory("uq-dst")
    try:
        for t in taken:
            dst.put("user", {"userName": t})
        for i in range(n):
            src.put("user", {"id": f"e{i}", "givenName": "Ann", "sn": "Lee"}, f"s{i}")
        doc = _run(_flow(tmp))
        got = sorted(_names(dst).values())
        order = ["ann.lee", "ann.lee1", "ann.lee2", "ann.lee3"]
        free = [c for c in order if c not in taken]
        assert got == sorted(free[:n])
        assert len(doc["held"]) == max(0, n - len(free))
    finally:
        DIRECTORIES.pop("uq-src", None)
        DIRECTORIES.pop("uq-dst", None)


def test_an_integer_equals_its_text_as_a_target_reads_it_back() -> None:
    from syncd.plan.push import diff, same

    assert same(42, "42") and same("42", 42) and same((" 42",), 42)
    assert not same(42, "42.0") and not same(True, "1") and not same(42, "x")
    assert diff({"n": 7, "b": True}, {"n": "7", "b": True}) == {}
