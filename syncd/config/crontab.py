"""Crontab expressions as the README documents them, turned into APScheduler 3 triggers.

One implementation for config validation and for the daemon: the config used to check cron
with APScheduler's own `CronTrigger.from_crontab`, which numbers weekdays from Monday=0 and
rejects 7, so a valid crontab (``0 0 * * 7``, Sunday) failed validation and ``1-5`` would
have meant Tuesday to Saturday had it reached the scheduler. Here: 5 fields (minute, hour,
day of month, month, day of week), weekdays 0-7 with 0 and 7 = Sunday, or names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apscheduler.triggers.cron import CronTrigger

_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
FIELDS = ("minute", "hour", "day of month", "month", "day of week")


def _day(token: str) -> int:
    t = token.strip().lower()
    if t.isdigit() and 0 <= int(t) <= 7:
        return int(t)
    if t[:3] in _DAYS:
        return _DAYS.index(t[:3])
    raise ValueError(f"{token!r} is not a day of the week (0-7 or sun-sat)")


def crontab_weekdays(field: str) -> str:
    """A crontab day-of-week field in APScheduler 3 terms.

    APScheduler 3 numbers weekdays from Monday=0 while crontab uses Sunday=0 (and 7), so
    ``"1-5"`` would silently mean Tuesday to Saturday. The field is expanded with crontab
    semantics and handed over as day names, which both agree on.
    """
    if field in ("*", "?"):
        return "*"
    days: set[int] = set()
    for part in field.split(","):
        base, slash, step_text = part.partition("/")
        if slash and not step_text.isdigit():
            raise ValueError(f"bad step in day of week {part!r}")
        step = int(step_text) if slash else 1
        if step < 1:
            raise ValueError(f"bad step in day of week {part!r}")
        if base == "*":
            lo, hi = 0, 6
        elif "-" in base:
            a, b = base.split("-", 1)
            lo, hi = _day(a), _day(b)
        else:
            lo = _day(base)
            hi = 6 if slash else lo
        if hi < lo:
            raise ValueError(f"day of week range {base!r} runs backwards")
        days.update(d % 7 for d in range(lo, hi + 1, step))
    return ",".join(_DAYS[d] for d in sorted(days))


def cron_trigger(expr: str, jitter: int | None = None) -> CronTrigger:
    """The trigger for a 5-field crontab expression; ValueError naming the bad field."""
    from apscheduler.triggers.cron import CronTrigger

    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"cron {expr!r}: expected 5 fields ({', '.join(FIELDS)}), "
                         f"got {len(fields)}")
    minute, hour, day, month, dow = fields
    try:
        weekdays = crontab_weekdays(dow)
    except ValueError as exc:
        raise ValueError(f"cron {expr!r}: day of week: {exc}") from None
    try:
        return CronTrigger(minute=minute, hour=hour, day=day, month=month,
                           day_of_week=weekdays, jitter=jitter)
    except ValueError as exc:
        raise ValueError(f"cron {expr!r}: {exc}") from None


def check_cron(expr: str) -> str:
    """Config-time validation (pydantic names the key, ``flows.NAME.schedule.cron``)."""
    cron_trigger(expr)
    return expr
