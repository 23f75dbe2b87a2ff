"""The store's Core tables (`syncd.state.schema`) are its SQLModel declarations, rendered.

A run imports the Core tables only (SQLModel and the ORM cost every start ~0.3 s, issue 17),
so a column changed in `syncd.state.declarations` without running
``scripts/gen_store_schema.py`` would silently not exist: these tests fail first.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex, CreateTable
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import UTCDateTime as SQLModelUTCDateTime

import syncd.state.declarations  # noqa: F401  (declares the tables on SQLModel.metadata)
from scripts.gen_store_schema import TARGET, render
from syncd.state import schema
from syncd.state.tables import STORE_TABLES
from syncd.state.types import UTCDateTime

DIALECTS = (sqlite.dialect(), postgresql.dialect())


def test_the_generated_module_is_what_the_declarations_render() -> None:
    assert TARGET.read_text(encoding="utf-8") == render(), (
        "syncd/state/schema.py is out of date: run .venv/bin/python scripts/gen_store_schema.py")


def _columns(table: Table) -> list[tuple[Any, ...]]:
    """What Core reads and writes depend on beyond the DDL: Python-side defaults, the type's
    bind and result processing (SQLModel's `AutoString` is a `String` off MySQL)."""
    return [(c.name, repr(c.type).replace("AutoString", "String"), c.primary_key, c.nullable,
             c.default.arg if c.default else None, c.autoincrement) for c in table.columns]


@pytest.mark.parametrize("name", sorted(SQLModel.metadata.tables))
def test_each_table_is_declared_alike(name: str) -> None:
    declared, core = SQLModel.metadata.tables[name], schema.metadata.tables[name]
    assert _columns(core) == _columns(declared)
    for dialect in DIALECTS:
        assert str(CreateTable(core).compile(dialect=dialect)) == \
            str(CreateTable(declared).compile(dialect=dialect))
        ddl = {str(CreateIndex(ix).compile(dialect=dialect)) for ix in declared.indexes}
        assert {str(CreateIndex(ix).compile(dialect=dialect)) for ix in core.indexes} == ddl


def test_no_table_missing_or_extra() -> None:
    assert set(schema.metadata.tables) == set(SQLModel.metadata.tables)
    inbox = {"inbox", "inbox_member", "inbox_seq", "inbox_pruned"}  # created by the inbox
    assert {t.name for t in STORE_TABLES} == set(schema.metadata.tables) - inbox


def _outcome(f: Any, *args: Any) -> Any:
    try:
        return f(*args)
    except ValueError as exc:
        return ("ValueError", str(exc))


@given(st.datetimes(timezones=st.none() | st.timezones()))
def test_utc_datetime_behaves_as_sqlmodels(value: Any) -> None:
    """The copy of SQLModel's datetime type stores, refuses and reads back alike, on both
    databases: aware values in UTC, naive ones refused on the way in, read back as UTC."""
    ours, theirs = UTCDateTime(), SQLModelUTCDateTime()
    for dialect in DIALECTS:
        assert _outcome(ours.process_bind_param, value, dialect) == \
            _outcome(theirs.process_bind_param, value, dialect)
        assert ours.process_result_value(value, dialect) == \
            theirs.process_result_value(value, dialect)
        assert ours.compile(dialect=dialect) == theirs.compile(dialect=dialect)
