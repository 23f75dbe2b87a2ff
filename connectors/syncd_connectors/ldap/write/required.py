"""The attributes a new entry's object classes require (their MUST lists), known without
asking the server, for the classes syncd creates and admins configure most: what an add
without one of them is certainly refused for (objectClassViolation).

Why offline: the SCIM service provider answers a request before anything reaches the
directory; a create the directory will refuse is told to the sender (a 400 in Entra's
provisioning log) instead of being accepted and then held forever. Only the RFC 4519 / RFC
2798 / RFC 2307 classes and Active Directory's ``user``/``group`` are listed: for a class not
listed nothing is claimed (the server decides, at apply time, as before).
"""

from __future__ import annotations

from collections.abc import Iterable

#: objectClass (lower-case) -> attributes (lower-case) its definition requires, inherited
#: ones included. ``objectClass`` itself and the RDN are always written by the writer.
MUST: dict[str, frozenset[str]] = {
    "person": frozenset({"sn", "cn"}),
    "organizationalperson": frozenset({"sn", "cn"}),
    "inetorgperson": frozenset({"sn", "cn"}),
    "residentialperson": frozenset({"sn", "cn", "l"}),
    "posixaccount": frozenset({"cn", "uid", "uidnumber", "gidnumber", "homedirectory"}),
    "shadowaccount": frozenset({"uid"}),
    "account": frozenset({"uid"}),
    "groupofnames": frozenset({"cn"}),  # member: the placeholder member fills it
    "groupofuniquenames": frozenset({"cn"}),
    "posixgroup": frozenset({"cn", "gidnumber"}),
    "organizationalunit": frozenset({"ou"}),
    # Active Directory: cn comes from the RDN, sAMAccountName is generated when absent
    "user": frozenset(),
    "group": frozenset(),
}


def missing(classes: Iterable[str], present: Iterable[str]) -> list[str]:
    """The required attributes of `classes` not among `present` (lower-case names)."""
    have = {p.lower() for p in present}
    need: set[str] = set()
    for c in classes:
        need |= MUST.get(c.lower(), frozenset())
    return sorted(need - have)
