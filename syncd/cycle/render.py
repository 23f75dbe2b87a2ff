"""Human and machine output of plans and run results.

The text form is what an admin reviews before applying: per object, per attribute, old -> new.
The JSON form is one document (summary, changes, per-flow detail) for scripts and CI gates.

Both are produced piece by piece (`text_lines`, `json_chunks`) so that the CLI writes a plan
of 100,000 changes as it renders it, holding neither every rendered line nor every change's
dict: `text` and `as_dict` are the same output whole, for callers that want a value.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Any

from syncd.cycle.result import MEMBERS_SHOWN, FlowResult
from syncd.model import Value
from syncd.plan.value import Change
from syncd.redact import mask_attributes

SIGN = {"create": "+", "adopt": "=", "update": "~", "set_members": "±",
        "deprovision": "-", "delete": "x"}


def _json(v: Any) -> str:
    """``json.dumps(v, ensure_ascii=False)``; a string (almost every value) without building
    an encoder each time: a third of rendering a large plan went there."""
    return encode_basestring(v) if type(v) is str else json.dumps(v, ensure_ascii=False)


def fmt(v: Value) -> str:
    if v is None:
        return "(empty)"
    if isinstance(v, tuple):
        return "[" + ", ".join(_json(x) for x in v) + "]"
    return _json(v)


def named(v: Value, refs: Mapping[str, str]) -> str:
    """A value, and the name of the object it references (a manager's target id)."""
    text = fmt(v)
    if isinstance(v, str) and v in refs:
        return f"{text} ({refs[v]})"
    if isinstance(v, tuple) and any(x in refs for x in v):
        return text + " (" + ", ".join(refs.get(x, x) for x in v) + ")"
    return text


def change_lines(c: Change, names: Mapping[str, str], detail: bool = True,
                 refs: Mapping[str, str] | None = None) -> list[str]:
    head = f"{SIGN[c.op]} {c.op} {c.kind} {c.name}"
    if c.target_id:
        head += f" [{c.target_id}]"
    if c.reason:
        head += f"  ({c.reason})"
    lines = [head]
    if not detail:
        return lines
    attrs, before = mask_attributes(c.attrs), mask_attributes(c.before)
    refs = refs or {}
    if c.op == "create":
        for path in sorted(attrs):
            new = attrs[path]
            # `named` of a string naming no referenced object, without its two calls: a
            # create's lines are most of a large dry run's output
            shown = (encode_basestring(new) if type(new) is str and new not in refs
                     else named(new, refs))
            lines.append(f"    {path}: {shown}")
    else:
        for path in sorted(attrs):
            lines.append(f"    {path}: {named(before.get(path), refs)} → "
                         f"{named(attrs[path], refs)}")
    for label, ids in (("add", c.add), ("remove", c.remove)):
        if ids:
            shown = ", ".join(names.get(i, i) for i in ids[:MEMBERS_SHOWN])
            more = f" … (+{len(ids) - MEMBERS_SHOWN})" if len(ids) > MEMBERS_SHOWN else ""
            lines.append(f"    members {label}: {shown}{more}")
    return lines


#: Plans longer than this open with counts per operation and attribute, so 3,000 identical
#: title updates read as one line before their detail.
SUMMARY_AT = 20


def attribute_summary(changes: Sequence[Change]) -> list[str]:
    """One line per kind and operation: how many, and per attribute (or member) how often."""
    counts: dict[tuple[str, str], int] = {}
    paths: dict[tuple[str, str], dict[str, int]] = {}
    for c in changes:
        key = (c.kind, c.op)
        counts[key] = counts.get(key, 0) + 1
        per = paths.setdefault(key, {})
        for path in c.attrs:
            per[path] = per.get(path, 0) + 1
        for label, ids in (("members added", c.add), ("members removed", c.remove)):
            if ids:
                per[label] = per.get(label, 0) + len(ids)
    lines = ["by operation and attribute:"]
    for (kind, op), n in counts.items():
        ranked = sorted(paths[(kind, op)].items(), key=lambda kv: (-kv[1], kv[0]))
        detail = ", ".join(f"{p} {k}" for p, k in ranked[:12])
        more = f", … {len(ranked) - 12} more" if len(ranked) > 12 else ""
        lines.append(f"  {n} {op} {kind}" + (f": {detail}{more}" if detail else ""))
    return lines


def shown(c: Change) -> dict[str, Any]:
    """A change as output and saved plans carry it: secret attributes masked."""
    d = c.to_dict()
    for key in ("attrs", "before", "base", "source_attrs", "source_before"):
        if key in d:
            d[key] = mask_attributes(d[key])
    return d


def summary_line(s: Mapping[str, Mapping[str, int]]) -> str:
    parts = []
    for kind, ops in s.items():
        counts = ", ".join(f"{n} {op}" for op, n in ops.items() if n)
        parts.append(f"{kind}s: {counts or 'no changes'}")
    return "; ".join(parts)


def text(results: Sequence[FlowResult], *, detail: bool = True) -> str:
    return "\n".join(text_lines(results, detail=detail))


def text_lines(results: Sequence[FlowResult], *, detail: bool = True) -> Iterator[str]:
    """The lines of `text`, one at a time (a change's lines as they are rendered)."""
    for r in results:
        yield from _flow_lines(r, detail)


def _flow_lines(r: FlowResult, detail: bool) -> Iterator[str]:
    mode = "plan (dry run, nothing written)" if r.dry_run else "run"
    yield f"flow {r.flow}: {mode}"
    for w in r.warnings:
        yield f"  warning: {w}"
    if r.plan is not None:
        for n in r.plan.notes:
            yield f"  note: {n}"
        if len(r.plan.changes) > SUMMARY_AT:
            for line in attribute_summary(r.plan.changes):
                yield "  " + line
        for c in r.plan.changes:
            for line in change_lines(c, r.names, detail, r.ref_names):
                yield "  " + line
        for h in r.plan.held:
            yield f"  ! hold {h.kind} {h.name}: {h.reason}"
        yield f"  summary: {summary_line(r.plan.summary())}"
    if r.plan is not None and r.plan.streamed:
        count = sum(sum(ops.values()) for ops in r.plan.streamed.values())
        yield (f"  ({count} changes applied while the source was read are counted in the "
               f"summary, not listed: the run's journal has each one)")
    for reason in r.refused:
        yield f"  REFUSED by safety check: {reason}"
    if r.refused:
        yield ("  nothing was applied; rerun with --allow-deletes (alias "
               "--allow-destructive) if this is intended")
    for f in r.failures:
        yield (f"  FAILED {f.change.op} {f.change.kind} {f.change.name}: "
               f"{f.error_class}: {f.message}")
    for e in r.errors:
        yield f"  ERROR {e}"
    if not r.dry_run:
        yield (f"  result: {r.result}, {r.applied} applied, {len(r.failures)} failed, "
               f"{r.duration:.2f}s")


def as_dict(results: Sequence[FlowResult]) -> dict[str, Any]:
    total, flows = _totals_and_flows(results)
    return {"summary": total, "changes": list(_changes(results)), "flows": flows}


def json_chunks(results: Sequence[FlowResult], **extra: Any) -> Iterator[str]:
    """``json.dumps({**as_dict(results), **extra}, indent=2, ensure_ascii=False)``, the same
    text in pieces: one per change, each made when it is written."""
    total, flows = _totals_and_flows(results)
    return json_pieces({"summary": total, "changes": Lazy(lambda: _changes(results)),
                        "flows": flows, **extra})


@dataclass(frozen=True)
class Lazy:
    """A JSON array whose items are made one by one as `json_pieces` writes them (the
    changes of a plan: never all rendered as dicts at once). `items` makes a fresh iterator
    each time, so a document can be written twice (a saved plan: the file and stdout)."""

    items: Callable[[], Iterable[Any]]


def json_pieces(value: Any, level: int = 0) -> Iterator[str]:
    """``json.dumps(value, indent=2, ensure_ascii=False)`` in pieces, written `level` deep;
    `Lazy` arrays item by item (each item is encoded whole)."""
    pad = "\n" + "  " * (level + 1)
    if isinstance(value, Lazy):
        n = 0
        for n, item in enumerate(value.items(), 1):
            yield ("[" if n == 1 else ",") + pad + _nested(item, level + 1)
        yield "\n" + "  " * level + "]" if n else "[]"
    elif isinstance(value, dict) and value:
        for n, (key, item) in enumerate(value.items()):
            name = key if isinstance(key, str) else json.dumps(key)
            yield ("{" if n == 0 else ",") + pad + _json(name) + ": "
            yield from json_pieces(item, level + 1)
        yield "\n" + "  " * level + "}"
    elif isinstance(value, list | tuple) and value:
        for n, item in enumerate(value):
            yield "[" if n == 0 else ","
            yield pad
            yield from json_pieces(item, level + 1)
        yield "\n" + "  " * level + "]"
    else:
        yield _nested(value, level)


def _nested(value: Any, level: int = 1) -> str:
    """`value` as ``json.dumps(indent=2, ensure_ascii=False)`` writes it `level` deep.

    Written here because with an indent `json` encodes in pure Python, one generator per
    container: the JSON of a dry run of 20,000 creates took ~0.45 s more CPU than its text
    (issue 17). Strings, exact ints, bools and None are encoded directly (strings by the C
    `encode_basestring`); anything else (a float, a subclass, a non-string key) goes through
    `json.dumps` itself, so the text is json's whatever comes."""
    out: list[str] = []
    _encode(value, "\n" + "  " * level, out)
    return "".join(out)


_SCALARS: dict[Any, str] = {None: "null", True: "true", False: "false"}


def _encode(value: Any, pad: str, out: list[str]) -> None:
    t = type(value)
    if t is str:
        out.append(encode_basestring(value))
    elif t is int:
        out.append(int.__repr__(value))
    elif value is None or t is bool:
        out.append(_SCALARS[value])
    elif t is dict and all(type(k) is str for k in value):
        if not value:
            out.append("{}")
            return
        inner = pad + "  "
        sep = "{" + inner
        for key, item in value.items():
            out.append(sep + encode_basestring(key) + ": ")
            _encode(item, inner, out)
            sep = "," + inner
        out.append(pad + "}")
    elif t is list or t is tuple:
        if not value:
            out.append("[]")
            return
        inner = pad + "  "
        sep = "[" + inner
        for item in value:
            out.append(sep)
            _encode(item, inner, out)
            sep = "," + inner
        out.append(pad + "]")
    else:  # JSON strings hold no raw newline, so every newline is indentation
        out.append(json.dumps(value, indent=2, ensure_ascii=False).replace("\n", pad))


def _changes(results: Iterable[FlowResult]) -> Iterator[dict[str, Any]]:
    for r in results:
        if r.plan is not None:
            for c in r.plan.changes:
                yield {"flow": r.flow, **shown(c)}


def _totals_and_flows(results: Sequence[FlowResult]
                      ) -> tuple[dict[str, dict[str, int]], list[dict[str, Any]]]:
    total: dict[str, dict[str, int]] = {}
    flows = []
    for r in results:
        s = r.plan.summary() if r.plan is not None else {}
        for kind, ops in s.items():
            for op, n in ops.items():
                total.setdefault(kind, {}).setdefault(op, 0)
                total[kind][op] += n
        if r.plan is not None:
            named = {i for c in r.plan.changes for i in (*c.add, *c.remove) if i in r.names}
        flows.append({
            "flow": r.flow, "dry_run": r.dry_run, "result": r.result, "run_id": r.run_id,
            "reads": r.reads,
            "member_names": {i: r.names[i] for i in sorted(named)} if r.plan is not None else {},
            "summary": s, "applied": r.applied, "duration_s": round(r.duration, 3),
            "held": [vars(h) for h in r.plan.held] if r.plan is not None else [],
            "notes": list(r.plan.notes) if r.plan is not None else [],
            "warnings": r.warnings, "refused": r.refused, "errors": r.errors,
            "failures": [{"change": f.change.id, "name": f.change.name,
                          "error_class": f.error_class, "message": f.message}
                         for f in r.failures],
        })
    return total, flows
