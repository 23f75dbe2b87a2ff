"""Mapping and transforms: every rule form, every transform, every config error."""

from __future__ import annotations

from typing import Any

import pytest

from syncd.errors import ConfigError, Rejected
from syncd.mapping import transforms
from syncd.mapping.attributes import Explained, Mapping
from syncd.mapping.rules import MappingError
from syncd.model import RawAttrs, Value

WHERE = "syncd.toml: flows.hr.mapping.user"


def one(rule: object, raw: RawAttrs, path: str = "p") -> dict[str, Value]:
    return Mapping.from_config({path: rule}, WHERE).map(raw)


def config_error(table: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        Mapping.from_config(table, WHERE)
    return info.value


# --- transforms ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "values", "expected"),
    [
        ("lower", ("ÄBC", "Dé"), ("äbc", "dé")),
        ("upper", ("straße", "x"), ("STRASSE", "X")),
        ("trim", ("  a ", "   ", "b"), ("a", "b")),
        ("first", ("a", "b"), ("a",)),
        ("first", (), ()),
        ("join", ("a", "b"), ("a b",)),
        ({"join": ", "}, ("a", "b"), ("a, b",)),
        ({"join": {"sep": "-"}}, ("a", "b"), ("a-b",)),
        ({"join": ""}, ("a", "b"), ("ab",)),
        ("join", (), ()),
        ({"split": ","}, ("a,b", "c,,d"), ("a", "b", "c", "d")),
        ({"replace": {"pattern": "^CN=([^,]+),.*$", "with": r"\1"}}, ("CN=Jane,DC=x",),
         ("Jane",)),
        ({"replace": {"pattern": "x", "with": ""}}, ("x", "xa"), ("a",)),
        ({"default": "none"}, (), ("none",)),
        ({"default": "none"}, ("a",), ("a",)),
        ({"default": 0}, (), ("0",)),
    ],
)
def test_transform(spec: object, values: tuple[str, ...], expected: tuple[str, ...]) -> None:
    assert transforms.build(spec, WHERE)(values) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("TRUE", True), ("true", True), ("1", True), ("yes", True), ("Yes", True),
     ("FALSE", False), ("false", False), ("0", False), ("no", False), (" NO ", False)],
)
def test_bool_transform(value: str, expected: bool) -> None:
    assert one({"from": "flag", "transform": ["bool"]}, {"flag": (value,)}) == {"p": expected}


def test_bool_transform_rejects_unknown_value_naming_path_and_attribute() -> None:
    with pytest.raises(MappingError) as info:
        one({"from": "isActive", "transform": ["bool"]}, {"isactive": ("maybe",)}, "active")
    err = info.value
    assert isinstance(err, Rejected)
    assert (err.path, err.attribute) == ("active", "isactive")
    assert "'maybe'" in str(err) and "active" in str(err) and "isactive" in str(err)


def test_bool_of_empty_follows_on_empty() -> None:
    rule = {"from": "flag", "transform": ["bool"], "on_empty": "default", "default": False}
    assert one(rule, {}) == {"p": False}


def test_transforms_apply_in_order() -> None:
    rule = {"from": "mail", "transform": ["trim", {"split": "@"}, "first", "upper"]}
    assert one(rule, {"mail": (" jane@corp.example ",)}) == {"p": "JANE"}


def test_single_transform_spec_without_list() -> None:
    assert one({"from": "uid", "transform": "upper"}, {"uid": ("a",)}) == {"p": "A"}


