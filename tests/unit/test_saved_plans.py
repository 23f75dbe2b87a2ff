"""Saved plans through the real CLI, with in-memory directories: `syncd plan --out` then
`syncd apply`, exactly what was reviewed, object approvals past a refusal, and changes whose
objects moved since the review left alone."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.cli.main import main
from syncd.cycle.saved import Review, approvals
from syncd.errors import ConfigError
from syncd.plan.value import Change, Plan
from syncd.testing import DIRECTORIES, Directory, directory

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
deprovision = "disable"
[flows.f.users.mapping]
userName = "uid"
title = "title"
[flows.f.groups.mapping]
displayName = "cn"
"""


class Env:
    def __init__(self, tmp: Path) -> None:
        n = next(_n)
        self.names = (f"sp-src{n}", f"sp-dst{n}")
        self.src: Directory = directory(self.names[0])
        self.dst: Directory = directory(self.names[1])
        self.cfg = tmp / "c.toml"
        self.cfg.write_text(CONFIG.format(state=tmp / "s.db", src=self.names[0],
                                          dst=self.names[1]))
        self.plan = tmp / "plan.json"

    def cli(self, *args: str) -> tuple[int, str]:
        res = CliRunner().invoke(main, list(args))
        return res.exit_code, res.stdout + res.stderr

    def active(self) -> dict[str, object]:
        return {str(a["userName"]): a.get("active", True)
                for a in self.dst.objects["user"].values()}

    def titles(self) -> dict[str, object]:
        return {str(a["userName"]): a.get("title") for a in self.dst.objects["user"].values()}


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    for i in range(10):
        e.src.put("user", {"uid": f"u{i}", "title": "t"}, f"s{i}")
    assert e.cli("run", "-c", str(e.cfg))[0] == 0
    yield e
    for name in e.names:
        DIRECTORIES.pop(name, None)


def test_apply_does_exactly_what_was_reviewed(env: Env) -> None:
    for i in (1, 2, 3):
        env.src.put("user", {"uid": f"u{i}", "title": "new"}, f"s{i}")
    code, out = env.cli("plan", "-c", str(env.cfg), "--out", str(env.plan))
    assert code == 0, out
    assert env.plan.stat().st_mode & 0o777 == 0o600
    assert env.titles()["u1"] == "t"  # a plan writes nothing
    env.src.put("user", {"uid": "u3", "title": "newer"}, "s3")  # moved since the review
    env.src.put("user", {"uid": "u11", "title": "t"}, "s11")  # never reviewed
    code, out = env.cli("apply", str(env.plan))
    assert code == 1, out  # u3 was not applied: the admin is told to plan again
    assert "no longer planned as reviewed" in out and "u3" in out
    assert "1 changes planned now were never reviewed" in out
    titles = env.titles()
    assert (titles["u1"], titles["u2"], titles["u3"]) == ("new", "new", "t")
    assert "u11" not in titles
    code, out = env.cli("run", "-c", str(env.cfg))  # the next run picks up the rest
    assert code == 0, out
    assert env.titles()["u3"] == "newer" and "u11" in env.titles()


def test_a_refused_plan_is_approved_object_by_object(env: Env) -> None:
    for i in range(6):
        env.src.remove("user", f"s{i}")  # 60 %: over the 20 % deprovisioning threshold
    code, out = env.cli("plan", "-c", str(env.cfg), "--out", str(env.plan))
    assert code == 3, out
    assert "REFUSED" in out and env.plan.exists()
    code, out = env.cli("apply", str(env.plan))
    assert code == 3, out  # applied as a whole it is refused again
    assert all(a is not False for a in env.active().values())
    code, out = env.cli("apply", str(env.plan), "--approve", "u1", "--approve", "U2")
    assert code == 0, out
    active = env.active()
    assert (active["u1"], active["u2"]) == (False, False)
    assert [n for n, a in active.items() if a is False] == ["u1", "u2"]
    code, out = env.cli("apply", str(env.plan), "--approve-all")
    assert code == 1, out  # u1 and u2 are done: no longer planned as reviewed
    assert sorted(n for n, a in env.active().items() if a is False) == [
        f"u{i}" for i in range(6)]


def test_a_plan_is_only_valid_for_its_config(env: Env) -> None:
    env.src.put("user", {"uid": "u1", "title": "new"}, "s1")
    assert env.cli("plan", "-c", str(env.cfg), "--out", str(env.plan))[0] == 0
    env.cfg.write_text(env.cfg.read_text().replace('title = "title"',
                                                   'title = "title"\nnickName = "uid"'))
    code, out = env.cli("apply", str(env.plan))
    assert code == 2 and "changed since this plan was made" in out
    env.plan.write_text("{not json")
    code, out = env.cli("apply", str(env.plan))
    assert code == 2 and "cannot read plan" in out
    assert env.titles()["u1"] == "t"


def test_saved_plan_matches_the_dry_run(env: Env) -> None:
    env.src.put("user", {"uid": "u4", "title": "x"}, "s4")
    code, out = env.cli("run", "--dry-run", "-o", "json", "-c", str(env.cfg))
    assert code == 0, out
    dry = json.loads(out)["changes"]
    assert env.cli("plan", "-c", str(env.cfg), "--out", str(env.plan))[0] == 0
    (saved,) = json.loads(env.plan.read_text())["flows"]
    assert [{**c, "flow": "f"} for c in saved["plan"]["changes"]] == dry


