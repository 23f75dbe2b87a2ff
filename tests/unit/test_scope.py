"""Scope conditions over raw source attributes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.errors import ConfigError
from syncd.mapping.scope import Scope
from syncd.model import RawAttrs

WHERE = "syncd.toml: flows.hr.scope"


def holds(cond: dict[str, Any], raw: RawAttrs) -> bool:
    return Scope.from_config([cond], WHERE).contains(raw)


def config_error(items: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        Scope.from_config(items, WHERE)
    return info.value


def test_everything() -> None:
    for scope in (Scope.everything(), Scope.from_config([], WHERE),
                  Scope.from_config(None, WHERE)):
        assert scope.is_everything
        assert scope.contains({})
        assert scope.source_attributes() == frozenset()
        assert str(scope) == "everything"


def test_equals_is_case_insensitive_by_default() -> None:
    cond = {"attribute": "employeeType", "equals": "Staff"}
    assert holds(cond, {"employeetype": ("staff",)})
    assert holds(cond, {"employeetype": ("STAFF",)})
    assert not holds(cond, {"employeetype": ("contractor",)})
    assert not holds(cond, {})


def test_equals_non_ascii_case_folding() -> None:
    assert holds({"attribute": "o", "equals": "STRASSE"}, {"o": ("straße",)})
    assert holds({"attribute": "o", "equals": "Ærø"}, {"o": ("ÆRØ",)})


def test_case_sensitive() -> None:
    cond = {"attribute": "employeeType", "equals": "Staff", "case_sensitive": True}
    assert holds(cond, {"employeetype": ("Staff",)})
    assert not holds(cond, {"employeetype": ("staff",)})
    rx = {"attribute": "cn", "matches": "^J", "case_sensitive": True}
    assert holds(rx, {"cn": ("Jane",)})
    assert not holds(rx, {"cn": ("jane",)})


def test_equals_integer() -> None:
    assert holds({"attribute": "uidNumber", "equals": 1000}, {"uidnumber": ("1000",)})


def test_in() -> None:
    cond = {"attribute": "employeeType", "in": ["staff", "Contractor"]}
    assert holds(cond, {"employeetype": ("contractor",)})
    assert holds(cond, {"employeetype": ("STAFF",)})
    assert not holds(cond, {"employeetype": ("intern",)})


def test_matches_uses_search_and_ignores_case() -> None:
    cond = {"attribute": "memberOf", "matches": "cn=sync-users,"}
    assert holds(cond, {"memberof": ("CN=Sync-Users,OU=Groups,DC=corp",)})
    assert not holds(cond, {"memberof": ("CN=Other,OU=Groups,DC=corp",)})
    cond = {"attribute": "mail", "matches": "@corp\\.example$"}
    assert holds(cond, {"mail": ("a@corp.example",)})


def test_present() -> None:
    assert holds({"attribute": "mail", "present": True}, {"mail": ("a@x",)})
    assert not holds({"attribute": "mail", "present": True}, {})
    assert not holds({"attribute": "mail", "present": True}, {"mail": ("",)})
    assert holds({"attribute": "mail", "present": False}, {})
    assert not holds({"attribute": "mail", "present": False}, {"mail": ("a@x",)})


def test_multi_valued_matches_if_any_value_matches() -> None:
    raw = {"memberof": ("cn=a,dc=x", "cn=b,dc=x")}
    assert holds({"attribute": "memberOf", "equals": "cn=b,dc=x"}, raw)
    assert holds({"attribute": "memberOf", "in": ["cn=z", "cn=a,dc=x"]}, raw)
    assert holds({"attribute": "memberOf", "matches": "^cn=b"}, raw)
    assert not holds({"attribute": "memberOf", "equals": "cn=c,dc=x"}, raw)


def test_not_negates_the_whole_condition() -> None:
    raw = {"memberof": ("cn=a,dc=x", "cn=disabled,dc=x")}
    # "not equals" means no value equals, not "some value differs".
    assert not holds({"attribute": "memberOf", "equals": "cn=disabled,dc=x", "not": True}, raw)
    assert holds({"attribute": "memberOf", "equals": "cn=c,dc=x", "not": True}, raw)
    assert holds({"attribute": "memberOf", "equals": "x", "not": True}, {})
    assert not holds({"attribute": "mail", "present": True, "not": True}, {"mail": ("a",)})
    assert holds({"attribute": "memberOf", "matches": "disabled", "not": False}, raw)
    assert not holds({"attribute": "memberOf", "matches": "disabled", "not": True}, raw)
    assert not holds({"attribute": "t", "in": ["a", "b"], "not": True}, {"t": ("A",)})


def test_conditions_are_anded() -> None:
    scope = Scope.from_config(
        [
            {"attribute": "employeeType", "in": ["staff", "contractor"]},
            {"attribute": "mail", "present": True},
            {"attribute": "memberOf", "matches": "cn=disabled", "not": True},
        ],
        WHERE,
    )
    ok = {"employeetype": ("staff",), "mail": ("a@x",), "memberof": ("cn=all",)}
    assert scope.contains(ok)
    assert not scope.contains({**ok, "mail": ()})
    assert not scope.contains({**ok, "employeetype": ("intern",)})
    assert not scope.contains({**ok, "memberof": ("cn=all", "CN=Disabled,dc=x")})
    assert scope.source_attributes() == frozenset({"employeetype", "mail", "memberof"})
    assert "not (memberof matches 'cn=disabled')" in str(scope)


def test_attribute_name_is_case_insensitive() -> None:
    assert holds({"attribute": "EmployeeType", "equals": "x"}, {"employeetype": ("x",)})
    assert Scope.from_config([{"attribute": "MAIL", "present": True}], WHERE
                             ).source_attributes() == frozenset({"mail"})


# --- config errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cond", "key", "fragment"),
    [
        ({"attribute": "a"}, "attribute", "needs exactly one of equals, in, matches, present, "
                                          "contains"),
        ({"attribute": "a", "equals": "x", "in": ["y"]}, "in", "got equals, in"),
        ({"attribute": "a", "matches": "x", "present": True}, "present", "got matches, present"),
        ({"equals": "x"}, "attribute", "required"),
        ({"attribute": "a b", "equals": "x"}, "attribute", "is not an attribute name"),
        ({"attribute": 3, "equals": "x"}, "attribute", "valid string"),
        ({"attribute": "a", "equal": "x"}, "equal", "unknown key (did you mean 'equals'?)"),
        ({"attribute": "a", "matches": "("}, "matches", "invalid regex '('"),
        ({"attribute": "a", "in": "x"}, "in", "expected a list of strings or integers"),
        ({"attribute": "a", "in": []}, "in", "at least 1 item"),
        ({"attribute": "a", "in": ["x", 1.5]}, "in[1]", "expected a string or integer (got 1.5)"),
        ({"attribute": "a", "equals": 1.5}, "equals", "expected a string, boolean or integer"),
        ({"attribute": "a", "present": "yes"}, "present", "valid boolean"),
        ({"attribute": "a", "equals": "x", "not": "yes"}, "not", "valid boolean"),
        ({"attribute": "a", "equals": "x", "case_sensitive": 1}, "case_sensitive",
         "valid boolean"),
    ],
)
def test_config_errors_name_index_and_key(cond: dict[str, Any], key: str, fragment: str) -> None:
    err = config_error([{"attribute": "ok", "present": True}, cond])
    assert err.where == f"{WHERE}[1].{key}"
    assert fragment in str(err)


def test_condition_must_be_a_table() -> None:
    err = config_error(["mail"])
    assert err.where == f"{WHERE}[0]"
    assert "a condition is a table" in str(err)


@pytest.mark.parametrize("items", ["mail", {"attribute": "mail", "present": True}, 3])
def test_scope_must_be_a_list(items: Any) -> None:
    err = config_error(items)
    assert err.where == WHERE
    assert "expected a list of condition tables" in str(err)


CONDITION = st.fixed_dictionaries(
    {"attribute": st.sampled_from(["title", "dept"])},
    optional={"not": st.booleans()},
).flatmap(lambda base: st.one_of(
    st.builds(lambda v: {**base, "equals": v}, st.sampled_from(["a", "B", "c"])),
    st.builds(lambda vs: {**base, "in": vs}, st.lists(st.sampled_from(["a", "b", "C"]),
                                                      min_size=1, max_size=3)),
    st.builds(lambda p: {**base, "present": p}, st.booleans()),
))
RAW = st.fixed_dictionaries({}, optional={
    "title": st.lists(st.sampled_from(["a", "b", "c", ""]), max_size=2).map(tuple),
    "dept": st.lists(st.sampled_from(["a", "B", ""]), max_size=2).map(tuple)})


@settings(max_examples=300, deadline=None)
@given(items=st.lists(CONDITION, max_size=3), raw=RAW)
def test_failing_names_a_failed_condition_exactly_when_out_of_scope(
        items: list[dict[str, Any]], raw: RawAttrs) -> None:
    """What a plan says about an entry that left the scope agrees with the scope itself:
    a reason exactly when the entry is out, and it is the first condition that fails."""
    scope = Scope.from_config(items, "t")
    reason = scope.failing(raw)
    assert (reason is None) == scope.contains(raw)
    if reason is not None:
        first = next(c for c in scope.conditions if not c.holds(raw))
        assert reason == first.why_not()
        assert ("which the scope excludes" in reason) == first.negate
