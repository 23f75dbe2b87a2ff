"""Conditions (scope and mappings) and the logic expressions: if/then/else, switch, coalesce
over expressions, typed results, and each step shown by ``test-mapping``."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd.errors import ConfigError
from syncd.mapping.attributes import Mapping
from syncd.mapping.conditions import ConditionError, compile_condition
from syncd.mapping.rules import MappingError, compile_rule
from syncd.mapping.scope import Scope
from syncd.model import RawAttrs, Value

WHERE = "syncd.toml: flows.hr.users.mapping"


def one(rule: object, raw: RawAttrs, path: str = "p") -> Value:
    return Mapping.from_config({path: rule}, WHERE).map(raw).get(path)


def config_error(rule: object, path: str = "p") -> str:
    with pytest.raises(ConfigError) as info:
        Mapping.from_config({path: rule}, WHERE)
    return str(info.value)


def cond(table: dict[str, Any], raw: RawAttrs) -> bool:
    return compile_condition(table, "c").holds(raw)


LOCKED = {"any": [{"attribute": "nsAccountLock", "equals": True},
                  {"attribute": "disabled", "equals": True}]}


# --- the new user's job from the issue: active = not (nsAccountLock or disabled) -----------


@pytest.mark.parametrize(("raw", "active"), [
    ({}, True),
    ({"nsaccountlock": ("false",)}, True),           # the value that once came out disabled
    ({"nsaccountlock": ("FALSE",), "disabled": ("FALSE",)}, True),
    ({"nsaccountlock": ("true",)}, False),
    ({"disabled": ("TRUE",)}, False),
    ({"nsaccountlock": ("false",), "disabled": ("yes",)}, False),
])
def test_active_is_not_locked_or_disabled(raw: RawAttrs, active: bool) -> None:
    assert one({"if": {"not": LOCKED}}, raw, "active") is active
    assert one({"if": LOCKED, "then": False, "else": True}, raw, "active") is active


def test_a_boolean_test_over_a_non_boolean_names_attribute_and_value() -> None:
    with pytest.raises(MappingError) as info:
        one({"if": {"not": LOCKED}}, {"nsaccountlock": ("falsefalse",)}, "active")
    text = str(info.value)
    assert "'active'" in text and "nsaccountlock" in text and "'falsefalse'" in text
    assert "not a boolean" in text


def test_string_rule_for_active_is_read_as_boolean_or_held() -> None:
    assert one("enabled", {"enabled": ("TRUE",)}, "active") is True
    assert one("enabled", {"enabled": ("0",)}, "active") is False
    with pytest.raises(MappingError, match=r"'active'.*enabled.*'maybe' is not a boolean"):
        one("enabled", {"enabled": ("maybe",)}, "active")
    assert "active is a boolean; this rule yields an integer" in config_error(5, "active")
    assert "active is a boolean" in config_error({"from": "x", "multi": True}, "active")


# --- tests ---------------------------------------------------------------------------------


def test_comparisons_numeric_and_text() -> None:
    assert cond({"attribute": "n", "gt": 5}, {"n": ("6",)})
    assert not cond({"attribute": "n", "gt": 5}, {"n": ("5",)})
    assert cond({"attribute": "n", "ge": 5}, {"n": ("5",)})
    assert cond({"attribute": "n", "lt": 1.5}, {"n": ("1.25",)})
    assert cond({"attribute": "n", "le": -1}, {"n": (" -1 ",)})
    # text comparison, e.g. generalizedTime
    assert cond({"attribute": "t", "lt": "20270101000000Z"}, {"t": ("20261201120000Z",)})
    with pytest.raises(ConditionError, match=r"n = 'x': is not a number \(gt"):
        cond({"attribute": "n", "gt": 5}, {"n": ("x",)})


def test_bits_for_user_account_control() -> None:
    disabled = {"attribute": "userAccountControl", "bits_any": 2}
    assert cond(disabled, {"useraccountcontrol": ("514",)})
    assert not cond(disabled, {"useraccountcontrol": ("512",)})
    assert cond({"attribute": "uac", "bits_all": 514}, {"uac": ("66050",)})
    assert not cond({"attribute": "uac", "bits_all": 3}, {"uac": ("2",)})
    with pytest.raises(ConditionError, match="not an integer"):
        cond(disabled, {"useraccountcontrol": ("abc",)})
    with pytest.raises(ConfigError, match="positive integer"):
        compile_condition({"attribute": "uac", "bits_any": 0}, "c")


def test_text_tests_and_case() -> None:
    assert cond({"attribute": "mail", "ends_with": "@EXAMPLE.com"}, {"mail": ("a@example.com",)})
    assert cond({"attribute": "cn", "starts_with": "ad"}, {"cn": ("Admin",)})
    assert not cond({"attribute": "cn", "starts_with": "ad", "case_sensitive": True},
                    {"cn": ("Admin",)})
    assert cond({"attribute": "dn", "contains": "OU=Staff"}, {"dn": ("cn=x,ou=staff,dc=y",)})


def test_combinators_and_not_forms() -> None:
    staff = {"attribute": "employeeType", "equals": "staff"}
    sponsored = {"all": [{"attribute": "employeeType", "equals": "contractor"},
                         {"attribute": "sponsor", "present": True}]}
    either = {"any": [staff, sponsored]}
    assert cond(either, {"employeetype": ("staff",)})
    assert cond(either, {"employeetype": ("contractor",), "sponsor": ("x",)})
    assert not cond(either, {"employeetype": ("contractor",)})
    assert cond({"not": either}, {"employeetype": ("contractor",)})
    assert not cond({**staff, "not": True}, {"employeetype": ("staff",)})
    c = compile_condition(either, "c")
    assert c.attributes() == {"employeetype", "sponsor"}
    assert "or" in str(c) and "and" in str(c)


@pytest.mark.parametrize(("table", "message"), [
    ({"any": []}, "c.any: any takes a non-empty list"),
    ({"any": [{"attribute": "a", "present": True}], "attribute": "b"},
     "any = [...] stands alone"),
    ({"not": {"attribute": "a", "present": True}, "attribute": "b"}, "not = { ... } stands"),
    ({"all": [{"attribute": "a", "equal": "x"}]}, "c.all[0].equal: unknown key (did you mean "
                                                  "'equals'?)"),
    ({"attribute": "a", "gt": [1]}, "c.gt: expected a number or string"),
    ({"attribute": "a", "gt": 1, "lt": 2}, "needs exactly one of"),
    ({"any": [{"attribute": "a", "matches": "("}]}, "c.any[0].matches: invalid regex"),
    ("x", "a condition is a table"),
])
def test_condition_config_errors_name_the_key(table: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        compile_condition(table, "c")
    assert message in str(info.value)


def test_scope_takes_combinations_and_holds_the_undecidable() -> None:
    scope = Scope.from_config([{"any": [{"attribute": "employeeType", "equals": "staff"},
                                        {"attribute": "uac", "bits_any": 2, "not": True}]}],
                              "syncd.toml: flows.f.users.scope")
    assert scope.contains({"employeetype": ("staff",)})
    assert scope.contains({"uac": ("512",)})
    assert scope.failing({"uac": ("514",)}) is not None
    assert scope.source_attributes() == {"employeetype", "uac"}
    with pytest.raises(ConditionError):
        scope.contains({"uac": ("junk",)})


# --- if / switch / coalesce -----------------------------------------------------------------


def test_if_then_else_with_values_and_expressions() -> None:
    rule = {"if": {"attribute": "employeeType", "equals": "contractor"},
            "then": {"template": "{givenName} {sn} (contractor)"},
            "else": {"template": "{givenName} {sn}"}}
    raw = {"givenname": ("Ann",), "sn": ("Lee",)}
    assert one(rule, {**raw, "employeetype": ("Contractor",)}) == "Ann Lee (contractor)"
    assert one(rule, raw) == "Ann Lee"
    # a plain string result is a value, not an attribute name
    assert one({"if": {"attribute": "x", "present": True}, "then": "Employee"},
               {"x": ("1",)}) == "Employee"
    # no else: empty, so on_empty decides
    assert one({"if": {"attribute": "x", "present": True}, "then": "E"}, {}) is None
    assert one({"if": {"attribute": "x", "present": True}, "then": "E", "default": "D"},
               {}) == "D"


def test_switch_first_value_with_a_case_wins() -> None:
    rule = {"switch": "objectClass",
            "cases": {"contractor": "Contractor", "employee": "Employee"},
            "default": "Other"}
    assert one(rule, {"objectclass": ("top", "person", "Employee")}) == "Employee"
    assert one(rule, {"objectclass": ("top",)}) == "Other"
    assert one({"switch": "t", "cases": {"A": "x"}, "case_sensitive": True},
               {"t": ("a",)}) is None
    nested = {"switch": "t", "cases": {"a": {"from": "mail", "transform": ["upper"]}}}
    assert one(nested, {"t": ("a",), "mail": ("m@x",)}) == "M@X"


def test_coalesce_over_templates_and_expressions() -> None:
    rule = {"coalesce": ["mail", "{uid}@example.com", {"const": "nobody@example.com"}]}
    assert one(rule, {"mail": ("a@x",), "uid": ("u",)}) == "a@x"
    assert one(rule, {"uid": ("u",)}) == "u@example.com"
    assert one(rule, {}) == "nobody@example.com"


def test_logic_composes_with_transforms() -> None:
    rule = {"if": {"attribute": "mail", "present": True}, "then": {"from": "mail"},
            "else": {"template": "{uid}@example.com"}, "transform": ["lower"]}
    assert one(rule, {"uid": ("JDoe",)}) == "jdoe@example.com"


@pytest.mark.parametrize(("rule", "message"), [
    ({"if": {"attribute": "a", "present": True}, "then": True, "else": "x"},
     "then yields a boolean but else yields a string"),
    ({"switch": "a", "cases": {"x": 1, "y": "z"}}, "cases.x yields an integer but cases.y"),
    ({"switch": "a"}, "switch needs cases"),
    ({"from": "a", "then": "x"}, "then goes with if"),
    ({"from": "a", "cases": {"x": "y"}}, "cases goes with switch"),
    ({"if": {"attribute": "a", "present": True}, "transform": ["lower"]},
     "yields a boolean, which takes no transform"),
    ({"if": {"attribute": "a", "present": True}, "multi": True}, "multi = true needs string"),
    ({"if": {"attribute": "a", "present": True}, "then": {"from": "x", "on_empty": "keep"}},
     "then: on_empty applies to the whole rule"),
    ({"if": {"attribute": "a", "present": True}, "then": {"from": "x", "frm": "y"}},
     "then: unknown key 'frm'"),
    ({"if": {"attribute": "a", "present": True}, "then": {"from": "x",
                                                          "transform": ["nope"]}},
     "then.transform[0]: unknown transform"),
    ({"if": {"attribute": "a", "equls": "x"}}, "mapping.p.if.equls: unknown key"),
    ({"coalesce": ["a", 5]}, "coalesce[1]: expected an attribute name"),
])
def test_logic_config_errors(rule: object, message: str) -> None:
    assert message in config_error(rule)


def test_errors_inside_nested_expressions_name_the_path_and_value() -> None:
    rule = {"if": {"attribute": "x", "present": True},
            "then": {"from": "flag", "transform": ["bool"]}, "else": False}
    with pytest.raises(MappingError) as info:
        one(rule, {"x": ("1",), "flag": ("perhaps",)}, "p")
    assert "'p'" in str(info.value) and "flag" in str(info.value)
    assert "'perhaps'" in str(info.value)


def test_trace_shows_each_step() -> None:
    rule = compile_rule("mail", {"if": {"attribute": "mail", "present": True},
                                 "then": {"from": "mail"},
                                 "else": {"template": "{uid}@example.com"},
                                 "transform": ["lower"]}, WHERE)
    steps, value = rule.trace({"uid": ("JDoe",)})
    assert value == "jdoe@example.com"
    assert [s for s, _ in steps] == ["if mail present: does not hold",
                                     "template '{uid}@example.com'", "lower"]
    assert steps[-1][1] == ("jdoe@example.com",)


def test_attributes_include_conditions_and_branches() -> None:
    m = Mapping.from_config({"p": {"if": {"attribute": "a", "present": True},
                                   "then": {"from": "b"}, "else": {"switch": "c",
                                                                   "cases": {"x": "y"}}}},
                            WHERE)
    assert m.source_attributes() == {"a", "b", "c"}


_value = st.text(alphabet="abcXYZ01 ", max_size=6)
_raw = st.dictionaries(st.sampled_from(["a", "b"]), st.lists(_value, max_size=3).map(tuple),
                       max_size=2)
_leaf = st.builds(lambda attr, op, v: {"attribute": attr, op: v},
                  st.sampled_from(["a", "b"]), st.sampled_from(["equals", "contains"]),
                  st.text(alphabet="abcXYZ01", min_size=1, max_size=3))
_conds = st.recursive(_leaf, lambda inner: st.one_of(
    st.lists(inner, min_size=1, max_size=3).map(lambda cs: {"all": cs}),
    st.lists(inner, min_size=1, max_size=3).map(lambda cs: {"any": cs}),
    inner.map(lambda c: {"not": c})), max_leaves=6)


def _truth(c: dict[str, Any], raw: RawAttrs) -> bool:
    """A direct reading of the documented semantics, to check the compiled form against."""
    if "all" in c:
        return all(_truth(x, raw) for x in c["all"])
    if "any" in c:
        return any(_truth(x, raw) for x in c["any"])
    if "not" in c:
        return not _truth(c["not"], raw)
    vals = [v for v in raw.get(c["attribute"], ()) if v]
    if "equals" in c:
        return any(v.casefold() == c["equals"].casefold() for v in vals)
    return any(c["contains"].casefold() in v.casefold() for v in vals)


@given(_conds, _raw)
def test_conditions_follow_boolean_logic(c: dict[str, Any], raw: RawAttrs) -> None:
    compiled = compile_condition(c, "c")
    assert compiled.holds(raw) == _truth(c, raw)
    # as a mapping, the same condition is a boolean with that truth value; and not-ing it flips
    assert one({"if": c}, raw) is _truth(c, raw)
    assert one({"if": {"not": c}}, raw) is (not _truth(c, raw))
    assert one({"if": c, "then": "yes", "else": "no"}, raw) == (
        "yes" if _truth(c, raw) else "no")


def test_a_secret_path_describes_no_value_anywhere_in_its_expression() -> None:
    secret = "Init-Pa55-9z"
    for rule in ({"const": secret},
                 {"if": {"attribute": "x", "present": True}, "then": secret, "else": "y"},
                 {"switch": "t", "cases": {"a": secret}},
                 {"coalesce": ["pw", {"const": secret}]},
                 {"from": "seed", "transform": [{"append": secret}]},
                 {"from": "seed", "on_empty": "default", "default": secret}):
        text = compile_rule("password", rule, WHERE).describe()
        assert secret not in text, (rule, text)
        assert "[redacted]" in text or "append" in text
    assert compile_rule("password", {"from": "seed"}, WHERE).describe() == "from seed"


def test_every_mapping_example_in_the_readme_compiles() -> None:
    """The README's expression examples are real config: each line parses as TOML and
    compiles, so the documentation cannot drift from the grammar."""
    import re
    import tomllib
    from pathlib import Path

    text = (Path(__file__).parents[2] / "README.md").read_text()
    section = text.split("### Mapping", 1)[1].split("## Connectors", 1)[0]
    examples = [m for m in re.findall(r"`([^`]+ = \{[^`]+\})`", section)
                if not m.startswith("{") and "..." not in m]
    assert len(examples) >= 5
    for example in examples:
        table = tomllib.loads(example)
        Mapping.from_config(table, WHERE)
