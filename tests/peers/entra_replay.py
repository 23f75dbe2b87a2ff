"""Replay the provisioning requests Microsoft Entra ID and Okta document against any SCIM 2.0
service provider, and check what it answers and what it ends up holding.

    results = replay("https://host/scim/v2", "token", "aadOptscim062020")
    assert not failures(results), report(results)

The request sequences are data: ``tests/peers/entra_replay/sequence.json`` (Entra ID, flavours
``aadOptscim062020`` -- the feature flag's SCIM-compliant PATCH -- and
``AzureAdScimPatch2017`` -- the behaviour without it, the name Microsoft gives its downgrade
flag) and ``tests/peers/okta_replay/sequence.json`` (Okta, flavours ``oin`` -- an OIN
integration: PUT for profile updates, PATCH for (de)activation and group push -- and ``aiw`` --
a custom App Integration Wizard app: PUT for every update). Every step names the documentation
it comes from (``source``). The sequences' README.md says how a step is written.

Each step is sent with httpx exactly as stored (method, path, query in order, body), after
``{placeholders}`` are filled from the sequence's ``vars`` and from ids the server returned
earlier (``save``). Its answer is checked: the status code against ``expect.status``, the body
against ``expect.checks``. ``verify`` steps are not the client's traffic: they read the
resources back to check the final state (values, ``active`` as a JSON boolean, members).

Phases: ``provision`` (connection test, existence checks, creates, updates, disable, group,
members) and ``deprovision`` (deletes; for Okta deactivation, as Okta never deletes a user).

A second replay (``existing=True``) is what the client does when the objects are already
there: the existence check finds each object (``expect_existing``: one result), the client
takes its id from there and skips the POST (``skip_when_existing``), then sends the same
updates again. A compliant service provider answers them as before and ends in the same state:
PATCH ``replace``/``add`` of values the resource already holds changes nothing (RFC 7644
§3.5.2.1, .3: an existing member value is not added twice), the members removal finds the
member that the sequence added again just before. So run ``phases=("provision",)`` twice
(the second time with ``existing=True``), then ``phases=("deprovision",)``.

Run it by hand: ``python -m tests.peers.entra_replay URL TOKEN FLAVOUR [--existing]
[--phase provision] [--run 0a1b2c3d]`` prints one line per step and exits 1 on a failure.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ENTRA = HERE / "entra_replay" / "sequence.json"
OKTA = HERE / "okta_replay" / "sequence.json"

#: flavour -> the sequence file that has it
FLAVOURS: dict[str, Path] = {
    "aadOptscim062020": ENTRA,
    "AzureAdScimPatch2017": ENTRA,
    "oin": OKTA,
    "aiw": OKTA,
}
ENTRA_FLAVOURS = ("aadOptscim062020", "AzureAdScimPatch2017")
OKTA_FLAVOURS = ("oin", "aiw")
PHASES = ("provision", "deprovision")
DEFAULT_RUN = "76900159"

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()


@dataclass
class StepResult:
    """One step as sent and answered. ``ok`` is False when the status or a check failed, or
    the step could not be sent (an id it needs was never learned)."""

    id: str
    title: str
    phase: str
    kind: str  # "request" (the client's traffic) or "verify" (reads the state back)
    method: str
    url: str
    status: int | None = None
    ok: bool = True
    skipped: bool = False  # skip_when_existing on a second replay
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    request_body: Any = None
    response_body: Any = None

    def line(self) -> str:
        mark = "skip" if self.skipped else ("ok" if self.ok else "FAIL")
        head = f"{mark:4s} {self.id:28s} {self.method:6s} {self.status or '-'!s:4s}"
        return head + (f"  {'; '.join(self.problems)}" if self.problems else "")


def load(flavour: str) -> dict[str, Any]:
    """The sequence document that holds `flavour`."""
    try:
        path = FLAVOURS[flavour]
    except KeyError:
        raise ValueError(f"unknown flavour {flavour!r}; one of {sorted(FLAVOURS)}") from None
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


def steps_for(flavour: str, phases: Iterable[str] = PHASES) -> list[dict[str, Any]]:
    """The steps of `flavour` in `phases`, each with its flavour's variant merged in."""
    wanted = set(phases)
    out = []
    for step in load(flavour)["steps"]:
        if step.get("only") and flavour not in step["only"]:
            continue
        if step.get("phase", "provision") not in wanted:
            continue
        merged = {k: v for k, v in step.items() if k != "variants"}
        merged.update(step.get("variants", {}).get(flavour, {}))
        out.append(merged)
    return out