def test_registry_lists_known_transforms() -> None:
    # the full list is in test_transforms.py, with every transform's own tests
    assert set(transforms.known()) >= {"lower", "upper", "trim", "first", "join", "split",
                                       "replace", "default", "bool"}
    assert set(transforms.describe()) == set(transforms.known())


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("titlecase", "unknown transform 'titlecase'; known: append, ascii, base64"),
        ({"replace": {"pattern": "(", "with": ""}}, "invalid regex '('"),
        ({"replace": {"pattern": "a", "with": r"\2"}}, "invalid replacement"),
        ({"replace": {"pattern": "a"}}, "missing parameter 'with'"),
        ({"replace": "a"}, "needs a table of parameters (pattern, with)"),
        ({"replace": {"pattern": "a", "with": "", "flags": "i"}}, "unknown parameter 'flags'"),
        ("split", "missing parameter 'sep'"),
        ({"split": ""}, "sep must not be empty"),
        ("default", "missing parameter 'value'"),
        ({"lower": True}, "lower takes no parameters"),
        ({"join": True}, "sep must be a string"),
        ({"join": " ", "lower": None}, "a transform is a name"),
        (42, "a transform is a name"),
    ],
)
def test_transform_config_errors(spec: object, fragment: str) -> None:
    err = config_error({"userName": {"from": "uid", "transform": ["trim", spec]}})
    assert err.where == f"{WHERE}.userName"
    assert "transform[1]:" in str(err)
    assert fragment in str(err)


def test_bool_must_be_last() -> None:
    err = config_error({"active": {"from": "flag", "transform": ["bool", "lower"]}})
    assert err.where == f"{WHERE}.active"
    assert "transform[0]: bool must be the last transform" in str(err)


def test_transform_must_be_a_list() -> None:
    err = config_error({"a": {"from": "x", "transform": 3}})
    assert "transform: must be a list" in str(err)


# --- rule forms ----------------------------------------------------------------------------


def test_plain_string_copies_attribute_case_insensitively() -> None:
    assert one("givenName", {"givenname": ("Jane",)}) == {"p": "Jane"}
    assert one({"from": "GIVENNAME"}, {"givenname": ("Jane",)}) == {"p": "Jane"}


def test_non_ascii_values_pass_through() -> None:
    raw = {"cn": ("Zoë Ørsted-Łukasz 山田",)}
    assert one("cn", raw) == {"p": "Zoë Ørsted-Łukasz 山田"}
    assert one({"from": "cn", "transform": ["lower"]}, raw) == {"p": "zoë ørsted-łukasz 山田"}


def test_template() -> None:
    raw = {"givenname": ("Jane",), "sn": ("Doe",)}
    assert one("{givenName} {sn}", raw) == {"p": "Jane Doe"}
    assert one({"template": "{sn}, {givenName}"}, raw) == {"p": "Doe, Jane"}


def test_template_missing_attributes() -> None:
    assert one("{givenName} {sn}", {"sn": ("Doe",)}) == {"p": "Doe"}  # trimmed
    assert one("{givenName}.{sn}@corp.example", {}) == {"p": None}  # all missing: empty
    assert one("{givenName}.{sn}@corp.example", {"sn": ("doe",)}) == {"p": ".doe@corp.example"}


def test_template_uses_first_value_and_escapes_braces() -> None:
    assert one("{{{cn}}}", {"cn": ("a", "b")}) == {"p": "{a}"}
    assert one("{{literal}} {cn}", {"cn": ("x",)}) == {"p": "{literal} x"}


def test_template_with_transform() -> None:
    rule = {"template": "{givenName}.{sn}", "transform": ["lower"]}
    assert one(rule, {"givenname": ("Jane",), "sn": ("Doe",)}) == {"p": "jane.doe"}


def test_coalesce_takes_first_non_empty() -> None:
    rule = {"coalesce": ["mail", "userPrincipalName"]}
    assert one(rule, {"mail": ("",), "userprincipalname": ("j@x",)}) == {"p": "j@x"}
    assert one(rule, {"mail": ("m@x",), "userprincipalname": ("j@x",)}) == {"p": "m@x"}
    assert one(rule, {}) == {"p": None}


def test_coalesce_error_names_the_attribute_that_was_used() -> None:
    rule = {"coalesce": ["a", "b"], "transform": ["bool"]}
    with pytest.raises(MappingError) as info:
        one(rule, {"b": ("perhaps",)})
    assert info.value.attribute == "b"


