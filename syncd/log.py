"""Logging: one event per line; JSON when stderr is not a terminal (journald), text otherwise.

Records may carry `run_id`, `flow`, `change_id` and `ref` via ``extra=``; they are emitted as
fields. Secrets never reach a log line: config values are `SecretStr`, connector errors are
built without credentials, and both formatters pass the final text through `syncd.redact`
(registered secret values and credential shapes masked), whatever a peer echoed.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

from syncd.redact import redact

FIELDS = ("run_id", "flow", "change_id", "ref")

#: Set by the engine for the duration of a flow run; every record emitted meanwhile (in any
#: thread that copied the context) carries them.
_context: ContextVar[dict[str, str] | None] = ContextVar("syncd_log_context", default=None)


@contextmanager
def context(**fields: str | None) -> Iterator[None]:
    token = _context.set({**(_context.get() or {}), **{k: v for k, v in fields.items() if v}})
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for k, v in (_context.get() or {}).items():
            if getattr(record, k, None) is None:
                setattr(record, k, v)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage(), limit=None),
        }
        for f in FIELDS:
            v = getattr(record, f, None)
            if v is not None:
                doc[f] = v
        if record.exc_info:
            doc["exc"] = redact(self.formatException(record.exc_info), limit=None)
        return json.dumps(doc, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """For a terminal: local time first (a long run's lines say when), level, message."""

    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{f}={getattr(record, f)}" for f in FIELDS
                         if getattr(record, f, None) is not None)
        when = datetime.fromtimestamp(record.created).astimezone().strftime("%H:%M:%S")
        line = (f"{when} {record.levelname.lower():7} "
                f"{redact(record.getMessage(), limit=None)}")
        return f"{line}  {extra}" if extra else line


def setup(verbosity: int = 0, json_logs: bool | None = None) -> None:
    level = logging.WARNING - 10 * verbosity
    handler = logging.StreamHandler(sys.stderr)
    use_json = (not sys.stderr.isatty()) if json_logs is None else json_logs
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger("syncd")
    root.handlers[:] = [handler]
    root.setLevel(max(level, logging.DEBUG))
    root.propagate = False
