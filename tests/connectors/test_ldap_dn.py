"""DN keys (connectors/syncd_connectors/ldap/dn.py): every spelling of one DN is one key, and
only its.

Properties over generated DNs: each RDN value rendered with random escapes (``\\,``,
``\\2c``, ``\\2C``, hex-escaped UTF-8), random case, spaces around separators, OIDs for
attribute types, multi-valued RDNs in any order and ``uniqueMember``'s ``#'0101'B`` UID.
"""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from syncd_connectors.ldap.dn import dn_key, fold, member_key, parse_dn, parsed_key, rdn_filter
from syncd_connectors.ldap.values import normalize_dn, one_level_below

TYPES = ["cn", "uid", "ou", "o", "dc", "sn", "l", "mail", "description", "employeeNumber"]
OIDS = {"cn": "2.5.4.3", "uid": "0.9.2342.19200300.100.1.1", "ou": "2.5.4.11",
        "dc": "0.9.2342.19200300.100.1.25", "o": "2.5.4.10"}  # fmt: skip
SPECIAL = ',+"\\<>;=#'
ALPHABET = "abcXYZ019 -_.'" + SPECIAL + "öÖåÅéÉßçÇøØłŁ日本Σσ"

Dn = list[list[tuple[str, str]]]

values = st.text(ALPHABET, min_size=1, max_size=12).filter(lambda v: fold(v) != "")
avas = st.tuples(st.sampled_from(TYPES), values)
dns: st.SearchStrategy[Dn] = st.lists(
    st.lists(avas, min_size=1, max_size=3, unique_by=lambda a: a[0].lower()),
    min_size=1, max_size=4,
)  # fmt: skip


def canonical(dn: Dn) -> list[list[tuple[str, str]]]:
    """What the DN means: per RDN the sorted (type, folded value) pairs."""
    return [sorted((t.lower(), fold(v)) for t, v in rdn) for rdn in dn]


def spell_char(c: str, must: bool, draw: st.DrawFn) -> str:
    folded = c.casefold()
    if c.upper().casefold() == folded and c.lower().casefold() == folded:
        c = draw(st.sampled_from([c, c.upper(), c.lower()]))
    choices = ["hex", "HEX"]
    if c in SPECIAL or c == " ":
        choices.append("backslash")
    if not must:
        choices.append("raw")
    how = draw(st.sampled_from(choices))
    if how == "raw":
        return c
    if how == "backslash":
        return "\\" + c
    fmt = "\\{:02x}" if how == "hex" else "\\{:02X}"
    return "".join(fmt.format(b) for b in c.encode())


@st.composite
def spelling(draw: st.DrawFn, dn: Dn) -> str:
    """One of the many ways to write `dn` (RFC 4514 and the lenient forms servers accept)."""
    gap = st.sampled_from(["", "", " ", "  "])
    rdns = []
    for rdn in dn:
        parts = []
        for kind, value in draw(st.permutations(rdn)):
            name = draw(st.sampled_from([kind, kind.upper(), kind.lower(),
                                         OIDS.get(kind.lower(), kind)]))
            text = "".join(
                spell_char(c, c in SPECIAL or (i == 0 and c in " #")
                           or (i == len(value) - 1 and c == " "), draw)
                for i, c in enumerate(value)
            )
            parts.append(f"{draw(gap)}{name}{draw(gap)}={draw(gap)}{text}")
        rdns.append("+".join(parts))
    return ",".join(f"{r}{draw(gap)}" for r in rdns)


@given(st.data(), dns, dns)
def test_every_spelling_of_a_dn_has_the_same_key_and_only_it(
    data: st.DataObject, dn: Dn, other_dn: Dn
) -> None:
    one = data.draw(spelling(dn))
    other = data.draw(spelling(dn))
    assert dn_key(one) == dn_key(other), (one, other)
    assert normalize_dn(one) == dn_key(one)  # the name the rest of the connector uses
    assert dn_key(one) == parsed_key(one)  # the ASCII fast path agrees with the parser
    assert member_key(other + "#'0101'B", unique=True) == dn_key(one)
    if canonical(other_dn) != canonical(dn):
        assert dn_key(data.draw(spelling(other_dn))) != dn_key(one)


@given(st.data(), dns)
def test_keys_parse_back_to_the_same_dn(data: st.DataObject, dn: Dn) -> None:
    key = dn_key(data.draw(spelling(dn)))
    assert dn_key(key) == key
    assert len(parse_dn(key)) == len(dn)
    assert [sorted((t, fold(v)) for t, v, _h in rdn) for rdn in parse_dn(key)] == canonical(dn)


def test_known_spellings() -> None:
    people = "ou=people,dc=example,dc=org"
    assert dn_key(f"cn=J\\c3\\b6rg,{people}") == dn_key(f"CN=jÖrg, OU=People,{people[10:]}")
    assert dn_key(f"cn=Smith\\, John,{people}") == dn_key(f"cn = Smith\\2C John , {people}")
    assert dn_key(f'cn="Smith, John",{people}') == dn_key(f"cn=Smith\\2c John,{people}")
    assert dn_key(f"cn=a+uid=b,{people}") == dn_key(f"UID=b + CN=A,{people}")
    assert dn_key(f"2.5.4.3=x,{people}") == dn_key(f"cn=X,{people}")
    assert dn_key(f"cn=Ann  Lee,{people}") == dn_key(f"cn=ann lee,{people}")
    nfd = unicodedata.normalize("NFD", "Jörg")
    assert dn_key(f"cn={nfd},{people}") == dn_key(f"cn=Jörg,{people}")
    assert member_key(f"uid=x,{people}#'0101'B", unique=True) == dn_key(f"uid=x,{people}")
    assert member_key(f"uid=x#'01'B,{people}", unique=True) != dn_key(f"uid=x,{people}")
    assert dn_key(f"cn=\\#1,{people}") != dn_key(f"cn=#31,{people}")  # a value vs BER hex
    assert one_level_below(dn_key(f"cn=a\\,b,{people}"), dn_key(people))


def test_lookup_filters_use_the_value_as_written() -> None:
    assert rdn_filter("cn=J\\c3\\b6rg,dc=x") == "(cn=Jörg)"
    assert rdn_filter("CN = Smith\\, John (x) , dc=x") == "(cn=Smith, John \\28x\\29)"
    assert rdn_filter("uid=b+cn=a,dc=x") == "(&(uid=b)(cn=a))"
    assert rdn_filter("cn=#0401,dc=x") is None
    assert rdn_filter("no dn at all") is None