def replay(
    base_url: str,
    token: str | None,
    flavour: str,
    *,
    phases: Sequence[str] = PHASES,
    existing: bool = False,
    run: str = DEFAULT_RUN,
    ids: dict[str, str] | None = None,
    transport: httpx.BaseTransport | None = None,
    timeout: float = 30.0,
    steps: Collection[str] | None = None,
) -> list[StepResult]:
    """Send `flavour`'s documented requests to the SCIM service provider at `base_url` (the
    URL its clients are configured with, e.g. ``https://host/scim/v2``) with bearer `token`,
    check every answer, return one result per step.

    `run` goes into every userName, externalId and displayName the sequence creates: the same
    `run` addresses the same objects (a second replay), another one new objects. `existing`:
    the objects of `run` were provisioned by an earlier replay (see the module docstring).
    `ids`: the ids the server assigned (``user1_id``, ``group_id``, ...) are stored into it,
    and a later replay given the same dict starts from them (deprovision in a call of its own,
    as the client remembers the ids of what it provisioned).
    `steps`: only the steps with these ids (a sequence sent in parts, with the same `ids`,
    so that a test can look at the peer between two of them).
    """
    doc = load(flavour)
    env: dict[str, Any] = {"run": run, "probe": str(uuid.uuid4())}
    for name, template in doc.get("vars", {}).items():
        env[name] = _fill(template, env)
    learned = ids if ids is not None else {}
    env.update(learned)
    headers = dict(doc.get("headers", {}))
    if token:
        headers["Authorization"] = f"Bearer {token}"
    results: list[StepResult] = []
    with httpx.Client(
        base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
    ) as http:
        for step in steps_for(flavour, phases):
            if steps is not None and step["id"] not in steps:
                continue
            results.append(_run_step(http, step, env, existing, learned))
    return results


def failures(results: Iterable[StepResult]) -> list[StepResult]:
    return [r for r in results if not r.ok]


def report(results: Iterable[StepResult]) -> str:
    return "\n".join(r.line() for r in results)


# -- one step ------------------------------------------------------------------------------


def _run_step(
    http: httpx.Client,
    step: Mapping[str, Any],
    env: dict[str, Any],
    existing: bool,
    learned: dict[str, str],
) -> StepResult:
    method = step["method"]
    result = StepResult(
        id=step["id"],
        title=step.get("title", ""),
        phase=step.get("phase", "provision"),
        kind=step.get("kind", "request"),
        method=method,
        url=step["path"],
    )
    if existing and step.get("skip_when_existing"):
        result.skipped = True
        return result
    try:
        path = _fill(step["path"], env)
        query = [(k, _fill(v, env)) for k, v in step.get("query", [])]
        body = _fill(step["body"], env) if "body" in step else None
        expect = _fill(step.get("expect_existing" if existing else "expect")
                       or step.get("expect") or {}, env)
    except KeyError as exc:
        result.ok = False
        result.problems.append(f"not sent: {exc.args[0]} was never learned")
        return result
    result.url = str(http.build_request(method, path, params=query).url)
    result.request_body = body
    content = None if body is None else json.dumps(body).encode()
    t0 = time.perf_counter()
    try:
        response = http.request(method, path, params=query, content=content)
    except httpx.HTTPError as exc:
        result.seconds = time.perf_counter() - t0
        result.ok = False
        result.problems.append(f"transport error: {exc!r}")
        return result
    result.seconds = time.perf_counter() - t0
    result.status = response.status_code
    data: Any = MISSING
    if response.content:
        try:
            data = response.json()
        except ValueError:
            data = MISSING
            result.problems.append(f"body is not JSON: {response.text[:80]!r}")
    result.response_body = None if data is MISSING else data
    statuses = expect.get("status", [200])
    if response.status_code not in statuses:
        result.problems.append(f"status {response.status_code}, expected {statuses}"
                               + _scim_error(data))
    else:
        for check in expect.get("checks", []):
            problem = _check(data, check)
            if problem:
                result.problems.append(problem)
        saves = step.get("save_existing" if existing else "save") or step.get("save") or {}
        for name, where in saves.items():
            value = resolve(data, _fill(where, env))
            if value is MISSING or not isinstance(value, str | int):
                result.problems.append(f"cannot save {name}: nothing at {where}")
            else:
                env[name] = learned[name] = str(value)
    result.ok = not result.problems
    return result


def _scim_error(data: Any) -> str:
    if isinstance(data, dict):
        bits = [str(data[k]) for k in ("scimType", "detail") if data.get(k)]
        if bits:
            return f" ({': '.join(bits)})"
    return ""


# -- placeholders, paths, checks -----------------------------------------------------------


def _fill(value: Any, env: Mapping[str, Any]) -> Any:
    """`value` with every ``{name}`` in its strings replaced from `env` (KeyError: unknown)."""
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: str(env[m.group(1)]), value)
    if isinstance(value, list):
        return [_fill(v, env) for v in value]
    if isinstance(value, dict):
        return {_fill(k, env): _fill(v, env) for k, v in value.items()}
    return value


