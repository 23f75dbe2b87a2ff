"""Transforms: each one on examples, its parameter errors, and the rules it must keep
(properties). Dates are in test_transforms_dates.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd.errors import ConfigError
from syncd.mapping import transforms
from syncd.mapping.transforms import TransformError, build, build_pipeline

REPO = Path(__file__).resolve().parents[2]
WHERE = "syncd.toml: flows.hr.mapping.user.userName"
Strs = tuple[str, ...]


def run(spec: object, *values: str) -> Strs:
    return build(spec, WHERE)(values)


def config_error(spec: object) -> str:
    """The message of the ConfigError a pipeline ``["trim", spec]`` raises."""
    with pytest.raises(ConfigError) as info:
        build_pipeline(["trim", spec], WHERE)
    assert info.value.where == WHERE
    message = str(info.value)
    assert "transform[1]: " in message
    return message


def test_registry_lists_every_transform_with_a_description() -> None:
    assert set(transforms.known()) == {
        "lower", "upper", "title", "capitalize", "trim", "strip_spaces", "diacritics",
        "ascii", "append", "prepend", "substring", "left", "right", "pad", "replace",
        "extract", "word", "first", "item", "distinct", "count", "join", "split", "default",
        "bool", "base64", "utf8_hex", "date", "map"}
    assert all(transforms.describe().values())


def test_readme_and_example_config_document_every_transform() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Mapping", 1)[1].split("\n### ", 1)[0]
    section = section.split("| transform (parameters)", 1)[1].split("\n\n", 1)[0]
    cells = re.findall(r"^\| (.+?) \| ", section, re.MULTILINE)
    in_table = {n for c in cells for n in re.findall(r"`(\w+)`", re.sub(r"\(.*?\)", "", c))}
    assert in_table == set(transforms.known())
    example = (REPO / "config" / "syncd.example.toml").read_text(encoding="utf-8")
    comment = example.split("# Transforms", 1)[1].split("\n[", 1)[0]
    assert [n for n in transforms.known() if not re.search(rf"\b{n}\b", comment)] == []


@pytest.mark.parametrize(
    ("spec", "values", "expected"),
    [
        # case
        ("title", ("PABLO GONSALVES (SECOND)",), ("Pablo Gonsalves (Second)",)),
        ("title", ("PINTO-DE'SILVA", "o'neil 3RD"), ("Pinto-De'silva", "O'neil 3rd")),
        ({"title": " -'"}, ("PINTO-DE'SILVA",), ("Pinto-De'Silva",)),
        ({"title": {"seps": " "}}, ("jean-luc PICARD",), ("Jean-luc Picard",)),
        ("title", ("ZOË ÅNGSTRÖM", "e\u0301MILE"), ("Zoë Ångström", "E\u0301mile")),
        ("capitalize", ("hELLO wORLD",), ("Hello world",)),
        # whitespace and affixes
        ("strip_spaces", (" Anne  Marie\tvan Dijk ", "  "), ("AnneMarievanDijk",)),
        ({"append": ".test"}, ("john@contoso.com",), ("john@contoso.com.test",)),
        ({"prepend": {"value": "ext-"}}, ("42",), ("ext-42",)),
        ({"append": 0}, ("1",), ("10",)),
        # cutting and padding
        ({"substring": {"start": 1, "length": 3}}, ("John", "Jo"), ("Joh", "Jo")),
        ({"substring": {"start": 2}}, ("John",), ("ohn",)),
        ({"substring": {"start": -3, "length": 2}}, ("Johnny", "ab"), ("nn", "ab")),
        ({"substring": {"start": 9}}, ("John",), ()),
        ({"left": 3}, ("John Doe", "Jo"), ("Joh", "Jo")),
        ({"right": 4}, ("+49 1234",), ("1234",)),
        ({"pad": 6}, ("42",), ("    42",)),
        ({"pad": {"width": 6, "char": "0"}}, ("42", "1234567"), ("000042", "1234567")),
        ({"pad": {"width": 4, "char": ".", "side": "right"}}, ("ab",), ("ab..",)),
        # words and values
        ({"word": 3}, ("The quick brown fox", "two words"), ("brown",)),
        ({"word": {"index": 3, "sep": ",!&#"}}, ("This,string!has&many separators",),
         ("has",)),
        ({"word": -1}, ("Anne Marie  Smith",), ("Smith",)),
        ({"word": {"index": 1, "sep": "@"}}, ("jane@corp.example",), ("jane",)),
        ({"item": 2}, ("a", "b", "c"), ("b",)),
        ({"item": -1}, ("a", "b", "c"), ("c",)),
        ({"item": 4}, ("a", "b", "c"), ()),
        ("distinct", ("SMTP:a@x", "smtp:a@x", "SMTP:a@x", "b"), ("SMTP:a@x", "smtp:a@x", "b")),
        ("count", ("a", "b", "c"), ("3",)),
        ("count", (), ("0",)),
        # encodings: Entra's own examples
        ("base64", ("Hello world!",), ("SGVsbG8gd29ybGQh",)),
        ({"base64": "utf-16le"}, ("Hello world!",), ("SABlAGwAbABvACAAdwBvAHIAbABkACEA",)),
        ({"base64": {"encoding": "utf-8"}}, ("zoë",), ("em/Dqw==",)),
        ("utf8_hex", ("Hello world!", "ë"), ("48656C6C6F20776F726C6421", "C3AB")),
        # letters
        ("diacritics", ("zoë.ångström", "Zoë", "ÉLODIE Çelik-Šimić"),
         ("zoe.angstrom", "Zoe", "ELODIE Celik-Simic")),
        ("diacritics", ("Йорк", "がか", "Straße", "Łódź"), ("Йорк", "がか", "Straße", "Łodz")),
        ("diacritics", ("A\u030a", "\u212b"), ("A", "A")),  # decomposed input, Angstrom sign
        ("ascii", ("zoë.ångström", "Straße", "Ærøskøbing", "Łódź", "Þór", "œuvre"),
         ("zoe.angstrom", "Strasse", "AEroskobing", "Lodz", "THor", "oeuvre")),
        ("ascii", ("ﬁne", "\uff2a\uff41\uff4e\uff45", "O\u2019Brien \u2013 CEO", "Đorđe \u0131"),
         ("fine", "Jane", "O'Brien - CEO", "Dorde i")),
        ("ascii", ("東京", "Йорк"), ()),
        ("ascii", ("Tōkyō 東京",), ("Tokyo ",)),
    ],
)
def test_transform(spec: object, values: Strs, expected: Strs) -> None:
    assert run(spec, *values) == expected


# --- regex --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "values", "expected"),
    [
        ({"replace": {"pattern": r"^CN=([^,]+),.*$", "with": r"\1"}}, ("CN=Jane,DC=x",),
         ("Jane",)),
        ({"replace": {"pattern": r"^(?P<user>[^@]+)@(?P<domain>.+)$",
                      "with": r"\g<domain>\\\g<user>"}}, ("jane@corp",), (r"corp\jane",)),
        ({"replace": {"pattern": r"\+(?P<cc>\d+) (?P<num>\d{10})", "with": r"\g<num>"}},
         ("+91 9998887777",), ("9998887777",)),
        ({"replace": {"pattern": r"[()\s-]+", "with": ""}}, ("+1 (999) 888-7777",),
         ("+19998887777",)),
        ({"replace": {"pattern": "(x)", "with": r"[\g<0>]"}}, ("axb",), ("a[x]b",)),
        ({"extract": r"^CN=([^,]+)"}, ("CN=Jane Doe,OU=x", "uid=jane"), ("Jane Doe",)),
        ({"extract": r"\d+"}, ("room 42b", "none"), ("42",)),
        ({"extract": {"pattern": r"(?P<user>[^@]+)@(?P<dom>.+)", "group": "dom"}},
         ("jane@corp.example",), ("corp.example",)),
        ({"extract": {"pattern": r"(a)(b)?", "group": 2}}, ("ab", "a"), ("b",)),
        ({"extract": {"pattern": r"(a)(b)", "group": 0}}, ("xaby",), ("ab",)),
    ],
)
def test_regex_transforms_use_groups(spec: object, values: Strs, expected: Strs) -> None:
    assert run(spec, *values) == expected


# --- map ----------------------------------------------------------------------------------

STATES = {"NSW": "Australia/Sydney", "QLD": "Australia/Brisbane", "SA": "Australia/Adelaide"}


@pytest.mark.parametrize(
    ("params", "values", "expected"),
    [
        ({"default": "Australia/Sydney"}, ("QLD", "WA"), ("Australia/Brisbane",
                                                          "Australia/Sydney")),
        ({"otherwise": "keep"}, ("qld", "WA"), ("Australia/Brisbane", "WA")),
        ({"otherwise": "drop"}, ("sa", "WA"), ("Australia/Adelaide",)),
        ({"otherwise": "drop", "case_sensitive": True}, ("qld", "QLD"),
         ("Australia/Brisbane",)),
        ({"default": ""}, ("WA",), ()),
    ],
)
def test_map(params: dict[str, Any], values: Strs, expected: Strs) -> None:
    assert run({"map": {"values": STATES, **params}}, *values) == expected


def test_map_entry_to_empty_removes_that_value() -> None:
    spec = {"map": {"values": {"3443": "Dr.", "3445": "Prof. Dr.", "0": ""}}}
    assert run(spec, "3445", "0") == ("Prof. Dr.",)


def test_map_without_otherwise_names_the_unmapped_value() -> None:
    with pytest.raises(TransformError) as info:
        run({"map": {"values": STATES}}, "QLD", "WA")
    assert (info.value.transform, info.value.value) == ("map", "WA")
    assert "is not in the table (NSW, QLD, SA)" in str(info.value)
    assert 'otherwise = "keep"' in str(info.value)


# --- parameter errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"title": ""}, "title: seps must not be empty"),
        ({"title": True}, "title: seps must be a string, got True"),
        ({"capitalize": "x"}, "capitalize takes no parameters"),
        ({"append": ""}, "append: value must not be empty"),
        ({"prepend": True}, "prepend: value must be a string, got True"),
        ({"substring": {"length": 2}}, "substring: missing parameter 'start'"),
        ({"substring": {"start": 0}}, "substring: start counts from 1 (-1 is the last)"),
        ({"substring": {"start": "1"}}, "substring: start must be an integer, got '1'"),
        ({"substring": {"start": 1, "length": 0}}, "substring: length must be at least 1"),
        ({"substring": {"start": 1, "length": -2}}, "length must be at least 1, got -2"),
        ({"left": -1}, "left: n must be at least 1, got -1"),
        ({"right": True}, "right: n must be an integer, got True"),
        ({"pad": 0}, "pad: width must be at least 1, got 0"),
        ({"pad": 100000}, "pad: width must be at most 1024"),
        ({"pad": {"width": 3, "char": "00"}}, "pad: char must be exactly one character"),
        ({"pad": {"width": 3, "side": "both"}}, "pad: side must be one of left, right; got "
                                                "'both'"),
        ({"pad": {"width": 3, "fill": "0"}}, "pad: unknown parameter 'fill' (takes char, side"),
        ({"word": 0}, "word: index counts from 1"),
        ({"word": {"index": 1, "sep": ""}}, "word: sep must not be empty"),
        ({"word": {"sep": " "}}, "word: missing parameter 'index'"),
        ({"item": 0}, "item: index counts from 1"),
        ({"item": 1.5}, "item: index must be an integer, got 1.5"),
        ({"base64": "latin-1"}, "base64: encoding must be one of utf-8, utf-16le"),
        ({"replace": {"pattern": "(", "with": ""}}, "replace: pattern: invalid regex '('"),
        ({"replace": {"pattern": "(a)", "with": r"\2"}}, "replace: with: invalid replacement"),
        ({"replace": {"pattern": "a", "with": r"\g<nope>"}}, "invalid replacement"),
        ({"extract": "[a-"}, "extract: pattern: invalid regex '[a-'"),
        ({"extract": {"pattern": "(a)", "group": 2}},
         "extract: group 2 is out of range: the pattern has 1 group(s)"),
        ({"extract": {"pattern": "a", "group": -1}}, "group -1 is out of range"),
        ({"extract": {"pattern": "(?P<x>a)", "group": "y"}},
         "extract: group 'y' is not a named group of the pattern (named groups: x)"),
        ({"extract": {"pattern": "a", "group": True}}, "group must be a group number or name"),
        ({"map": {"A": "x"}}, "map: unknown parameter 'A' (takes case_sensitive, default, "
                              "otherwise, values)"),
        ({"map": "x"}, "map: values must be a table"),
        ({"map": {"values": {}}}, "map: values must not be empty"),
        ({"map": {"values": {"": "x"}}}, "map: values: an empty key never matches"),
        ({"map": {"values": {"A": True}}}, "map: values entry 'A' must be a string, got True"),
        ({"map": {"values": {"A": "x", "a": "y"}}},
         "map: values: keys 'A' and 'a' differ only in case"),
        ({"map": {"values": {"A": "x"}, "otherwise": "default"}},
         "map: otherwise must be one of error, keep, drop"),
        ({"map": {"values": {"A": "x"}, "otherwise": "keep", "default": "y"}},
         "map: give either otherwise or default, not both"),
        ({"map": {"values": {"A": "x"}, "case_sensitive": "yes"}},
         "map: case_sensitive must be true or false, got 'yes'"),
    ],
)
def test_parameter_errors_name_transform_and_parameter(spec: object, fragment: str) -> None:
    assert fragment in config_error(spec)


def test_map_accepts_differently_cased_keys_when_case_sensitive() -> None:
    spec = {"map": {"values": {"A": "x", "a": "y"}, "case_sensitive": True}}
    assert run(spec, "a", "A") == ("y", "x")


def test_a_lone_surrogate_is_a_value_error_naming_the_transform() -> None:
    with pytest.raises(TransformError) as info:
        run("base64", "a\udcff")
    assert info.value.transform == "base64" and "cannot be encoded as utf-8" in str(info.value)


def test_transforms_describe_their_parameters() -> None:
    spec = {"map": {"values": {"A": "x"}, "default": "z"}}
    assert str(build(spec, WHERE)) == ("map(values=(('A', 'x'),), default='z', "
                                       "case_sensitive=False)")
    assert str(build({"pad": 5}, WHERE)) == "pad(width=5, char=' ', side='left')"
    hash(build(spec, WHERE))  # a compiled rule stays a hashable value


# --- properties ---------------------------------------------------------------------------

TEXT = st.text(max_size=40)


@given(TEXT)
def test_ascii_is_ascii_and_idempotent(s: str) -> None:
    out = run("ascii", s)
    assert all(v.isascii() for v in out)
    assert run("ascii", *out) == out


@given(st.text(alphabet=st.characters(codec="ascii"), max_size=40))
def test_ascii_leaves_ascii_alone(s: str) -> None:
    assert run("ascii", s) == ((s,) if s else ())


@given(TEXT)
def test_diacritics_is_idempotent_and_ascii_agrees_with_it(s: str) -> None:
    out = run("diacritics", s)
    assert run("diacritics", *out) == out
    assert run("ascii", *out) == run("ascii", s)


@given(TEXT.filter(bool), st.integers(1, 60), st.characters(), st.sampled_from(["left",
                                                                                 "right"]))
def test_pad_yields_at_least_the_width_and_keeps_the_value(s: str, width: int, char: str,
                                                           side: str) -> None:
    (out,) = run({"pad": {"width": width, "char": char, "side": side}}, s)
    assert len(out) == max(width, len(s))
    assert out.endswith(s) if side == "left" else out.startswith(s)


@given(TEXT.filter(bool), st.integers(-50, 50).filter(bool),
       st.one_of(st.none(), st.integers(1, 50)))
def test_substring_left_right_agree_with_slicing(s: str, start: int, length: int | None
                                                 ) -> None:
    i = start - 1 if start > 0 else max(len(s) + start, 0)
    expected = s[i:] if length is None else s[i:i + length]
    params: dict[str, int] = {"start": start} | ({} if length is None else {"length": length})
    assert run({"substring": params}, s) == ((expected,) if expected else ())
    if length is not None:
        assert run({"left": length}, s) == (s[:length],)
        assert run({"right": length}, s) == (s[-length:],)
        assert run({"substring": {"start": 1, "length": length}}, s) == (s[:length],)


@given(st.lists(st.text(min_size=1, max_size=5), max_size=8))
def test_distinct_keeps_first_occurrences_in_order_and_count_counts(values: list[str]) -> None:
    out = run("distinct", *values)
    assert len(set(out)) == len(out) and set(out) == set(values)
    assert list(out) == sorted(set(values), key=values.index)
    assert run("count", *values) == (str(len(values)),)


@given(st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=8), st.data())
def test_item_agrees_with_indexing(values: list[str], data: st.DataObject) -> None:
    n = data.draw(st.integers(1, len(values)))
    assert run({"item": n}, *values) == (values[n - 1],)
    assert run({"item": -n}, *values) == (values[-n],)


@given(st.lists(st.text(alphabet="abc", min_size=1, max_size=4), max_size=6), st.integers(1, 7))
def test_word_picks_the_nth_nonempty_word(parts: list[str], n: int) -> None:
    s = " , ".join(parts)
    expected = (parts[n - 1],) if n <= len(parts) else ()
    assert run({"word": {"index": n, "sep": " ,"}}, s) == expected
