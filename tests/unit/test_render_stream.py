"""Plans are written as they are rendered (issue 17): a dry run of 100,000 changes holds
neither every rendered line nor every change's dict, and writes exactly what the whole
rendering wrote before (the e2e tests pin those formats)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import click
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.cli import common
from syncd.cycle import render, saved
from syncd.cycle.result import FlowResult
from syncd.cycle.session import Failure
from syncd.model import Kind
from syncd.plan.value import Change, Hold, Op, Plan

texts = st.text(max_size=12)
values = st.one_of(st.none(), texts, st.booleans(), st.tuples(texts, texts))
attrs = st.dictionaries(st.sampled_from(["userName", "title", "emails.work", "password",
                                         "name.givenName", "ä"]), values, max_size=4)


@st.composite
def changes(draw: st.DrawFn) -> Change:
    op: Op = draw(st.sampled_from(["create", "update", "set_members", "deprovision"]))
    kind: Kind = "group" if op == "set_members" else "user"
    return Change(op=op, kind=kind, source_id=draw(texts), name=draw(texts),
                  target_id=draw(st.none() | texts), attrs=draw(attrs), before=draw(attrs),
                  add=tuple(draw(st.lists(texts, max_size=3))), reason=draw(texts))


@st.composite
def results(draw: st.DrawFn) -> list[FlowResult]:
    out = []
    for n in range(draw(st.integers(0, 3))):
        r = FlowResult(f"flow{n}", draw(st.booleans()), duration=draw(st.floats(0, 99)))
        if draw(st.booleans()):
            planned: tuple[Change, ...] = tuple(draw(st.lists(changes(), max_size=25)))
            r.plan = Plan(r.flow, planned, (Hold("user", "s1", "ann", "ambiguous"),),
                          tuple(draw(st.lists(texts, max_size=2))))
            r.names = {i: f"name of {i}" for c in planned for i in c.add[:1]}
            fail: bool = draw(st.booleans())
            if planned and fail:
                r.failures = [Failure(planned[0], "Rejected", draw(texts))]
        r.warnings, r.errors = draw(st.lists(texts, max_size=2)), draw(st.lists(texts, max_size=2))
        out.append(r)
    return out


@settings(max_examples=150, deadline=None)  # large documents; a loaded machine
@given(results(), st.dictionaries(st.sampled_from(["state_store", "review"]),
                                  st.none() | texts | st.dictionaries(texts, texts)))
def test_the_json_in_pieces_is_the_json_whole(rs: list[FlowResult], extra: dict[str, Any]
                                              ) -> None:
    whole = json.dumps({**render.as_dict(rs), **extra}, indent=2, ensure_ascii=False)
    assert "".join(render.json_chunks(rs, **extra)) == whole


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda inner: st.lists(inner, max_size=4) | st.lists(inner, max_size=3).map(tuple)
    | st.dictionaries(texts, inner, max_size=4)
    | st.dictionaries(st.integers() | st.booleans() | st.none(), inner, max_size=2),
    max_leaves=20)


@given(json_values)
def test_json_pieces_is_json_dumps(value: Any) -> None:
    """Any document, its arrays plain or `Lazy` at the top (items encoded whole), twice."""
    whole = json.dumps(value, indent=2, ensure_ascii=False)
    assert "".join(render.json_pieces(value)) == whole
    if isinstance(value, list):
        lazy = render.Lazy(lambda: iter(value))
        assert "".join(render.json_pieces(lazy)) == whole
        assert "".join(render.json_pieces({"a": lazy, "b": lazy})) == json.dumps(
            {"a": value, "b": value}, indent=2, ensure_ascii=False)


@settings(max_examples=50)
@given(st.lists(changes(), max_size=20))
def test_a_saved_plan_is_written_as_it_was_dumped(planned: list[Change]) -> None:
    """`syncd plan --out` writes each change as it renders it; the file is what
    ``json.dumps`` of the whole plan (its changes masked) wrote."""
    plan = Plan("f", tuple(planned), (Hold("user", "s", "n", "why"),), ("a note",),
                {"user": 3}, {"user": {"create": 2}} if planned else {})
    whole = {**plan.to_dict(), "changes": [render.shown(c) for c in plan.changes]}
    assert "".join(render.json_pieces({"plan": saved._masked(plan)})) == json.dumps(
        {"plan": whole}, indent=2, ensure_ascii=False)


@given(values)
def test_values_are_shown_as_json(v: Any) -> None:
    if isinstance(v, tuple):
        assert render.fmt(v) == "[" + ", ".join(json.dumps(x, ensure_ascii=False)
                                                for x in v) + "]"
    elif v is not None:
        assert render.fmt(v) == json.dumps(v, ensure_ascii=False)


def _output(write: Callable[[], None]) -> str:
    return CliRunner().invoke(click.command()(write), []).output


@given(st.lists(st.text(max_size=300), max_size=40), st.sampled_from(["", "\n"]))
def test_echo_stream_writes_what_one_echo_wrote(pieces: list[str], sep: str) -> None:
    block, common._BLOCK = common._BLOCK, 500  # many blocks
    try:
        streamed = _output(lambda: common.echo_stream(iter(pieces), sep))
    finally:
        common._BLOCK = block
    assert streamed == _output(lambda: click.echo(sep.join(pieces)))


def test_echo_stream_writes_before_the_last_piece_is_made(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    written: list[str] = []
    monkeypatch.setattr(common.click, "echo", lambda text, nl=True: written.append(text))
    made_when: list[int] = []

    def pieces() -> Iterator[str]:
        for _ in range(100):
            made_when.append(len(written))
            yield "x" * 5000

    common.echo_stream(pieces(), "\n")
    assert made_when[-1] > 0, "nothing was written until everything was rendered"
    assert "".join(written) == "\n".join("x" * 5000 for _ in range(100))
