"""A deterministic sample directory as LDIF, for tests, the demo and benchmarks.

Why generated rather than checked in: the benchmarks need 100k users, and tests need to know
the expected values of any user without parsing a file. Every user's attributes are a pure
function of ``(seed, index)`` (`user_attrs`), and every group's members of ``(seed, index,
users)`` (`group_member_indexes`), so a test can compute what it expects to read back.

The LDIF is written for ``slapadd`` (it includes the suffix entry and both OUs) and streamed
record by record, so 100k users never sit in memory. entryUUID is left to slapadd.
"""

from __future__ import annotations

import base64
import random
import re
from collections.abc import Iterator
from pathlib import Path

BASE = "dc=example,dc=org"
PEOPLE = f"ou=people,{BASE}"
GROUPS = f"ou=groups,{BASE}"

_GIVEN = tuple(
    [
        "Zoë",
        "Alice",
        "Bob",
        "Carol",
        "José",
        "Dave",
        "Erin",
        "Søren",
        "Frank",
        "Grace",
        "Łukasz",
        "Heidi",
        "Ivan",
        "Chloé",
        "Judy",
        "Mallory",
        "Niamh",
        "Oscar",
        "Åsa",
        "Peggy",
    ]
)
_SURNAMES = tuple(
    [
        "Ångström",
        "Smith",
        "Jones",
        "Müller",
        "Nguyen",
        "García",
        "Brown",
        "O'Brien",
        "Kowalski",
        "Taylor",
        "Núñez",
        "Dubois",
        "Rossi",
        "Jensen",
        "Wilson",
        "Çelik",
    ]
)
_TITLES = tuple(["Engineer", "Manager", "Analyst", "Director", "Designer", "Consultant"])


def user_uid(i: int) -> str:
    return f"user{i:06d}"


def user_dn(i: int) -> str:
    return f"uid={user_uid(i)},{PEOPLE}"


def group_cn(j: int) -> str:
    return f"group{j:04d}"


def group_dn(j: int) -> str:
    return f"cn={group_cn(j)},{GROUPS}"


def user_attrs(i: int, seed: int = 1) -> dict[str, list[str]]:
    """The attributes of user `i` (lower-cased names, LDIF order), objectClass excluded.

    User 0 is always "Zoë Ångström" so tests have a fixed non-ASCII name; every 7th user has
    no title; every 3rd has two telephone numbers (multi-valued), every 5th none.
    """
    rnd = random.Random(seed * 1_000_003 + i)
    if i == 0:
        given, sn = "Zoë", "Ångström"
    else:
        given, sn = rnd.choice(_GIVEN), rnd.choice(_SURNAMES)
    uid = user_uid(i)
    attrs: dict[str, list[str]] = {
        "uid": [uid],
        "cn": [f"{given} {sn}"],
        "givenname": [given],
        "sn": [sn],
        "mail": [f"{uid}@example.com"],
        "employeenumber": [str(100000 + i)],
    }
    if i % 7 != 0:
        attrs["title"] = [rnd.choice(_TITLES)]
    if i % 5 != 0:
        phones = [f"+1 555 {rnd.randrange(10**6, 10**7)}"]
        if i % 3 == 0:
            phones.append(f"+1 555 {rnd.randrange(10**6, 10**7)}")
        attrs["telephonenumber"] = phones
    return attrs


def group_member_indexes(j: int, users: int, members_per_group: int, seed: int = 1) -> list[int]:
    """The user indexes that are members of group `j`, sorted."""
    rnd = random.Random(seed * 7_000_009 + j)
    return sorted(rnd.sample(range(users), min(members_per_group, users)))


#: RFC 2849: a SAFE-STRING is ASCII without NUL/CR/LF, not starting with space, ':' or '<'.
#: A trailing space is encoded too, since LDIF readers may strip it.
_UNSAFE = re.compile(r"^[ :<]|[^\x01-\x09\x0b\x0c\x0e-\x7f]| $")


def ldif_line(attr: str, value: str) -> str:
    """One ``attr: value`` line, base64-encoded (``attr::``) when the value is not safe."""
    if not _UNSAFE.search(value):
        return f"{attr}: {value}\n"
    return f"{attr}:: {base64.b64encode(value.encode('utf-8')).decode('ascii')}\n"


_LDIF_NAMES = {
    "givenname": "givenName",
    "employeenumber": "employeeNumber",
    "telephonenumber": "telephoneNumber",
}


def generate_ldif(users: int, groups: int, members_per_group: int, seed: int = 1) -> Iterator[str]:
    """Yield LDIF records (each ends with a blank line): suffix, OUs, users, then groups.

    ``"".join(generate_ldif(...))`` is the whole file; `write_ldif` streams it to disk.
    groupOfNames requires at least one member, so a group with ``members_per_group=0`` (or
    no users) gets the admin DN as its sole member, as OpenLDAP setups commonly do.
    """
    yield f"dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\n"
    yield "dc: example\no: Example\n\n"
    yield f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n\n"
    yield f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n\n"
    for i in range(users):
        parts = [
            f"dn: {user_dn(i)}\n",
            "objectClass: inetOrgPerson\nobjectClass: organizationalPerson\n",
            "objectClass: person\nobjectClass: top\n",
        ]
        for name, values in user_attrs(i, seed).items():
            ldif_name = _LDIF_NAMES.get(name, name)
            parts.extend(ldif_line(ldif_name, v) for v in values)
        parts.append("\n")
        yield "".join(parts)
    for j in range(groups):
        members = group_member_indexes(j, users, members_per_group, seed)
        parts = [f"dn: {group_dn(j)}\nobjectClass: groupOfNames\nobjectClass: top\n"]
        parts.append(f"cn: {group_cn(j)}\n")
        if members:
            parts.extend(f"member: {user_dn(i)}\n" for i in members)
        else:
            parts.append(f"member: cn=admin,{BASE}\n")
        parts.append("\n")
        yield "".join(parts)


def write_ldif(
    path: str | Path, users: int, groups: int, members_per_group: int, seed: int = 1
) -> Path:
    """Stream `generate_ldif` to `path` and return it."""
    path = Path(path)
    with path.open("w", encoding="utf-8") as fh:
        fh.writelines(generate_ldif(users, groups, members_per_group, seed))
    return path
