"""The push oracle on real servers: incremental equals full, slapd -> scim2-server.

The property of `test_push_oracle.py`, with real peers and the real engine: Hypothesis
generates real LDAP writes on a throwaway slapd (add, modify, clear an attribute, modrdn,
move out of scope by ``departmentNumber`` — the attribute the flow's scope tests — or out of
the users' base into another OU, and back; delete, a user deleted while still named by
groups, ``groupOfNames`` member add/remove with the placeholder member an empty group needs,
a group deleted), interleaved with incremental cycles (syncrepl) into a real scim2-server and
faults: a full read cut short mid-read (slapd killed after the first page), a reconcile
(``full=True``), a cursor the server rejects (a well-formed cursor carrying a syncrepl cookie
slapd never issued), a cursor the connector cannot parse, and syncd killed between its writes
and recording them.

After every clean cycle the target, read with plain HTTP (users by userName with their
attributes and active flag, groups by displayName with their members' userNames), must equal
what a fresh full sync of the same slapd into a second, empty scim2-server gives.

Costs: one slapd and two scim2-server processes per test; every example works in its own
OU (``ou=exN``) with its own state store, and the SCIM servers are reset over HTTP.
"""

from __future__ import annotations

import base64
import itertools
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import ldap3
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from syncd import config
from syncd.cycle import engine
from syncd.state.store import Store
from syncd_connectors.ldap.connector import LdapConnector
from tests.oracle.faults import Killed, killed_between_apply_and_journal
from tests.peers.scim_fixtures import SCIM_TEST_TOKEN
from tests.peers.scim_servers import Scim2Server
from tests.peers.slapd import BASE, Slapd

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"

CONFIG = """
[state]
url = "sqlite:///{state}"

[connectors.corp]
type = "ldap"
url = "{ldap}"
bind_dn = "{bind_dn}"
bind_password = "env:ORACLE_LDAP_PASSWORD"
page_size = 2
timeout = 5
users = {{ base = "ou=people,{ou}", filter = "(objectClass=inetOrgPerson)" }}
groups = {{ base = "ou=groups,{ou}", filter = "(objectClass=groupOfNames)" }}

[connectors.app]
type = "scim"
url = "{scim}"
token = "env:ORACLE_SCIM_TOKEN"

[flows.f]
source = "corp"
target = "app"
deprovision = "{deprovision}"
match = ["userName"]

[flows.f.safety]
max_deprovision = 100000
max_deprovision_percent = 100
max_member_removals = 100000
max_member_removal_percent = 100
max_rewrite_percent = 100

[[flows.f.users.scope]]
attribute = "departmentNumber"
equals = "gone"
not = true

[flows.f.users.mapping]
userName = "uid"
title = "title"
"name.familyName" = "sn"
"enterprise.department" = "departmentNumber"

[flows.f.groups.mapping]
displayName = "cn"
"""

TITLES = st.sampled_from(["eng", "ops", None])
_n = itertools.count()


class Peers:
    """One slapd and two scim2-servers (the incremental target and the fresh one)."""

    def __init__(self, slapd: Slapd, target: Scim2Server, fresh: Scim2Server,
                 tmp: Path) -> None:
        self.slapd, self.target, self.fresh, self.tmp = slapd, target, fresh, tmp
        self.examples = 0
        self.steps = 0
        #: what the examples exercised: checks made, largest projection, fault outcomes
        self.stats: dict[str, int] = {}

    def count(self, what: str, n: int = 1) -> None:
        self.stats[what] = self.stats.get(what, 0) + n

    def ldap(self) -> ldap3.Connection:
        return ldap3.Connection(self.slapd.url, self.slapd.admin_dn, self.slapd.admin_password,
                                auto_bind=True, raise_exceptions=True)


