"""The oracle for push flows: incremental equals full.

Hypothesis generates sequences of source operations — create, modify, clear, rename, move out
of and back into scope, delete, member add/remove, a user deleted while in groups, a group
deleted — interleaved with incremental cycles and faults (a read cut short, a listing that
misses objects, a cursor the server rejects). After every clean cycle the target must equal
what a fresh full sync of the same source into an empty target produces.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from syncd import config
from syncd.cycle import engine, setup
from syncd.errors import Retriable
from syncd.state.store import Store
from syncd.testing import DIRECTORIES, directory, fail_with
from tests.oracle.faults import Killed, killed_between_apply_and_journal
from tests.oracle.model import project

_n = itertools.count()

CONFIG = """
[state]
url = "sqlite:///{state}"
[connectors.src]
type = "memory"
directory = "{src}"
page_size = 3
[connectors.dst]
type = "memory"
directory = "{dst}"
[flows.f]
source = "src"
target = "dst"
deprovision = "{deprovision}"
[flows.f.safety]
max_deprovision = 100000
max_deprovision_percent = 100
max_member_removals = 100000
max_member_removal_percent = 100
max_rewrite_percent = 100
[[flows.f.users.scope]]
attribute = "dept"
equals = "gone"
not = true
[flows.f.users.mapping]
userName = "uid"
title = "title"
"name.familyName" = "sn"
[flows.f.groups.mapping]
displayName = "cn"
"""

TITLES = st.sampled_from(["eng", "ops", "sales", None])


class PushOracle(RuleBasedStateMachine):
    deprovision = "delete"

    def __init__(self) -> None:
        super().__init__()
        n = next(_n)
        self.tmp = Path(tempfile.mkdtemp(prefix="oracle-"))
        self.names = (f"or-src{n}", f"or-dst{n}", f"or-fresh{n}")
        self.src, self.dst = directory(self.names[0]), directory(self.names[1])
        self.cfg = self._config(self.tmp / "state.db", self.names[1])
        self.ids = itertools.count()
        self.cycles = 0

    def _config(self, state: Path, dst: str) -> config.Config:
        path = state.with_suffix(".toml")
        path.write_text(CONFIG.format(state=state, src=self.names[0], dst=dst,
                                      deprovision=self.deprovision))
        return config.load(path)

    def teardown(self) -> None:
        for name in self.names:
            DIRECTORIES.pop(name, None)

    # -- source operations ----------------------------------------------------------------
    def _users(self) -> list[str]:
        return sorted(self.src.objects["user"])

    def _groups(self) -> list[str]:
        return sorted(self.src.objects["group"])

    def _edit(self, oid: str, **attrs: Any) -> None:
        self.src.put("user", {**self.src.objects["user"][oid], **attrs}, oid)

    @rule(title=TITLES)
    def create_user(self, title: str | None) -> None:
        i = next(self.ids)
        self.src.put("user", {"uid": f"user{i}", "title": title, "sn": f"Sn{i}", "dept": "x"},
                     f"s{i}")

    @precondition(lambda self: self.src.objects["user"])
    @rule(data=st.data(), title=TITLES)
    def modify(self, data: st.DataObject, title: str | None) -> None:
        self._edit(data.draw(st.sampled_from(self._users())), title=title)

    @precondition(lambda self: self.src.objects["user"])
    @rule(data=st.data())
    def rename(self, data: st.DataObject) -> None:
        oid = data.draw(st.sampled_from(self._users()))
        self._edit(oid, uid=f"renamed{next(self.ids)}")

    @precondition(lambda self: self.src.objects["user"])
    @rule(data=st.data(), out=st.booleans())
    def move_scope(self, data: st.DataObject, out: bool) -> None:
        self._edit(data.draw(st.sampled_from(self._users())), dept="gone" if out else "x")

    @precondition(lambda self: self.src.objects["user"])
    @rule(data=st.data())
    def delete_user(self, data: st.DataObject) -> None:
        self.src.remove("user", data.draw(st.sampled_from(self._users())))

    @rule()
    def create_group(self) -> None:
        i = next(self.ids)
        self.src.put("group", {"cn": f"group{i}"}, f"g{i}")
        self.src.set_group_members(f"g{i}", set())

    @precondition(lambda self: self.src.objects["group"] and self.src.objects["user"])
    @rule(data=st.data(), add=st.booleans())
    def member(self, data: st.DataObject, add: bool) -> None:
        gid = data.draw(st.sampled_from(self._groups()))
        uid = data.draw(st.sampled_from(self._users()))
        have = self.src.members.get(gid, set())
        self.src.set_group_members(gid, have | {uid} if add else have - {uid})

    @precondition(lambda self: self.src.objects["group"])
    @rule(data=st.data())
    def delete_group(self, data: st.DataObject) -> None:
        self.src.remove("group", data.draw(st.sampled_from(self._groups())))

    # -- cycles and faults ----------------------------------------------------------------
    def _run(self, **kw: Any) -> engine.FlowResult:
        (res,) = engine.run(self.cfg, **kw)
        self.cycles += 1
        return res

    @rule()
    def cycle(self) -> None:
        res = self._run()
        if res.result == "refused" and all("returned no" in r for r in res.refused):
            # "zero is suspicious": every in-scope entry of a kind went; an admin confirms it
            if any("no users" in r for r in res.refused):
                assert not [u for u in self.src.objects["user"].values()
                            if u.get("dept") != "gone"]
            if any("no groups" in r for r in res.refused):
                assert not self.src.objects["group"]
            res = self._run(allow_deletes=True)
        assert res.result == "ok", (res.result, res.errors, res.failures, res.refused)
        self._check()

    @rule()
    def cycle_with_a_read_cut_short(self) -> None:
        self.src.faults["read_page"] = fail_with(lambda: Retriable("connection reset"), 1)
        self._run(full=True)
        self.src.faults.pop("read_page", None)
        self.cycle()

    @precondition(lambda self: self.src.objects["user"])
    @rule(data=st.data())
    def cycle_with_a_shifted_listing(self, data: st.DataObject) -> None:
        """A listing that misses an object and knows it (SCIM: totalResults moved)."""
        self.src.hidden = {data.draw(st.sampled_from(self._users()))}
        self.src.hidden_detected = True
        res = self._run(full=True)
        self.src.hidden = set()
        assert res.result in ("ok", "refused"), res.errors
        self.cycle()

    @precondition(lambda self: any(a.get("active") is not False
                                   for a in self.dst.objects["user"].values()))
    @rule(data=st.data())
    def cycle_with_a_listing_that_silently_misses(self, data: st.DataObject) -> None:
        """A listing that misses a synced object and cannot tell: absence is not proof."""
        synced = sorted(str(a["userName"]) for a in self.dst.objects["user"].values()
                        if a.get("active") is not False)
        name = data.draw(st.sampled_from(synced))
        hide = {o for o, a in self.src.objects["user"].items() if a.get("uid") == name}
        self.src.hidden, self.src.hidden_detected = hide, False
        res = self._run(full=True)
        self.src.hidden = set()
        assert res.result in ("ok", "refused"), res.errors
        if hide:  # still in the source: whatever else happened, it was not deprovisioned
            (obj,) = [a for a in self.dst.objects["user"].values() if a["userName"] == name]
            assert obj.get("active") is not False
        self.cycle()

    @rule()
    def cycle_killed_between_apply_and_journal(self) -> None:
        """The target holds writes the store never recorded: the next cycles re-plan them
        and must adopt, not duplicate, and end where a fresh sync ends."""
        died = False
        with killed_between_apply_and_journal() as fired:
            try:
                self._run()
            except Killed:
                died = True
        assert died == fired[0]  # the kill was not swallowed
        self.cycle()

    @rule()
    def cycle_with_a_rejected_cursor(self) -> None:
        store = Store(self.cfg.state_url)
        try:
            for kind in ("user", "group"):
                cur = store.cursor("f", "src", kind)
                if cur.value is not None:
                    store.save_cursor("f", "src", kind, "expired-cookie", full=False,
                                      fingerprint=setup.fingerprint(self.cfg.flows["f"], kind))
        finally:
            store.close()
        self.cycle()

    # -- the oracle -----------------------------------------------------------------------
    def _check(self) -> None:
        fresh_dir = directory(self.names[2])
        fresh_dir.objects = {"user": {}, "group": {}}
        fresh_dir.members.clear()
        fresh_dir.log.clear()
        state = self.tmp / f"fresh{self.cycles}.db"
        (res,) = engine.run(self._config(state, self.names[2]), full=True)
        assert res.result == "ok", res.errors
        active = self.deprovision != "delete"
        assert project(self.dst, active_only=active) == project(fresh_dir, active_only=active)

    @invariant()
    def nothing_unlinked_on_the_target(self) -> None:
        """Every target object is one syncd made: none duplicated (userName unique)."""
        names = [a.get("userName") for a in self.dst.objects["user"].values()]
        assert len(names) == len(set(names))


class PushOracleDisable(PushOracle):
    deprovision = "disable"


#: ORACLE_EXAMPLES=N explores longer than the default run.
ORACLE = settings(derandomize=not os.environ.get("ORACLE_RANDOM"),
                  max_examples=int(os.environ.get("ORACLE_EXAMPLES", "40")),
                  stateful_step_count=20, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow])
TestPushOracle = PushOracle.TestCase
TestPushOracle.settings = ORACLE
TestPushOracleDisable = PushOracleDisable.TestCase
TestPushOracleDisable.settings = ORACLE
