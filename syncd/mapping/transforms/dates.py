"""`date`: convert a point in time between the encodings directories use, always in UTC.

Formats (`from` and `to`):

- ``generalized``: LDAP generalizedTime, ``20261201123000Z``; minutes and seconds may be
  left out, a fraction (``.5``/``,5``) applies to the last unit given, the zone is ``Z`` or
  ``+HHMM``/``-HH``. Written as ``YYYYMMDDHHMMSSZ`` (with ``.ffffff`` only when not zero).
- ``filetime``: AD's 100-nanosecond intervals since 1601-01-01 (``accountExpires``,
  ``pwdLastSet``). ``0`` and ``9223372036854775807`` mean "never": no value comes out.
- ``iso``: ISO 8601 (``2026-12-01``, ``2026-12-01T12:30:00+02:00``); written
  ``2026-12-01T10:30:00Z``.
- ``epoch`` / ``epoch_ms``: seconds / milliseconds since 1970-01-01 UTC.
- anything containing ``%``: a strftime/strptime format (``%Y-%m-%d``).

A time without a zone is taken as UTC. `add` shifts the time by ``<number><unit>`` parts
(``30d``, ``-1w``, ``12h30min``; units w, d, h, min, s): no months or years, whose length
depends on the date -- write days. A value that does not parse is a `TransformError` naming
the value and the format expected.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from syncd.mapping.transforms.registry import (
    Fn,
    Param,
    Params,
    Strs,
    TransformError,
    opt,
    register,
)

FORMATS = ("generalized", "filetime", "iso", "epoch", "epoch_ms")
FILETIME_NEVER = frozenset({0, 9223372036854775807})
_FILETIME_ZERO = datetime(1601, 1, 1, tzinfo=UTC)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_EXPECTED = {
    "generalized": "an LDAP generalizedTime (YYYYMMDDHH[MM[SS]][.f] and Z or +HHMM)",
    "filetime": "an AD FILETIME (100-ns intervals since 1601, a non-negative integer)",
    "iso": "an ISO 8601 date or time (2026-12-01, 2026-12-01T12:30:00Z)",
    "epoch": "seconds since 1970 (an integer)",
    "epoch_ms": "milliseconds since 1970 (an integer)",
}
_GENERALIZED = re.compile(r"(\d{4})(\d\d)(\d\d)(\d\d)(?:(\d\d)(\d\d)?)?(?:[.,](\d+))?"
                          r"(Z|[+-]\d\d(?:\d\d)?)")
_INTEGER = re.compile(r"[+-]?\d+")
_ADD_PART = re.compile(r"(\d+)(w|d|h|min|s)")
_UNITS = {"w": timedelta(weeks=1), "d": timedelta(days=1), "h": timedelta(hours=1),
          "min": timedelta(minutes=1), "s": timedelta(seconds=1)}


class _Invalid(ValueError):
    """A value this conversion cannot take; the message says why (`_parser` adds the format
    expected)."""


# --- reading --------------------------------------------------------------------------------


def _generalized(value: str) -> datetime:
    m = _GENERALIZED.fullmatch(value)
    if not m:
        raise _Invalid
    year, month, day, hour, minute, second, frac, zone = m.groups()
    dt = datetime(int(year), int(month), int(day), int(hour), int(minute or 0),
                  min(int(second or 0), 59), tzinfo=UTC)  # a leap second 60 is kept as 59
    if frac:  # a fraction of the last unit given: hour, minute or second
        unit = 1 if second else 60 if minute else 3600
        dt += timedelta(microseconds=int(frac) * unit * 1_000_000 // 10 ** len(frac))
    if zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        hours, minutes = int(zone[1:3]), int(zone[3:5] or 0)
        if hours > 23 or minutes > 59:
            raise _Invalid
        offset = timedelta(hours=hours, minutes=minutes)
        dt -= sign * offset  # the wall time was at that offset: UTC is earlier for +HHMM
    return dt


def _filetime(value: str) -> datetime | None:
    if not value.isdigit():
        raise _Invalid
    ticks = int(value)
    if ticks in FILETIME_NEVER:
        return None
    return _FILETIME_ZERO + timedelta(microseconds=ticks // 10)


def _iso(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _epoch(scale: int) -> Callable[[str], datetime]:
    def read(value: str) -> datetime:
        if not _INTEGER.fullmatch(value):
            raise _Invalid
        return _EPOCH + timedelta(milliseconds=int(value) * scale)

    return read


_READERS: dict[str, Callable[[str], datetime | None]] = {
    "generalized": _generalized, "filetime": _filetime, "iso": _iso,
    "epoch": _epoch(1000), "epoch_ms": _epoch(1),
}


def _parser(fmt: str) -> Callable[[str], datetime | None]:
    """A reader for `fmt` that returns an aware UTC time, None for "never", or raises
    `_Invalid` with the expected format as its message."""
    read = _READERS.get(fmt) or (lambda v: datetime.strptime(v, fmt))
    expected = _EXPECTED.get(fmt, f"a date in the format {fmt!r}")

    def parse(value: str) -> datetime | None:
        try:
            dt = read(value.strip())
        except OverflowError:
            raise _Invalid("is past the year 9999") from None
        except ValueError as e:  # includes _Invalid: a reader's own reason wins
            reason = str(e) if isinstance(e, _Invalid) and str(e) else f"is not {expected}"
            raise _Invalid(reason) from None
        if dt is None:
            return None
        return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)

    return parse


# --- writing --------------------------------------------------------------------------------


def _write_generalized(dt: datetime) -> str:
    frac = f".{dt.microsecond:06d}".rstrip("0") if dt.microsecond else ""
    return (f"{dt.year:04d}{dt.month:02d}{dt.day:02d}{dt.hour:02d}{dt.minute:02d}"
            f"{dt.second:02d}{frac}Z")


def _write_filetime(dt: datetime) -> str:
    if dt < _FILETIME_ZERO:
        raise _Invalid("is before 1601, which an AD FILETIME cannot hold")
    return str((dt - _FILETIME_ZERO) // timedelta(microseconds=1) * 10)


def _write_iso(dt: datetime) -> str:
    spec = "microseconds" if dt.microsecond else "seconds"
    return dt.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


_WRITERS: dict[str, Callable[[datetime], str]] = {
    "generalized": _write_generalized, "filetime": _write_filetime, "iso": _write_iso,
    "epoch": lambda dt: str((dt - _EPOCH) // timedelta(seconds=1)),
    "epoch_ms": lambda dt: str((dt - _EPOCH) // timedelta(milliseconds=1)),
}


# --- the transform ------------------------------------------------------------------------


def _format(p: Params, name: str) -> str:
    fmt = p.get(name, str)
    if fmt in FORMATS:
        return fmt
    if "%" not in fmt:
        raise ValueError(f"{name}: unknown format {fmt!r}; use one of {', '.join(FORMATS)} "
                         "or a strftime format such as '%Y-%m-%d'")
    sample = datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)
    try:  # a format that cannot read back what it writes has a bad directive
        datetime.strptime(sample.strftime(fmt), fmt)
    except ValueError as e:
        raise ValueError(f"{name}: invalid format {fmt!r}: {e}") from None
    return fmt


def parse_add(text: str) -> timedelta:
    """``"30d"``, ``"-1w"``, ``"12h30min"`` as a timedelta; ValueError names what is wrong."""
    body = text.strip()
    sign = -1 if body.startswith("-") else 1
    body = body.lstrip("+-")
    if not body or _ADD_PART.sub("", body):
        raise ValueError(f"add: {text!r} is not a duration such as '30d', '-1w' or '12h30min' "
                         "(units w, d, h, min, s; months and years vary in length: use d)")
    total = sum((int(n) * _UNITS[u] for n, u in _ADD_PART.findall(body)), timedelta())
    return sign * total


@register("date", "convert a date/time between generalized, filetime, iso, epoch, epoch_ms "
          "and strftime formats, in UTC; add shifts it (30d, -2h)",
          Param("from"), Param("to"), opt("add"))
def _date(p: Params) -> Fn:
    source, target = _format(p, "from"), _format(p, "to")
    add = p.maybe("add", str)
    shift = parse_add(add) if add is not None else timedelta()
    parse = _parser(source)
    write = _WRITERS.get(target) or (lambda dt: dt.strftime(target))

    def run(values: Strs) -> Strs:
        out = []
        for v in values:
            try:
                dt = parse(v)
                if dt is None:
                    continue
                result = write(dt + shift)
            except _Invalid as e:
                raise TransformError("date", v, str(e)) from None
            except OverflowError:
                raise TransformError("date", v, f"is out of range after adding {add!r}"
                                     ) from None
            if result:
                out.append(result)
        return tuple(out)

    return run
