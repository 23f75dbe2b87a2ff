"""A state store worth a status page, made by real runs of the engine on in-memory
directories: a push flow with runs that failed and an object quarantined (its error quotes a
password), a flow whose plan the safety check refused, a two-way flow holding a conflict on
an object named ``<script>alert(1)</script>``. Used by the renderer's unit tests and the
browser test (tests/e2e/test_status_browser.py)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import pytest

from syncd import config
from syncd.config.flows import Config
from syncd.cycle import engine
from syncd.errors import Rejected
from syncd.testing import DIRECTORIES, directory, fail_with

EVIL = "<script>alert(1)</script>"
#: A password the quarantined object's error text quotes, and a password attribute's value:
#: neither may appear on the page.
LEAKED = "hunter2-Leak"
PASSWORD_VALUE = "S3cret-Passw0rd"

_n = itertools.count()

CONFIG = """
[state]
url = "sqlite:///{state}"
[connectors.src]
type = "memory"
directory = "{p}src"
[connectors.dst]
type = "memory"
directory = "{p}dst"
[connectors.hr]
type = "memory"
directory = "{p}hr"
[connectors.app]
type = "memory"
directory = "{p}app"
[connectors.left]
type = "memory"
directory = "{p}left"
[connectors.right]
type = "memory"
directory = "{p}right"

[flows.people]
source = "src"
target = "dst"
[flows.people.users.mapping]
userName = "uid"
title = "title"
password = "userPassword"
[flows.people.groups.mapping]
displayName = "cn"

[flows.hr]
source = "hr"
target = "app"
[flows.hr.safety]
max_deprovision = 1
[flows.hr.users.mapping]
userName = "uid"
[flows.hr.groups.mapping]
displayName = "cn"

[flows.pair]
source = "left"
target = "right"
mode = "two_way"
[flows.pair.users]
authority = {{ title = "manual" }}
[flows.pair.users.mapping]
userName = "uid"
title = "title"
[flows.pair.groups.mapping]
displayName = "cn"
"""


@dataclass
class Scenario:
    path: Path
    cfg: Config
    prefix: str


def build(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Scenario:
    """Run the flows into the story the module docstring tells; `people` ends with 3 runs
    (ok, failed, failed), `hr` with 2 (ok, refused), `pair` with 3 (ok, ok, ok)."""
    monkeypatch.setattr("syncd.state.records.BACKOFF_BASE", 0.0)
    monkeypatch.setattr("syncd.state.records.MAX_ATTEMPTS", 2)
    p = f"status{next(_n)}-"
    path = tmp / "syncd.toml"
    path.write_text(CONFIG.format(state=tmp / "state.db", p=p))
    cfg = config.load(path)
    src, dst = directory(f"{p}src"), directory(f"{p}dst")
    src.put("user", {"uid": "alice", "title": "dev", "userPassword": PASSWORD_VALUE}, "s-alice")
    src.put("user", {"uid": EVIL, "title": "x"}, "s-evil")
    src.put("user", {"uid": "qbert", "title": "old"}, "s-qbert")

    def run(flow: str) -> str:
        (res,) = engine.run(cfg, flows=[flow])
        return res.result

    assert run("people") == "ok"
    src.put("user", {"uid": "qbert", "title": "new"}, "s-qbert")
    dst.faults["update"] = fail_with(lambda: Rejected(f"title refused; password={LEAKED}"))
    assert [run("people"), run("people")] == ["failed", "failed"]  # quarantined after 2

    hr = directory(f"{p}hr")
    for i in range(4):
        hr.put("user", {"uid": f"h{i}"}, f"h{i}")
    assert run("hr") == "ok"
    for i in range(3):
        hr.remove("user", f"h{i}")
    assert run("hr") == "refused"

    left, right = directory(f"{p}left"), directory(f"{p}right")
    left.put("user", {"uid": EVIL, "title": "t"}, "l-evil")
    assert run("pair") == "ok"
    assert run("pair") == "ok"
    left.put("user", {"uid": EVIL, "title": "from-left"}, "l-evil")
    (tid,) = right.objects["user"]
    right.put("user", {**right.objects["user"][tid], "title": "from-right"}, tid)
    assert run("pair") == "ok"
    return Scenario(path, cfg, p)


def drop(s: Scenario) -> None:
    """Forget the scenario's in-memory directories."""
    for side in ("src", "dst", "hr", "app", "left", "right"):
        DIRECTORIES.pop(f"{s.prefix}{side}", None)
