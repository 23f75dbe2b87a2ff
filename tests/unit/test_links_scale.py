"""What keeps a million users' reconcile and initial sync within memory (issue 17): the links
not seen are tested as they stream in, and member names for the output are looked up only
for the members it shows, from the links' base, within a bound."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.cycle import commit
from syncd.cycle.commit import name_members
from syncd.cycle.result import MEMBERS_SHOWN, FlowResult
from syncd.model import Kind, StoredAttrs, digest
from syncd.plan.value import Change, Plan
from syncd.state.records import Link
from syncd.state.store import Store
from tests.unit.test_engine import Env, env  # noqa: F401 (fixture)

_flows = itertools.count()


def _link(flow: str, sid: str, status: str = "active") -> Link:
    base = StoredAttrs.of({"userName": f"name-{sid}"})
    return Link(flow, "user", sid, f"t-{sid}", base, digest(base), None, status)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return Store(f"sqlite:///{tmp_path_factory.mktemp('links') / 'state.db'}")


ids = st.sets(st.text("abcdef0123456789", min_size=1, max_size=6), max_size=40)


@settings(max_examples=60, deadline=None)
@given(linked=ids, seen=ids, disabled=ids)
def test_links_not_seen_are_exactly_the_links_minus_the_seen(
        store: Store, linked: set[str], seen: set[str], disabled: set[str]) -> None:
    flow = f"f{next(_flows)}"
    store.save_links([_link(flow, s, "disabled" if s in disabled else "active")
                      for s in sorted(linked)])
    assert store.link_ids(flow, "user", status=None, unseen=seen) == linked - seen
    assert store.link_ids(flow, "user", unseen=seen) == (linked - disabled) - seen
    assert store.link_ids(flow, "user", status=None) == linked


def test_members_are_named_from_links_only_where_the_output_shows_them(store: Store) -> None:
    flow = f"f{next(_flows)}"
    members = [f"m{i:04d}" for i in range(3 * MEMBERS_SHOWN)]
    store.save_links([_link(flow, m) for m in members])
    change = Change("set_members", "group", "g1", "all", "tg1", add=tuple(members),
                    remove=(members[-1],))
    res = FlowResult(flow, dry_run=True, plan=Plan(flow, (change,)))
    res.names["m0001"] = "known from the read"
    name_members(res, store, flow)
    shown = set(members[:MEMBERS_SHOWN]) | {members[-1]}
    assert set(res.names) == shown
    assert res.names["m0001"] == "known from the read", "a name read this run is kept"
    assert res.names["m0000"] == "name-m0000"


def test_member_name_lookups_are_bounded(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    flow = f"f{next(_flows)}"
    monkeypatch.setattr(commit, "NAME_LOOKUPS_MAX", 2 * MEMBERS_SHOWN)
    changes = []
    for g in range(10):
        members = tuple(f"g{g}m{i:03d}" for i in range(MEMBERS_SHOWN))
        store.save_links([_link(flow, m) for m in members])
        changes.append(Change("set_members", "group", f"g{g}", f"group {g}", f"t{g}",
                              add=members))
    res = FlowResult(flow, dry_run=True, plan=Plan(flow, tuple(changes)))
    name_members(res, store, flow)
    assert len(res.names) == 2 * MEMBERS_SHOWN, "stops at the bound, a whole list at a time"
    assert all(f"g0m{i:03d}" in res.names for i in range(MEMBERS_SHOWN))



def test_group_members_resolve_without_loading_their_links(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """Applying memberships asks the store for the members' target ids only: loading each
    member's whole link held a million links in an initial sync of 10,000 groups."""
    for i in range(30):
        env.src.put("user", {"uid": f"u{i}", "title": "t"}, f"s{i}")
    env.src.put("group", {"cn": "g"}, "g1")
    env.src.set_group_members("g1", {f"s{i}" for i in range(30)})
    asked: list[tuple[str, set[str]]] = []
    real, targets = Store.links, Store.link_targets

    def spy(self: Store, flow: str, kind: Kind, ids: Iterable[str] | None = None,
            **kw: bool) -> dict[str, Link]:
        if kind == "user" and ids is not None:
            asked.append(("links", set(ids)))
        return real(self, flow, kind, ids, **kw)

    def spy_targets(self: Store, flow: str, kind: Kind, ids: Iterable[str]) -> dict[str, str]:
        asked.append(("targets", set(ids)))
        return targets(self, flow, kind, ids)

    monkeypatch.setattr(Store, "links", spy)
    monkeypatch.setattr(Store, "link_targets", spy_targets)
    assert env.run().result == "ok"
    (gid,) = env.dst.objects["group"]
    names = {env.dst.objects["user"][m]["userName"] for m in env.dst.members[gid]}
    assert names == {f"u{i}" for i in range(30)}, "every member resolved and sent"
    members = {f"s{i}" for i in range(30)}
    assert [what for what, ids in asked if ids == members] == ["links", "targets"], \
        "the users' page loads their links (to plan them); the membership only target ids"