def scim_list(http: httpx.Client, resource: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    start = 1
    while True:
        r = http.get(f"/{resource}", params={"startIndex": start, "count": 100})
        r.raise_for_status()
        body = r.json()
        page = body.get("Resources", [])
        out += page
        if not page or len(out) >= body.get("totalResults", 0):
            return out
        start += len(page)


def project(server: Scim2Server, *, active_only: bool = False) -> dict[str, Any]:
    """What a person would check, read with plain HTTP (not syncd's connector)."""
    with httpx.Client(base_url=server.url, timeout=10,
                      headers={"Authorization": f"Bearer {server.token}"}) as http:
        raw_users = scim_list(http, "Users")
        raw_groups = scim_list(http, "Groups")
    names = {u["id"]: u["userName"] for u in raw_users}
    users = {}
    for u in raw_users:
        if active_only and u.get("active") is False:
            continue
        users[u["userName"]] = {
            "title": u.get("title") or None,
            "familyName": (u.get("name") or {}).get("familyName"),
            "department": (u.get(ENTERPRISE) or {}).get("department"),
            "active": u.get("active"),
        }
    groups = {}
    for g in raw_groups:
        members = sorted(names.get(m["value"], f"<gone {m['value']}>")
                         for m in g.get("members") or [])
        if active_only:
            members = [m for m in members if m in users]
            if not members:
                continue
        groups[g["displayName"]] = members
    return {"users": users, "groups": groups}


class RealPushOracle(RuleBasedStateMachine):
    peers: Peers
    deprovision = "delete"

    def __init__(self) -> None:
        super().__init__()
        p = self.peers
        p.examples += 1
        n = next(_n)
        self.ou = f"ou=ex{n},{BASE}"
        self.people, self.groups_ou = f"ou=people,{self.ou}", f"ou=groups,{self.ou}"
        self.outside = f"ou=outside,{self.ou}"
        self.placeholder = p.slapd.admin_dn
        self.tmp = Path(tempfile.mkdtemp(prefix=f"real-oracle{n}-", dir=p.tmp))
        self.conn = p.ldap()
        for dn in (self.ou, self.people, self.groups_ou, self.outside):
            self.conn.add(dn, ["organizationalUnit"])
        p.target.reset()
        self.state = self.tmp / "state.db"
        self.ids = itertools.count()
        #: user key -> current DN (under people or outside)
        self.users: dict[str, str] = {}
        #: group key -> (DN, member user keys; DNs may dangle after a delete)
        self.groups: dict[str, tuple[str, set[str]]] = {}
        self.dangling: dict[str, str] = {}  # deleted user key -> its last DN
        self.cycles = 0

    def teardown(self) -> None:
        self.conn.unbind()

    # -- config ---------------------------------------------------------------------------
    def _cfg(self, state: Path, scim: Scim2Server) -> config.Config:
        path = state.with_suffix(".toml")
        path.write_text(CONFIG.format(
            state=state, ldap=self.peers.slapd.url, bind_dn=self.peers.slapd.admin_dn,
            ou=self.ou, scim=scim.url, deprovision=self.deprovision))
        return config.load(path)

    @initialize(deprovision=st.sampled_from(["delete", "disable"]), users=st.integers(2, 4))
    def seed(self, deprovision: str, users: int) -> None:
        """Each example picks its deprovision policy (its own OU and state store make that
        free) and starts from a few users and a group with members, so that short
        sequences still reach memberships."""
        self.deprovision = deprovision
        self.peers.count(f"policy {deprovision}")
        for _ in range(users):
            self.create_user("eng", "x")
        self.create_group()
        (gkey,) = self.groups
        self._set_members(gkey, set(self._keys()[:2]))

    # -- LDAP writes ------------------------------------------------------------------------
    def _keys(self) -> list[str]:
        return sorted(self.users)

    def _inside(self) -> list[str]:
        return sorted(k for k, dn in self.users.items() if dn.endswith(self.people))

    def _outside(self) -> list[str]:
        return sorted(k for k, dn in self.users.items() if dn.endswith(self.outside))

    def _member_dns(self, members: set[str]) -> list[str]:
        dns = [self.users.get(k) or self.dangling[k] for k in sorted(members)]
        return dns or [self.placeholder]

    def _set_members(self, gkey: str, members: set[str]) -> None:
        dn, _ = self.groups[gkey]
        self.conn.modify(dn, {"member": [(ldap3.MODIFY_REPLACE, self._member_dns(members))]})
        self.groups[gkey] = (dn, members)

    def _refint(self, key: str, new_dn: str) -> None:
        """What slapd's refint overlay would do on a rename or move: follow the DN."""
        for gkey, (_, members) in sorted(self.groups.items()):
            if key in members:
                self._set_members(gkey, members)
        del new_dn

    @rule(title=TITLES, dept=st.sampled_from(["x", None]))
    def create_user(self, title: str | None, dept: str | None) -> None:
        i = next(self.ids)
        dn = f"uid=user{i},{self.people}"
        attrs: dict[str, Any] = {"uid": f"user{i}", "cn": f"User {i}", "sn": f"Sn{i}"}
        if title:
            attrs["title"] = title
        if dept:
            attrs["departmentNumber"] = dept
        self.conn.add(dn, ["inetOrgPerson"], attrs)
        self.users[f"k{i}"] = dn

    @precondition(lambda self: self.users)
    @rule(data=st.data(), title=TITLES)
    def modify(self, data: st.DataObject, title: str | None) -> None:
        """A new value, or the attribute cleared."""
        dn = self.users[data.draw(st.sampled_from(self._keys()))]
        change = [(ldap3.MODIFY_REPLACE, [title] if title else [])]
        self.conn.modify(dn, {"title": change, "sn": [(ldap3.MODIFY_REPLACE,
                                                       [f"Sn{next(self.ids)}"])]})

    @precondition(lambda self: self.users)
    @rule(data=st.data())
    def rename(self, data: st.DataObject) -> None:
        """modrdn: the uid (userName) changes, the entryUUID stays."""
        key = data.draw(st.sampled_from(self._keys()))
        dn = self.users[key]
        uid = f"renamed{next(self.ids)}"
        self.conn.modify_dn(dn, f"uid={uid}", delete_old_dn=True)
        self.users[key] = f"uid={uid},{dn.split(',', 1)[1]}"
        self._refint(key, self.users[key])

    @precondition(lambda self: self.users)
    @rule(data=st.data(), out=st.booleans())
    def move_scope_by_attribute(self, data: st.DataObject, out: bool) -> None:
        keys = self._keys()
        if not keys:
            return
        dn = self.users[data.draw(st.sampled_from(keys))]
        self.conn.modify(dn, {"departmentNumber": [(ldap3.MODIFY_REPLACE,
                                                     ["gone"] if out else ["x"])]})

    @precondition(lambda self: self._inside())
    @rule(data=st.data())
    def move_out_of_base(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(self._inside()))
        dn = self.users[key]
        rdn = dn.split(",", 1)[0]
        self.conn.modify_dn(dn, rdn, new_superior=self.outside)
        self.users[key] = f"{rdn},{self.outside}"
        self._refint(key, self.users[key])

    @precondition(lambda self: self._outside())
    @rule(data=st.data())
    def move_back_into_base(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(self._outside()))
        dn = self.users[key]
        rdn = dn.split(",", 1)[0]
        self.conn.modify_dn(dn, rdn, new_superior=self.people)
        self.users[key] = f"{rdn},{self.people}"
        self._refint(key, self.users[key])

    @precondition(lambda self: self.users)
    @rule(data=st.data(), tidy=st.booleans())
    def delete_user(self, data: st.DataObject, tidy: bool) -> None:
        """`tidy`: removed from its groups first, as an admin would; else its DN dangles in
        them (groupOfNames without the refint overlay)."""
        key = data.draw(st.sampled_from(self._keys()))
        if tidy:
            for gkey, (_, members) in sorted(self.groups.items()):
                if key in members:
                    self._set_members(gkey, members - {key})
        self.conn.delete(self.users[key])
        self.dangling[key] = self.users.pop(key)

    @rule()
    def create_group(self) -> None:
        i = next(self.ids)
        dn = f"cn=group{i},{self.groups_ou}"
        self.conn.add(dn, ["groupOfNames"], {"cn": f"group{i}", "member": [self.placeholder]})
        self.groups[f"g{i}"] = (dn, set())

    @precondition(lambda self: self.groups and self.users)
    @rule(data=st.data(), add=st.booleans())
    def member(self, data: st.DataObject, add: bool) -> None:
        gkey = data.draw(st.sampled_from(sorted(self.groups)))
        key = data.draw(st.sampled_from(self._keys()))
        members = self.groups[gkey][1]
        self._set_members(gkey, members | {key} if add else members - {key})

    @precondition(lambda self: self.groups)
    @rule(data=st.data())
    def delete_group(self, data: st.DataObject) -> None:
        gkey = data.draw(st.sampled_from(sorted(self.groups)))
        self.conn.delete(self.groups.pop(gkey)[0])

    # -- cycles and faults ------------------------------------------------------------------
    def _run(self, **kw: Any) -> engine.FlowResult:
        (res,) = engine.run(self._cfg(self.state, self.peers.target), **kw)
        self.cycles += 1
        self.peers.steps += 1
        return res

    @rule(full=st.sampled_from([False, False, False, True]))
    def cycle(self, full: bool = False) -> None:
        res = self._run(full=full)
        if res.result == "refused" and all("returned no" in r for r in res.refused):
            res = self._run(allow_deletes=True, full=full)  # "zero is suspicious"
        assert res.result == "ok", (res.result, res.errors, res.failures, res.refused)
        self.peers.count("cycle reads " + ",".join(f"{k}:{v}" for k, v in
                                                   sorted(res.reads.items())))
        self._check()

    @rule()
    def another_incremental_cycle(self) -> None:
        """Twice the weight for plain incremental cycles: rules are drawn uniformly."""
        self.cycle(False)

    @rule(fault=st.sampled_from(["cut short", "cursor rejected by slapd",
                                 "cursor the connector cannot parse", "killed"]))
    def cycle_with_a_fault(self, fault: str) -> None:
        self.peers.count(f"fault: {fault}")
        if fault == "cut short":
            self._read_cut_short()
        elif fault == "killed":
            self._killed()
        else:
            self._rejected_cursor("server" if fault.endswith("slapd") else "connector")

    def _killed(self) -> None:
        """syncd killed between its writes to scim2-server and recording them (links,
        journal): the next cycle re-plans them and must adopt, never duplicate. A user is
        created first, so the killed run has at least that to write."""
        self.create_user("eng", "x")
        died = False
        with killed_between_apply_and_journal() as fired:
            try:
                self._run()
            except Killed:
                died = True
        assert died == fired[0]  # the kill was not swallowed
        self.peers.count(f"killed: {'after writes' if died else 'nothing to write'}")
        self.cycle()

    def _read_cut_short(self) -> None:
        """slapd killed (SIGKILL: a crash) after the first page of a full read, then started
        again: it restarts with the contextCSN of its last checkpoint, older than its
        entries (`syncd_connectors.ldap.feeds.csn`), and no cursor may hide later changes."""
        slapd = self.peers.slapd
        original = LdapConnector.read

        def cut(conn: LdapConnector, *args: Any, **kw: Any) -> Iterator[Any]:
            for n, batch in enumerate(original(conn, *args, **kw)):
                yield batch
                if n == 0:
                    slapd.kill()

        LdapConnector.read = cut  # type: ignore[method-assign,assignment]
        try:
            res = self._run(full=True)
        finally:
            LdapConnector.read = original  # type: ignore[method-assign]
            slapd.start()
            self.conn = self.peers.ldap()
        self.peers.count(f"cut short: {res.result}")
        self.cycle()

    def _rejected_cursor(self, kind: str) -> None:
        """`server`: a well-formed cursor whose syncrepl cookie slapd never issued;
        `connector`: a cursor the connector cannot even parse."""
        store = Store(f"sqlite:///{self.state}")
        try:
            for k in ("user", "group"):
                cur = store.cursor("f", "corp", k)
                if cur.value is None:
                    continue
                if kind == "server":
                    mech, fp, _ = cur.value.split(":", 2)
                    cookie = b"rid=000,csn=20000101000000.000000Z#000000#000#000000"
                    bogus = f"{mech}:{fp}:{base64.urlsafe_b64encode(cookie).decode()}"
                else:
                    bogus = "expired-cookie"
                store.save_cursor("f", "corp", k, bogus, full=False)
        finally:
            store.close()
        self.cycle()

    # -- the oracle -------------------------------------------------------------------------
    def _check(self) -> None:
        got = project(self.peers.target, active_only=self.deprovision != "delete")
        self.peers.fresh.reset()
        state = self.tmp / f"fresh{self.cycles}.db"
        (res,) = engine.run(self._cfg(state, self.peers.fresh), full=True)
        if res.result == "refused":
            (res,) = engine.run(self._cfg(state, self.peers.fresh), full=True,
                                allow_deletes=True)
        assert res.result == "ok", (res.result, res.errors, res.refused)
        want = project(self.peers.fresh, active_only=self.deprovision != "delete")
        assert got == want
        self.peers.count("checks")
        self.peers.count("users compared", len(want["users"]))
        self.peers.count("groups compared", len(want["groups"]))
        self.peers.count("members compared", sum(len(m) for m in want["groups"].values()))

    @invariant()
    def ldap_still_up(self) -> None:
        assert self.peers.slapd.pid is not None


PHASES = tuple(p for p in Phase if not (os.environ.get("ORACLE_NO_SHRINK") and
                                        p in (Phase.shrink, Phase.explain)))
REAL = settings(derandomize=not os.environ.get("ORACLE_RANDOM"),
                max_examples=5, stateful_step_count=30, deadline=None, phases=PHASES,
                suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peers]:
    with (pytest.MonkeyPatch.context() as mp,
          Slapd(admin_password="admin-secret") as slapd,
          Scim2Server(token=SCIM_TEST_TOKEN) as target,
          Scim2Server(token=SCIM_TEST_TOKEN) as fresh):
        mp.setenv("ORACLE_LDAP_PASSWORD", slapd.admin_password)
        mp.setenv("ORACLE_SCIM_TOKEN", SCIM_TEST_TOKEN)
        yield Peers(slapd, target, fresh, tmp_path_factory.mktemp("real-oracle"))


def _machine(cls: type[RealPushOracle], peers: Peers) -> Callable[[], RealPushOracle]:
    """run_state_machine_as_test takes a factory: the machine gets the module's peers."""
    def make() -> RealPushOracle:
        cls.peers = peers
        return cls()
    return make


def test_push_oracle_on_real_servers(peers: Peers) -> None:
    peers.stats.clear()
    run_state_machine_as_test(_machine(RealPushOracle, peers),  # type: ignore[arg-type]
                              settings=REAL)
    print(f"real push oracle: {peers.stats}")  # shown with -s: what the examples exercised
