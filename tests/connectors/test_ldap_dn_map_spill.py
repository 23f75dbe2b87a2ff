"""The LDAP source's DN map resolves members the same whether its maps are dicts or spilled
to disk (`syncd.spill`, past 100k users): renames, deletes, lookups and resolution."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from syncd import spill
from syncd_connectors.ldap.members import DnMap
from syncd_connectors.ldap.values import normalize_dn

BASE = "ou=people,dc=example,dc=org"
UIDS = [f"u{i}" for i in range(6)]
ANCHORS = [f"a-{i}" for i in range(4)]
DN = st.sampled_from(UIDS).map(lambda u: f"uid={u},{BASE}")
OPS = st.lists(st.one_of(
    st.tuples(st.just("add"), st.lists(st.tuples(DN, st.sampled_from(ANCHORS)), max_size=4)),
    st.tuples(st.just("remove"), st.sampled_from(ANCHORS)),
    st.tuples(st.just("complete"), st.booleans()),
), max_size=25)
#: What the server would answer a lookup: a fixed directory, whatever the map holds.
SERVER = {f"uid=u{i},{BASE}": f"srv-{i}" for i in range(0, 6, 2)}


def search(filter_: str) -> list[tuple[str, str]]:
    return [(dn, a) for dn, a in SERVER.items() if f"({dn.split(',')[0]})" in filter_]


@settings(max_examples=200, deadline=None)
@given(ops=OPS, members=st.lists(st.lists(DN, max_size=5), min_size=1, max_size=3))
def test_a_spilled_dn_map_resolves_like_one_in_memory(
    ops: list[tuple], members: list[list[str]]
) -> None:
    maps = [DnMap(BASE, "sub")]
    saved = spill.LIMIT
    spill.LIMIT = 1  # every write past one entry goes to the file
    try:
        maps.append(DnMap(BASE, "sub"))
    finally:
        spill.LIMIT = saved
    for m in maps:
        for op in ops:
            if op[0] == "add":
                m.add_many([(normalize_dn(dn), a) for dn, a in op[1]])
            elif op[0] == "remove":
                m.remove(op[1])
            else:
                m.complete = op[1]
    in_memory, spilled = maps
    want = in_memory.resolve(members, search)
    assert spilled.resolve(members, search) == want
    flat = [dn for ms in members for dn in ms]
    assert spilled.anchors(flat, search) == in_memory.anchors(flat, search)


def test_a_rename_after_the_spill_stops_the_old_dn_resolving() -> None:
    """The old DN of a user renamed after its first DN went to disk names nobody."""
    saved = spill.LIMIT
    spill.LIMIT = 2
    try:
        m = DnMap(BASE, "sub")
    finally:
        spill.LIMIT = saved
    m.add_many([(normalize_dn(f"uid=u{i},{BASE}"), f"a-{i}") for i in range(5)])
    assert m._dn_anchor.spilled and m._anchor_dn.spilled
    m.complete = True
    m.add(normalize_dn(f"uid=renamed,{BASE}"), "a-0")
    (got,) = m.resolve([[f"uid=u0,{BASE}", f"uid=renamed,{BASE}", f"UID=U3,{BASE}"]], search)
    assert got.anchors == {"a-0", "a-3"}
    assert got.unresolved == (f"uid=u0,{BASE}",)