def test_constants() -> None:
    assert one(True, {}) == {"p": True}
    assert one(False, {}) == {"p": False}
    assert one(7, {}) == {"p": 7}
    assert one({"const": "Employee"}, {}) == {"p": "Employee"}
    assert one({"const": False}, {}) == {"p": False}
    assert one({"const": "a", "transform": ["upper"]}, {}) == {"p": "A"}
    assert one({"const": "a", "multi": True}, {}) == {"p": ("a",)}


def test_multi() -> None:
    raw = {"mail": ("a@x", "b@x")}
    assert one({"from": "mail", "multi": True}, raw) == {"p": ("a@x", "b@x")}
    assert one({"from": "mail"}, raw) == {"p": "a@x"}
    assert one({"from": "mail", "multi": True}, {}) == {"p": None}


def test_on_empty() -> None:
    assert one({"from": "x"}, {}) == {"p": None}
    assert one({"from": "x", "on_empty": "clear"}, {"x": ("",)}) == {"p": None}
    assert one({"from": "x", "on_empty": "keep"}, {}) == {}
    assert one({"from": "x", "on_empty": "keep"}, {"x": ("v",)}) == {"p": "v"}
    assert one({"from": "x", "on_empty": "default", "default": "n/a"}, {}) == {"p": "n/a"}
    assert one({"from": "x", "default": "n/a"}, {}) == {"p": "n/a"}  # on_empty inferred
    rule = {"from": "x", "multi": True, "on_empty": "default", "default": ["a", "b"]}
    assert one(rule, {}) == {"p": ("a", "b")}
    assert one({"from": "x", "multi": True, "default": "a"}, {}) == {"p": ("a",)}


def test_on_empty_after_transform_emptied_the_value() -> None:
    rule = {"from": "x", "transform": ["trim"], "on_empty": "keep"}
    assert one(rule, {"x": ("   ",)}) == {}


def test_apply_on_create() -> None:
    m = Mapping.from_config(
        {"userName": "uid", "password": {"const": "x", "apply": "on_create"},
         "title": {"from": "title", "apply": "always"}},
        WHERE,
    )
    assert m.on_create_only == frozenset({"password"})
    assert m.map({"uid": ("j",)})["password"] == "x"  # the planner decides when it applies


def test_paths_and_source_attributes() -> None:
    m = Mapping.from_config(
        {
            "userName": "UID",
            "displayName": "{givenName} {SN}",
            "emails.work": {"coalesce": ["mail", "userPrincipalName"]},
            "active": True,
            "title": {"const": "x"},
        },
        WHERE,
    )
    assert m.paths == ("userName", "displayName", "emails.work", "active", "title")
    assert m.source_attributes() == frozenset(
        {"uid", "givenname", "sn", "mail", "userprincipalname"})


def test_toml_dotted_keys_are_flattened_into_paths() -> None:
    # TOML `name.givenName = "givenName"` parses to a nested table.
    m = Mapping.from_config(
        {"name": {"givenName": "givenName", "familyName": {"from": "sn"}}}, WHERE)
    assert m.paths == ("name.givenName", "name.familyName")
    assert m.map({"givenname": ("J",), "sn": ("D",)}) == {
        "name.givenName": "J", "name.familyName": "D"}


def test_map_result_is_independent_of_raw_extras() -> None:
    m = Mapping.from_config({"userName": "uid"}, WHERE)
    assert m.map({"uid": ("j",), "other": ("x",)}) == {"userName": "j"}


def test_explain() -> None:
    m = Mapping.from_config(
        {"userName": {"from": "uid", "transform": ["lower"]},
         "title": {"from": "title", "on_empty": "keep"},
         "active": {"from": "flag", "transform": ["bool"]}},
        WHERE,
    )
    out = m.explain({"uid": ("J",), "flag": ("maybe",)})
    assert out["userName"] == Explained("from uid | lower", "j", True,
                                        steps=(("read uid", ("J",)), ("lower", ("j",))))
    assert out["title"].managed is False
    assert out["active"].error is not None and "maybe" in out["active"].error


