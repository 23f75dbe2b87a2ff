"""`syncd explain` predicts what a run does: for any directory state after a sync and any
edits since, the changes explain plans for an object are the changes a (full) dry run plans
for it — computed by the same planner. In-memory connectors; a Hypothesis property."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd import config
from syncd.cli.explain import explain
from syncd.config.flows import Config
from syncd.cycle import engine
from syncd.testing import DIRECTORIES, directory

_n = itertools.count()

CONFIG = """
[state]
url = "sqlite:///{state}"
[connectors.src]
type = "memory"
directory = "{src}"
[connectors.dst]
type = "memory"
directory = "{dst}"
[flows.f]
source = "src"
target = "dst"
deprovision = "{deprovision}"
delete_after = "1s"
[flows.f.safety]
max_deprovision_percent = 100
max_rewrite_percent = 100
[[flows.f.users.scope]]
attribute = "title"
equals = "gone"
not = true
[flows.f.users.mapping]
userName = "uid"
title = "title"
"""

TITLES = st.sampled_from(["a", "b", "gone"])
EDIT = st.one_of(
    st.tuples(st.just("title"), st.integers(0, 5), TITLES),
    st.tuples(st.just("delete"), st.integers(0, 5), st.just("")),
    st.tuples(st.just("add"), st.integers(6, 8), TITLES),
)


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(first=st.lists(TITLES, min_size=6, max_size=6), edits=st.lists(EDIT, max_size=6),
       deprovision=st.sampled_from(["disable", "delete"]))
def test_explain_plans_what_a_run_plans(first: list[str],
                                        edits: list[tuple[str, int, str]],
                                        deprovision: str) -> None:
    n = next(_n)
    names = (f"xa-src{n}", f"xa-dst{n}")
    src = directory(names[0])
    directory(names[1])
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "c.toml"
            path.write_text(CONFIG.format(state=Path(tmp) / "s.db", src=names[0],
                                          dst=names[1], deprovision=deprovision))
            cfg = config.load(path)
            for i, title in enumerate(first):
                src.put("user", {"uid": f"u{i}", "title": title}, f"s{i}")
            (res,) = engine.run(cfg)
            assert res.result == "ok", res.errors
            for op, i, title in edits:
                if op == "delete":
                    if f"s{i}" in src.objects["user"]:
                        src.remove("user", f"s{i}")
                else:
                    src.put("user", {"uid": f"u{i}", "title": title}, f"s{i}")
            (dry,) = engine.run(cfg, dry_run=True, full=True, allow_deletes=True)
            assert dry.plan is not None
            run = {c.source_id: (c.op, dict(c.attrs)) for c in dry.plan.changes}
            for i in range(9):
                doc = _explain(cfg, f"u{i}")
                if doc is None:  # never synced and not in the source: nothing to plan
                    assert f"s{i}" not in run
                    continue
                predicted = {(c["op"], tuple(sorted(c.get("attrs", {}).items())))
                             for c in doc["plan"]}
                expected = ({(run[doc["source_id"]][0],
                              tuple(sorted(run[doc["source_id"]][1].items())))}
                            if doc["source_id"] in run else set())
                assert predicted == expected, (f"u{i}", doc, run)
    finally:
        for name in names:
            DIRECTORIES.pop(name, None)


def _explain(cfg: Config, who: str) -> dict[str, object] | None:
    from syncd.errors import SyncdError

    try:
        return explain(cfg, "f", who)
    except SyncdError:
        return None
