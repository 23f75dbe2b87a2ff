"""Canonical values <-> the JSON a SCIM attribute of a declared type holds.

Writes respect the declared type: a canonical string for a boolean (LDAP ``TRUE``, ``1``,
``yes``) or an integer (``"0042"``) is converted, anything that is not one is refused with
`ValueError` naming the path and the value (the connector skips that entry). Reads give the
canonical form a mapping produces from a directory's strings, so a value written and read
back compares equal to what was mapped: booleans as ``bool``, integers as their decimal
text (``"42"``), decimals as Python's shortest float text (``"1.5"``), everything else as
the string the server holds; a multi-valued attribute as a tuple of texts (booleans in it as
``"true"``/``"false"``).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from datetime import datetime
from typing import Any

from syncd.model import Value
from syncd_connectors.scim.schemas import Path

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
_INTEGER = re.compile(r"^[+-]?[0-9]+$")


class PathValueError(ValueError):
    """A canonical value that is not of the declared type; the message names both."""


def to_json(path: Path, value: Value) -> Any:
    """The JSON value to send for `path` (not None: clearing is the caller's business)."""
    if type(value) is str and path.type == "string" and not path.multi:
        return value  # the common case, first
    if path.multi:
        items = value if isinstance(value, tuple) else (value,)
        return [_scalar(path, v) for v in items if v not in (None, "")]
    if isinstance(value, tuple):
        if len(value) != 1:
            raise PathValueError(f"{path.canonical!r}: {len(value)} values {_show(value)} "
                                 "for a single-valued attribute")
        value = value[0]
    return _scalar(path, value)


def _scalar(path: Path, value: str | bool | int | None) -> Any:
    kind = path.type
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        return _refuse(path, value, "a boolean (true/false, 1/0, yes/no)")
    if isinstance(value, bool):
        return _refuse(path, value, "an integer" if kind == "integer" else f"a {kind}")
    if kind == "integer":
        if isinstance(value, int):
            return value
        text = str(value).strip()
        if _INTEGER.match(text):
            return int(text)
        return _refuse(path, value, "an integer")
    if kind == "decimal":
        try:
            number = float(str(value).strip())
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            return _refuse(path, value, "a decimal number")
        return number
    text = str(value)
    if kind == "dateTime" and parse_datetime(text) is None:
        return _refuse(path, value, "an ISO 8601 date and time (2024-05-01T08:00:00Z)")
    if kind == "binary":
        try:
            base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            return _refuse(path, value, "base64 text")
    return text


def parse_datetime(text: str) -> datetime | None:
    """An xsd:dateTime (RFC 7643 §2.3.5): a date *and* a time; None when it is not one."""
    if "T" not in text.upper():
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None


def _refuse(path: Path, value: object, wanted: str) -> Any:
    raise PathValueError(f"{path.canonical!r} is {wanted} on the server, not {_show(value)}")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def from_json(path: Path, raw: Any) -> Value:
    """The canonical value of what the server holds for `path` (None: absent).

    A value of another JSON shape than declared raises `TypeError` (the connector refuses
    that resource as unreadable), never a wrong canonical value."""
    if raw is None or raw == "" or raw == []:
        return None
    if path.multi:
        if not isinstance(raw, list):
            raw = [raw]
        values = (_read(path, r) for r in raw)
        return tuple(("true" if v else "false") if isinstance(v, bool) else v
                     for v in values if v is not None) or None
    if isinstance(raw, list):
        raise TypeError(f"{path.canonical}: a list where one value was expected")
    return _read(path, raw)


def _read(path: Path, raw: Any) -> str | bool | None:
    if isinstance(raw, dict | list):
        raise TypeError(f"{path.canonical}: a {type(raw).__name__} where a {path.type} "
                        "was expected")
    if raw is None or raw == "":
        return None
    if path.type == "boolean" and isinstance(raw, str) and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    if isinstance(raw, bool):
        return raw
    if path.type == "decimal" and isinstance(raw, int | float):
        return str(float(raw))
    return str(raw)