def test_approvals_name_exactly_one_object(env: Env) -> None:
    for i in range(6):
        env.src.remove("user", f"s{i}")
    assert env.cli("plan", "-c", str(env.cfg), "--out", str(env.plan))[0] == 3
    for token, why in (("nobody", "no change of this plan is about it"),
                       ("u7", "no change of this plan is about it")):  # u7 stays: no change
        code, out = env.cli("apply", str(env.plan), "--approve", token)
        assert code == 2 and why in out, out
    code, out = env.cli("apply", str(env.plan), "--approve", "s3")  # by anchor: source id
    assert code == 0, out
    assert [n for n, a in env.active().items() if a is False] == ["u3"]


def test_an_ambiguous_approval_is_refused() -> None:
    """A name two objects share (a user and a group) approves neither: use the anchor."""
    plan = Plan("f", (Change("deprovision", "user", "s1", "staff", "t1"),
                      Change("deprovision", "group", "g1", "Staff", "t2"),
                      Change("deprovision", "user", "s2", "t1", "t3")))
    with pytest.raises(ConfigError, match="names several objects"):
        approvals({"f": plan}, ["staff"])
    assert approvals({"f": plan}, ["g1"]) == {("f", "group", "g1")}
    # a name wins over an anchor that happens to look the same
    assert approvals({"f": plan}, ["t1"]) == {("f", "user", "s2")}
    # the same object id in two flows is two objects: naming it approves neither
    with pytest.raises(ConfigError, match="names several objects"):
        approvals({"f": plan, "g": plan}, ["g1"])


KEYS = st.tuples(st.sampled_from(["user", "group"]), st.sampled_from("abcdef"),
                 st.sampled_from(["update", "deprovision"]))


def _change(key: tuple[str, str, str], title: str) -> Change:
    kind, sid, op = key
    return Change(op, kind, sid, f"name-{sid}", f"t-{sid}",  # type: ignore[arg-type]
                  attrs={"title": title}, base={"title": title})


@settings(max_examples=200, deadline=None)
@given(reviewed=st.dictionaries(KEYS, st.sampled_from(["x", "y"]), max_size=8),
       fresh=st.dictionaries(KEYS, st.sampled_from(["x", "y"]), max_size=8),
       approved=st.sets(st.sampled_from("abcdef"), max_size=3))
def test_review_keeps_exactly_the_reviewed_changes_still_planned(
        reviewed: dict[tuple[str, str, str], str], fresh: dict[tuple[str, str, str], str],
        approved: set[str]) -> None:
    """Applied = reviewed ∩ fresh (same object, op and values), narrowed to the approved
    objects; never a change only one side has, never a reviewed one whose values moved."""
    mine = Plan("f", tuple(_change(k, v) for k, v in reviewed.items()))
    now = Plan("f", Plan.ordered([_change(k, v) for k, v in fresh.items()]))
    objects = frozenset(("f", k, sid) for k, sid, _op in reviewed if sid in approved)
    review = Review({"f": mine}, objects)
    kept = {(c.kind, c.source_id, c.op): c.attrs["title"] for c in review(now).changes}
    expected = {k: v for k, v in reviewed.items() if fresh.get(k) == v
                and (not objects or ("f", k[0], k[1]) in objects)}
    assert kept == expected
    out = review.outcomes["f"]
    assert len(out.kept) + len(out.stale) + len(out.not_approved) == len(reviewed)


def test_apply_while_the_daemon_holds_the_flow_is_one_line(env: Env) -> None:
    from syncd.state.store import Store

    env.src.put("user", {"uid": "u1", "title": "new"}, "s1")
    assert env.cli("plan", "-c", str(env.cfg), "--out", str(env.plan))[0] == 0
    store = Store(f"sqlite:///{env.cfg.parent / 's.db'}")
    store.lock("f")  # as a running daemon's cycle would
    try:
        code, out = env.cli("apply", str(env.plan))
    finally:
        store.unlock("f")
        store.close()
    assert code == 1 and out.startswith("error: ") and "Traceback" not in out, out
    assert env.titles()["u1"] == "t"


def test_an_approved_leaver_also_leaves_its_groups(env: Env) -> None:
    """The group's own change moved since the review (a member joined), so it is not applied;
    the approved user's removal from it still is: deleted users never stay group members."""
    env.src.put("group", {"cn": "g"}, "g1")
    env.src.set_group_members("g1", {"s1", "s2"})
    assert env.cli("run", "-c", str(env.cfg))[0] == 0
    env.src.remove("user", "s1")
    assert env.cli("plan", "-c", str(env.cfg), "--out", str(env.plan))[0] == 0
    env.src.set_group_members("g1", {"s2", "s3"})  # s1 gone from the group, s3 joined
    code, out = env.cli("apply", str(env.plan), "--approve", "u1")
    assert code in (0, 1), out
    (gid,) = env.dst.objects["group"]
    names = {env.dst.objects["user"][m]["userName"] for m in env.dst.members[gid]}
    assert "u1" not in names and env.active()["u1"] is False
    assert "u3" not in names  # the unreviewed addition waits for the next run


def test_a_malformed_plan_file_is_one_line(env: Env) -> None:
    for text in ("[]", '{"syncd_plan": 1, "config_sha256": "x"}'):
        env.plan.write_text(text)
        code, out = env.cli("apply", str(env.plan), "-c", str(env.cfg))
        assert code == 2 and "Traceback" not in out, out
