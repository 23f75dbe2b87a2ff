"""Column types of the store's Core tables (`syncd.state.schema`) that SQLAlchemy lacks.

`UTCDateTime` is SQLModel's own type for a ``datetime`` field (sqlmodel.sql.sqltypes), copied
because importing any part of SQLModel imports all of it, with SQLAlchemy's ORM (~0.3 s of
CPU per start, issue 17). `tests/unit/test_store_schema.py` checks both behave alike: an
aware datetime is stored in UTC, a naive one is refused, a value read back is aware UTC
(SQLite keeps no offset).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import types
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.sql.operators import OperatorType


class UTCDateTime(types.TypeDecorator[datetime]):
    """Store aware datetimes and return them in UTC."""

    impl = types.DateTime
    cache_ok = True

    def __init__(self) -> None:
        super().__init__(timezone=True)

    def __repr__(self) -> str:
        return "UTCDateTime()"

    def coerce_compared_value(self, op: OperatorType | None,
                              value: Any) -> types.TypeEngine[Any]:
        if isinstance(value, timedelta):
            return types.Interval()
        return self

    def process_bind_param(self, value: datetime | None,
                           dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.utcoffset() is None:
            raise ValueError(
                "Datetime values must have timezone information. "
                "Use datetime.now(timezone.utc), or annotate the field with "
                "NaiveDatetime for naive storage.")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None,
                             dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.utcoffset() is None:  # databases without time zones store UTC, no offset
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
