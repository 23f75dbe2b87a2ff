"""Cursors after syncd's own writes in two-way flows (`syncd.cycle.catch_up`): the echo rule
as a property, and the cycle after an initial sync reading nothing (exact memory cursors)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd import config
from syncd.cycle import engine
from syncd.model import Batch, Kind
from syncd.plan.merge import is_echo
from syncd.plan.push import same
from syncd.testing import DIRECTORIES, MemoryConnector, directory

PATHS = ("userName", "title", "emails.work")
VALUE = st.one_of(st.none(), st.sampled_from(["a", "A", "b"]),
                  st.tuples(st.sampled_from(["a", "b"])))
ATTRS = st.fixed_dictionaries({p: VALUE for p in PATHS})
MEMBERS = st.one_of(st.none(), st.frozensets(st.sampled_from(["u1", "u2"])))


@given(base=ATTRS, values=ATTRS, target=st.booleans())
def test_an_echo_holds_the_base_on_every_path(base: dict[str, Any], values: dict[str, Any],
                                              target: bool) -> None:
    """Exactly the base (source) is an echo; any value the merge would see as a change is not.
    Loosely on the target: case-only differences of identifiers are the server's spelling."""
    echo = is_echo(PATHS, base, values, target=target)
    if all(same(values[p], base[p]) for p in PATHS):
        assert echo
    if not target:
        assert echo == all(same(values[p], base[p]) for p in PATHS)
    if echo and target:  # only case of userName/emails, or a one-value list, may differ
        for p in PATHS:
            v, b = values[p], base[p]
            if not same(v, b) and isinstance(v, str) and isinstance(b, str):
                assert p != "title" and v.casefold() == b.casefold()


@given(base=MEMBERS, members=MEMBERS)
def test_a_group_echo_lists_exactly_its_member_base(base: frozenset[str] | None,
                                                    members: frozenset[str] | None) -> None:
    echo = is_echo((), {}, {}, base, members)
    assert echo == (members is None or members == (base or frozenset()))


_n = itertools.count()
CONFIG = """
[state]
url = "sqlite:///{state}"
[connectors.src]
type = "memory"
directory = "{src}"
page_size = 5
[connectors.dst]
type = "memory"
directory = "{dst}"
page_size = 7
[flows.f]
source = "src"
target = "dst"
mode = "two_way"
[flows.f.users.mapping]
userName = "uid"
title = "title"
"""


class Flow:
    def __init__(self, tmp: Path, mp: pytest.MonkeyPatch) -> None:
        n = next(_n)
        self.names = (f"cu-src{n}", f"cu-dst{n}")
        self.src, self.dst = directory(self.names[0]), directory(self.names[1])
        path = tmp / "c.toml"
        path.write_text(CONFIG.format(state=tmp / "s.db", src=self.names[0],
                                      dst=self.names[1]))
        self.cfg = config.load(path)
        self.read: dict[str, int] = {}
        read = MemoryConnector.read

        def counted(conn: MemoryConnector, kind: Kind, *a: Any, **kw: Any
                    ) -> Iterator[Batch]:
            for batch in read(conn, kind, *a, **kw):
                self.read[conn.name] = self.read.get(conn.name, 0) + len(batch.entries)
                yield batch
        mp.setattr(MemoryConnector, "read", counted)

    def run(self) -> engine.FlowResult:
        self.read = {}
        (res,) = engine.run(self.cfg)
        assert res.result == "ok", (res.errors, res.failures)
        return res

    def close(self) -> None:
        for name in self.names:
            DIRECTORIES.pop(name, None)


@pytest.fixture
def flow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flow]:
    f = Flow(tmp_path, monkeypatch)
    yield f
    f.close()


def test_the_cycle_after_an_initial_sync_reads_nothing(flow: Flow) -> None:
    for i in range(20):
        flow.src.put("user", {"uid": f"u{i}", "title": "t"}, f"s{i}")
    res = flow.run()
    assert res.plan is not None and len(res.plan.changes) == 20
    assert flow.run().plan.changes == ()  # type: ignore[union-attr]
    assert flow.read == {"src": 0, "dst": 0}, "syncd's own creates were read again"


def test_write_backs_are_not_read_again_and_edits_after_them_are(flow: Flow) -> None:
    for i in range(5):
        flow.src.put("user", {"uid": f"u{i}", "title": "t"}, f"s{i}")
    flow.run()
    tid = next(o for o, a in flow.dst.objects["user"].items() if a["userName"] == "u1")
    flow.dst.put("user", {**flow.dst.objects["user"][tid], "title": "app"}, tid)
    flow.run()  # written back to the source
    assert flow.src.objects["user"]["s1"]["title"] == "app"
    assert flow.run().plan.changes == ()  # type: ignore[union-attr]
    assert flow.read == {"src": 0, "dst": 0}


def test_an_edit_made_while_syncd_applies_is_merged_by_the_next_cycle(flow: Flow) -> None:
    for i in range(5):
        flow.src.put("user", {"uid": f"u{i}", "title": "t"}, f"s{i}")
    flow.run()
    t3 = next(o for o, a in flow.dst.objects["user"].items() if a["userName"] == "u3")
    fired: list[bool] = []

    def another_writer(oid: str) -> None:
        if not fired:
            fired.append(True)
            flow.dst.put("user", {**flow.dst.objects["user"][t3], "title": "meanwhile"}, t3)

    flow.dst.faults["create"] = another_writer
    flow.src.put("user", {"uid": "new", "title": "t"}, "s-new")  # syncd creates it on dst
    flow.run()
    del flow.dst.faults["create"]
    assert fired and flow.src.objects["user"]["s3"]["title"] == "t"
    res = flow.run()
    assert [c.name for c in res.plan.changes] == ["u3"]  # type: ignore[union-attr]
    assert flow.src.objects["user"]["s3"]["title"] == "meanwhile"
    assert flow.run().plan.changes == ()  # type: ignore[union-attr]


def test_an_initial_sync_writes_while_the_source_is_still_read(
        flow: Flow, monkeypatch: pytest.MonkeyPatch) -> None:
    """Users of an initial two-way sync are applied page by page as a push flow's
    (`syncd.cycle.two_way_stream`): the second source page is only read once the target
    holds users from the first (the whole-read path writes nothing before it has read all)."""
    import time

    from syncd.cycle import stream

    monkeypatch.setattr(stream, "PAGE", 5)
    for i in range(12):
        flow.src.put("user", {"uid": f"u{i}", "title": "t"}, f"s{i}")
    flow.dst.put("user", {"userName": "app-only"}, "d-app")  # create = "source": left alone
    seen: list[int] = []

    def second_page(oid: str) -> None:
        deadline = time.monotonic() + 10
        while not flow.dst.objects["user"].keys() - {"d-app"}:
            assert time.monotonic() < deadline, "nothing written while the source was read"
            time.sleep(0.01)  # polling the condition, with a deadline
        seen.append(len(flow.dst.objects["user"]))

    flow.src.faults["read_page"] = second_page
    res = flow.run()
    del flow.src.faults["read_page"]
    assert seen, "the source was read in one page"
    assert len(flow.dst.objects["user"]) == 13 and res.plan is not None
    assert flow.run().plan.changes == ()  # type: ignore[union-attr]
    assert flow.read == {"src": 0, "dst": 0}