def resolve(data: Any, path: Sequence[Any]) -> Any:
    """Follow `path` into a JSON document: a string is a key (case-insensitive, as SCIM
    attribute names are, RFC 7643 §2.1), an int an index, a dict picks the first list item
    whose fields equal it (``{"type": "work"}``). MISSING when there is nothing there."""
    cur = data
    for part in path:
        if isinstance(part, str):
            if not isinstance(cur, dict):
                return MISSING
            if part in cur:
                cur = cur[part]
                continue
            low = part.lower()
            match = [k for k in cur if isinstance(k, str) and k.lower() == low]
            if not match:
                return MISSING
            cur = cur[match[0]]
        elif isinstance(part, int):
            if not isinstance(cur, list) or not -len(cur) <= part < len(cur):
                return MISSING
            cur = cur[part]
        elif isinstance(part, dict):
            if not isinstance(cur, list):
                return MISSING
            found = [item for item in cur if isinstance(item, dict)
                     and all(same(resolve(item, [k]), v) for k, v in part.items())]
            if not found:
                return MISSING
            cur = found[0]
        else:
            raise TypeError(f"bad path element {part!r}")
    return cur


def same(got: Any, want: Any) -> bool:
    """JSON equality that keeps booleans apart from strings and numbers: ``"False"`` and
    ``0`` are not ``false``."""
    if isinstance(got, bool) or isinstance(want, bool):
        return isinstance(got, bool) and isinstance(want, bool) and got is want
    if isinstance(got, list) and isinstance(want, list):
        return len(got) == len(want) and all(same(g, w) for g, w in zip(got, want, strict=True))
    if isinstance(got, dict) and isinstance(want, dict):
        return got.keys() == want.keys() and all(same(got[k], want[k]) for k in got)
    return bool(got == want)


_TYPES: dict[str, tuple[type, ...]] = {
    "integer": (int,), "string": (str,), "boolean": (bool,), "list": (list,), "object": (dict,),
}


def _check(data: Any, check: Mapping[str, Any]) -> str | None:
    """None when `check` holds on `data`, else what is wrong. Forms (``path`` as `resolve`):
    equals, absent (or null), absent_or_empty, present, len, type, values (the set of the
    ``value`` sub-attribute of a multi-valued attribute: members), contains (a list holds
    the item)."""
    path = check["path"]
    got = resolve(data, path)
    where = "/".join(json.dumps(p) if not isinstance(p, str) else p for p in path)
    if "equals" in check:
        if not same(got, check["equals"]):
            return f"{where} = {_show(got)}, expected {json.dumps(check['equals'])}"
    elif check.get("absent"):
        if got is not MISSING and got is not None:
            return f"{where} = {_show(got)}, expected absent"
    elif check.get("absent_or_empty"):
        if got is not MISSING and got not in (None, [], {}):
            return f"{where} = {_show(got)}, expected absent or empty"
    elif check.get("present"):
        if got is MISSING or got is None:
            return f"{where} is missing"
    elif "len" in check:
        n = len(got) if isinstance(got, list) else 0 if got in (MISSING, None) else -1
        if n != check["len"]:
            return f"{where} has {n} items ({_show(got)}), expected {check['len']}"
    elif "type" in check:
        types = _TYPES[check["type"]]
        if (isinstance(got, bool) and bool not in types) or not isinstance(got, types):
            return f"{where} = {_show(got)}, expected a JSON {check['type']}"
    elif "values" in check:
        items = got if isinstance(got, list) else [] if got in (MISSING, None) else None
        if items is None:
            return f"{where} = {_show(got)}, expected a list"
        values = sorted(str(i.get("value")) if isinstance(i, dict) else repr(i) for i in items)
        if values != sorted(check["values"]):
            return f"{where} values {values}, expected {sorted(check['values'])}"
    elif "contains" in check:
        if not isinstance(got, list) or not any(same(i, check["contains"]) for i in got):
            return f"{where} = {_show(got)}, expected to contain {check['contains']!r}"
    else:
        raise ValueError(f"unknown check {check!r}")
    return None


def _show(value: Any) -> str:
    text = "<missing>" if value is MISSING else json.dumps(value)
    return text if len(text) <= 120 else text[:117] + "..."


# -- command line --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="the SCIM base URL, e.g. https://host/scim/v2")
    parser.add_argument("token", help="bearer token ('' for none)")
    parser.add_argument("flavour", choices=sorted(FLAVOURS))
    parser.add_argument("--phase", action="append", choices=PHASES,
                        help="phases to send (default: both)")
    parser.add_argument("--existing", action="store_true",
                        help="second replay: the objects of --run exist already")
    parser.add_argument("--run", default=DEFAULT_RUN)
    args = parser.parse_args(argv)
    results = replay(args.url, args.token or None, args.flavour,
                     phases=tuple(args.phase or PHASES), existing=args.existing, run=args.run)
    print(report(results))
    bad = failures(results)
    print(f"{len(results)} steps, {len(bad)} failed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
