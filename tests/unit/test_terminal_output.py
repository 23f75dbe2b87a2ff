"""What an admin at a terminal sees: log lines with the time, progress with an ETA."""

from __future__ import annotations

import logging
import re

from hypothesis import given
from hypothesis import strategies as st

from syncd.cycle.session import Session
from syncd.log import TextFormatter


def test_terminal_log_lines_carry_the_time() -> None:
    rec = logging.LogRecord("syncd.x", logging.WARNING, __file__, 1, "peer said %s",
                            ("no",), None)
    line = TextFormatter().format(rec)
    assert re.match(r"^\d\d:\d\d:\d\d warning peer said no$", line), line


@given(total=st.integers(1, 10_000), done=st.integers(0, 10_000),
       elapsed=st.floats(0.0, 10_000.0))
def test_eta_is_the_remaining_work_at_the_rate_so_far(total: int, done: int,
                                                      elapsed: float) -> None:
    s = Session.__new__(Session)
    s.total, s.done = total, min(done, total)
    clock = 1_000_000.0
    s._started = clock - elapsed
    elapsed = clock - s._started  # as the session sees it
    eta = s._eta(now=clock)
    if s.done == 0 or s.done >= total or elapsed <= 0:
        assert eta == ""
        return
    left = round((total - s.done) * elapsed / s.done)
    m = re.fullmatch(r", about (?:(\d+)m(\d\d)s|(\d+)s) left", eta)
    assert m is not None, eta
    shown = int(m[1]) * 60 + int(m[2]) if m[1] else int(m[3])
    assert shown == left and (m[1] is None) == (left < 60)
