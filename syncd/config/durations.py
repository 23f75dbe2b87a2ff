"""Durations in config: ``"90s"``, ``"5m"``, ``"24h"``, ``"30d"``, or combined ``"1h30m"``."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """Seconds in `text`; ValueError with the accepted forms when it is not a duration."""
    s = text.strip().lower().replace(" ", "")
    if not s or _PART.sub("", s):
        raise ValueError(f"{text!r} is not a duration (use e.g. 90s, 5m, 24h, 30d, 1h30m)")
    return sum(float(n) * _UNIT[u] for n, u in _PART.findall(s))
