"""The `date` transform: every format read and written, "never", `add`, the errors, and round
trips between generalizedTime, FILETIME and epoch as properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd.errors import ConfigError, Rejected
from syncd.mapping.attributes import Mapping
from syncd.mapping.rules import MappingError
from syncd.mapping.transforms import TransformError, build, build_pipeline

WHERE = "syncd.toml: flows.ad.mapping.user.enterprise.endDate"
Strs = tuple[str, ...]


def convert(source: str, target: str, *values: str, add: str | None = None) -> Strs:
    params = {"from": source, "to": target} | ({"add": add} if add else {})
    return build({"date": params}, WHERE)(values)


@pytest.mark.parametrize(
    ("source", "value", "iso"),
    [
        ("generalized", "20261201123000Z", "2026-12-01T12:30:00Z"),
        ("generalized", "20261201123000.0Z", "2026-12-01T12:30:00Z"),  # AD's whenChanged
        ("generalized", "20261201123000.25Z", "2026-12-01T12:30:00.250000Z"),
        ("generalized", "20261201123000,5Z", "2026-12-01T12:30:00.500000Z"),
        ("generalized", "20261201123000+0200", "2026-12-01T10:30:00Z"),
        ("generalized", "20261201003000-0130", "2026-12-01T02:00:00Z"),
        ("generalized", "2026120112-05", "2026-12-01T17:00:00Z"),
        ("generalized", "202612011230Z", "2026-12-01T12:30:00Z"),
        ("generalized", "2026120112.5Z", "2026-12-01T12:30:00Z"),  # half an hour
        ("generalized", "202612011230.5Z", "2026-12-01T12:30:30Z"),  # half a minute
        ("generalized", "20161231235960Z", "2016-12-31T23:59:59Z"),  # a leap second
        ("filetime", "129699324000000000", "2012-01-01T23:00:00Z"),  # Entra's DateFromNum
        ("filetime", "116444736000000000", "1970-01-01T00:00:00Z"),
        ("filetime", "116444736000000015", "1970-01-01T00:00:00.000001Z"),
        ("iso", "2026-12-01", "2026-12-01T00:00:00Z"),
        ("iso", "2009-06-15T01:45:30-07:00", "2009-06-15T08:45:30Z"),  # Entra's CDate
        ("iso", "2026-12-01T12:30:00Z", "2026-12-01T12:30:00Z"),
        ("iso", " 2026-12-01T12:30:00.123+00:00 ", "2026-12-01T12:30:00.123000Z"),
        ("epoch", "0", "1970-01-01T00:00:00Z"),
        ("epoch", "-86400", "1969-12-31T00:00:00Z"),
        ("epoch", "1796214600", "2026-12-02T12:30:00Z"),
        ("epoch_ms", "1500", "1970-01-01T00:00:01.500000Z"),
        ("%Y%m%d%H%M%S.%fZ", "20150123105347.1Z", "2015-01-23T10:53:47.100000Z"),
        ("%d.%m.%Y", "24.12.2026", "2026-12-24T00:00:00Z"),
        ("%Y-%m-%d %H:%M%z", "2026-12-24 08:00+0100", "2026-12-24T07:00:00Z"),
    ],
)
def test_reads_every_format_as_utc(source: str, value: str, iso: str) -> None:
    assert convert(source, "iso", value) == (iso,)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("generalized", "20261201123000Z"),
        ("filetime", "134406018000000000"),
        ("iso", "2026-12-01T12:30:00Z"),
        ("epoch", "1796128200"),
        ("epoch_ms", "1796128200000"),
        ("%Y-%m-%d", "2026-12-01"),
        ("%d/%m/%Y %H:%M %Z", "01/12/2026 12:30 UTC"),
    ],
)
def test_writes_every_format(target: str, expected: str) -> None:
    assert convert("iso", target, "2026-12-01T14:30:00+02:00") == (expected,)


def test_filetime_never_gives_no_value() -> None:
    assert convert("filetime", "iso", "0", "9223372036854775807") == ()
    pipeline = build_pipeline([{"date": {"from": "filetime", "to": "iso"}},
                               {"default": "never"}], WHERE)
    assert pipeline(("9223372036854775807",)) == ("never",)


@pytest.mark.parametrize(
    ("add", "expected"),
    [("30d", "20261231123000Z"), ("-1w", "20261124123000Z"), ("+12h30min", "20261202010000Z"),
     ("90s", "20261201123130Z"), ("1d1h1min1s", "20261202133101Z")],
)
def test_add_shifts_the_time(add: str, expected: str) -> None:
    assert convert("generalized", "generalized", "20261201123000Z", add=add) == (expected,)


def test_account_expires_from_an_hr_end_date() -> None:
    """Entra's NumFromDate example: end of the contract day, as AD's accountExpires."""
    out = convert("%Y-%m-%d%z", "filetime", "2020-12-31-0800", add="23h59min59s")
    assert out == convert("iso", "filetime", "2021-01-01T07:59:59Z")


@pytest.mark.parametrize(
    ("source", "value", "expected"),
    [
        ("generalized", "2026-12-01", "is not an LDAP generalizedTime"),
        ("generalized", "20261201123000", "is not an LDAP generalizedTime"),  # no zone
        ("generalized", "20261301123000Z", "is not an LDAP generalizedTime"),  # month 13
        ("generalized", "20261201123000+2500", "is not an LDAP generalizedTime"),
        ("filetime", "-1", "is not an AD FILETIME"),
        ("filetime", "12.5", "is not an AD FILETIME"),
        ("filetime", "9" * 25, "is past the year 9999"),
        ("epoch", "9" * 25, "is past the year 9999"),
        ("iso", "yesterday", "is not an ISO 8601 date or time"),
        ("epoch", "1.5", "is not seconds since 1970"),
        ("epoch_ms", "x", "is not milliseconds since 1970"),
        ("%d.%m.%Y", "2026-12-24", "is not a date in the format '%d.%m.%Y'"),
    ],
)
def test_a_value_that_does_not_parse_names_value_and_format(source: str, value: str,
                                                            expected: str) -> None:
    with pytest.raises(TransformError) as info:
        convert(source, "iso", value)
    assert (info.value.transform, info.value.value) == ("date", value)
    assert expected in str(info.value)


def test_a_time_before_1601_cannot_be_a_filetime() -> None:
    with pytest.raises(TransformError, match="before 1601"):
        convert("iso", "filetime", "1600-12-31T00:00:00Z")


def test_adding_past_year_9999_is_a_value_error() -> None:
    with pytest.raises(TransformError, match="is out of range after adding '1000w'"):
        convert("iso", "iso", "9999-12-01", add="1000w")


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"from": "generalised", "to": "iso"}, "date: from: unknown format 'generalised'; use "
                                              "one of generalized, filetime, iso, epoch"),
        ({"from": "iso", "to": "ldap"}, "date: to: unknown format 'ldap'"),
        ({"from": "%Q", "to": "iso"}, "date: from: invalid format '%Q'"),
        ({"from": "iso"}, "date: missing parameter 'to'"),
        ({"from": "iso", "to": "iso", "add": "1m"}, "date: add: '1m' is not a duration"),
        ({"from": "iso", "to": "iso", "add": "1 month"}, "months and years vary in length"),
        ({"from": "iso", "to": "iso", "add": ""}, "date: add: '' is not a duration"),
        ({"from": "iso", "to": "iso", "add": 30}, "date: add: '30' is not a duration"),
        ({"from": True, "to": "iso"}, "date: from must be a string, got True"),
    ],
)
def test_parameter_errors(params: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_pipeline([{"date": params}], WHERE)
    assert info.value.where == WHERE
    assert "transform[0]: date: " in str(info.value)
    assert fragment in str(info.value)


def test_date_needs_a_table() -> None:
    with pytest.raises(ConfigError, match=r"date needs a table of parameters \(from, to, add\)"):
        build({"date": "iso"}, WHERE)


# --- round trips --------------------------------------------------------------------------

TIMES = st.datetimes(min_value=datetime(1601, 1, 2), max_value=datetime(9998, 12, 31),
                     timezones=st.just(UTC))
SECONDS = TIMES.map(lambda dt: dt.replace(microsecond=0))


@given(TIMES)
def test_generalized_filetime_iso_round_trip(dt: datetime) -> None:
    (gen,) = convert("iso", "generalized", dt.isoformat())
    (ft,) = convert("generalized", "filetime", gen)
    (iso,) = convert("filetime", "iso", ft)
    assert datetime.fromisoformat(iso) == dt
    assert convert("filetime", "generalized", ft) == (gen,)
    assert convert("iso", "filetime", iso) == (ft,)


@given(SECONDS)
def test_epoch_round_trips(dt: datetime) -> None:
    (gen,) = convert("iso", "generalized", dt.isoformat())
    (epoch,) = convert("generalized", "epoch", gen)
    assert int(epoch) == int(dt.timestamp())
    assert convert("epoch", "generalized", epoch) == (gen,)
    (ms,) = convert("epoch", "epoch_ms", epoch)
    assert convert("epoch_ms", "filetime", ms) == convert("generalized", "filetime", gen)


@given(st.integers(1, 265_046_774_399_999_999).map(lambda n: n * 10))
def test_filetime_round_trips_at_microsecond_resolution(ticks: int) -> None:
    (gen,) = convert("filetime", "generalized", str(ticks))
    assert convert("generalized", "filetime", gen) == (str(ticks),)


@given(TIMES, st.integers(-5000, 5000))
def test_add_then_subtract_is_identity(dt: datetime, days: int) -> None:
    (gen,) = convert("iso", "generalized", dt.isoformat())
    there, back = (f"-{-days}d", f"{-days}d") if days < 0 else (f"{days}d", f"-{days}d")
    try:
        (shifted,) = convert("generalized", "generalized", gen, add=there)
    except TransformError:
        with pytest.raises(OverflowError):  # only past the year 9999
            dt + timedelta(days=days)
        return
    assert convert("generalized", "generalized", shifted, add=back) == (gen,)


def test_in_a_rule_a_bad_date_rejects_the_entry_naming_path_attribute_and_value() -> None:
    rule = {"from": "accountExpires", "transform": [{"date": {"from": "filetime",
                                                              "to": "%Y-%m-%d"}}]}
    mapping = Mapping.from_config({"enterprise.endDate": rule}, WHERE)
    assert mapping.map({"accountexpires": ("129699324000000000",)}) == {
        "enterprise.endDate": "2012-01-01"}
    assert mapping.map({"accountexpires": ("9223372036854775807",)}) == {
        "enterprise.endDate": None}
    with pytest.raises(MappingError) as info:
        mapping.map({"accountexpires": ("soon",)})
    assert isinstance(info.value, Rejected)
    assert (info.value.path, info.value.attribute) == ("enterprise.endDate", "accountexpires")
    assert "date: 'soon' is not an AD FILETIME" in str(info.value)