# --- config errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "fragment"),
    [
        ({"from": "a", "const": "b"},
         "exactly one of from, const, template, coalesce, if, switch, unique; 2 given"),
        ({"template": "{a}", "coalesce": ["a"]}, "2 given"),
        ({}, "none given"),
        ({"transform": ["lower"]}, "none given"),
        ({"from": "a", "to": "b"}, "unknown key 'to'"),
        ({"fromm": "a", "multi": True}, "unknown key 'fromm' (did you mean 'from'?)"),
        ({"from": "a", "on_empty": "drop"}, "on_empty: Input should be 'clear', 'keep' or"),
        ({"from": "a", "on_empty": "default"}, 'on_empty = "default" needs a default'),
        ({"from": "a", "on_empty": "keep", "default": "x"}, "default is only used with"),
        ({"from": "a", "apply": "sometimes"}, "apply: Input should be"),
        ({"from": "a", "multi": "yes"}, "multi: Input should be a valid boolean"),
        ({"from": 3}, "from: Input should be a valid string"),
        ({"from": "given name"}, "from: 'given name' is not an attribute name"),
        ({"coalesce": []},
         "coalesce: expected a list of attribute names, templates or expression tables (got [])"),
        ({"coalesce": ["a", "b c"]}, "is not an attribute name"),
        ({"const": 1.5}, "const: expected a string, boolean or integer (got 1.5)"),
        ({"from": "a", "multi": True, "default": [1]}, "default: expected a string, boolean"),
        ({"coalesce": ["a", 2]},
         "coalesce[1]: expected an attribute name, a template or an expression table, got 2"),
        ({"const": True, "transform": ["lower"]}, "takes no transform"),
        ({"const": 3, "multi": True}, "multi = true needs string values"),
        ({"from": "a", "transform": ["bool"], "multi": True}, "multi = true needs string"),
        ({"from": "a", "default": ["x"]}, "a list default needs multi = true"),
        ({"from": "a", "multi": True, "default": True}, "needs a string or list of strings"),
        ({"template": "{a!r}"}, "conversions and format specs are not supported"),
        ({"template": "{a:>5}"}, "conversions and format specs are not supported"),
        ({"template": "{a[0]}"}, "is not an attribute name"),
        ({"template": "{}"}, "is not an attribute name"),
        ({"template": "{a"}, "invalid template"),
        ({"template": "no fields {{x}}"}, "references no attribute; use const"),
        ("{a} }", "invalid template"),
        ("Jane Doe", '{ const = "Jane Doe" }'),
        (1.5, "a rule is an attribute name, a template, a constant or a table"),
        (["a", "b"], "a rule is an attribute name"),
    ],
)
def test_rule_config_errors_name_path_and_reason(rule: object, fragment: str) -> None:
    err = config_error({"userName": "uid", "emails.work": rule})
    assert err.where == f"{WHERE}.emails.work"
    assert fragment in str(err)
    assert str(err).startswith(f"{WHERE}.emails.work: ")


def test_misspelt_rule_key_is_not_taken_for_a_sub_path() -> None:
    err = config_error({"title": {"fromm": "uid"}})
    assert err.where == f"{WHERE}.title"
    assert "did you mean 'from'" in str(err)


def test_bad_canonical_path() -> None:
    err = config_error({"user name": "uid"})
    assert "is not a canonical attribute path" in str(err)
    assert err.where == f"{WHERE}.user name"


def test_mapping_must_be_a_table() -> None:
    with pytest.raises(ConfigError) as info:
        Mapping.from_config(["uid"], WHERE)  # type: ignore[arg-type]
    assert info.value.where == WHERE


def test_empty_where_gives_bare_path() -> None:
    with pytest.raises(ConfigError) as info:
        Mapping.from_config({"a": {}}, "")
    assert info.value.where == "a"


def test_mapping_is_immutable() -> None:
    m = Mapping.from_config({"a": "b"}, WHERE)
    with pytest.raises(AttributeError):
        m.rules = ()  # type: ignore[misc]
