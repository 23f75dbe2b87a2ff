"""Mapping cost per entry: the shipped OpenLDAP example's mapping and scope (conditions, if,
coalesce over templates, ascii/lower, replace) against plain Python doing the same work.

    .venv/bin/python bench/mapping.py                 # 100,000 entries
    .venv/bin/python bench/mapping.py --entries 20000

Prints µs per entry for both, the ratio, and peak RSS. Nothing is started: the mapping is the
pure part of a cycle, evaluated once per entry read.
"""

from __future__ import annotations

import argparse
import re
import resource
import time
import unicodedata
from pathlib import Path
from typing import Any

from syncd.config.loader import load

REPO = Path(__file__).resolve().parents[1]
NOLOGIN = {"/sbin/nologin", "/usr/sbin/nologin", "/bin/false"}
PHONE = re.compile(r"[^+0-9]")


def entries(n: int) -> list[dict[str, tuple[str, ...]]]:
    out = []
    for i in range(n):
        raw: dict[str, tuple[str, ...]] = {
               "uid": (f"User{i:06d}",), "givenname": ("Zoë" if i % 3 else "Ann",),
               "sn": (f"Ångström{i}",), "cn": (f"Zoë Ångström{i}",),
               "employeetype": (("staff", "contractor", "intern")[i % 3],),
               "title": ("Engineer",), "telephonenumber": ("+49 (30) 1234-56",),
               "employeenumber": (str(i),), "ou": ("R&D",),
               "entryuuid": (f"00000000-0000-0000-0000-{i:012d}",),
               "loginshell": ("/bin/bash" if i % 10 else "/usr/sbin/nologin",)}
        if i % 2:
            raw["mail"] = (f"Zoe.Angstrom{i}@Example.com",)
        if i % 3 == 1:
            raw["manager"] = ("uid=boss,ou=people,dc=example,dc=org",)
        out.append(raw)
    return out


def _ascii(s: str) -> str:
    return unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode()


def by_hand(raw: dict[str, tuple[str, ...]]) -> dict[str, Any] | None:
    """The same scope and mapping, written directly in Python: the baseline."""
    et = raw.get("employeetype", ("",))[0].casefold()
    if not (et in ("staff", "faculty") or (et == "contractor" and raw.get("manager"))):
        return None
    g, sn = raw.get("givenname", ("",))[0], raw.get("sn", ("",))[0]
    mail = raw["mail"][0] if raw.get("mail") else f"{raw['uid'][0]}@example.com"
    locked = raw.get("nsaccountlock", ("",))[0].lower() in ("true", "1", "yes") or \
        raw.get("loginshell", ("",))[0] in NOLOGIN
    title = raw.get("title", ("",))[0]
    return {
        "userName": raw["uid"][0].strip().lower(), "displayName": f"{g} {sn}".strip(),
        "name.givenName": g, "name.familyName": sn, "emails.work": _ascii(mail).lower(),
        "phoneNumbers.work": PHONE.sub("", raw["telephonenumber"][0]),
        "enterprise.employeeNumber": raw["employeenumber"][0],
        "enterprise.department": raw["ou"][0], "enterprise.manager.value":
            raw.get("manager", (None,))[0], "externalId": raw["entryuuid"][0],
        "title": f"{title} (contractor)" if et == "contractor" else title,
        "active": not locked}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--entries", type=int, default=100_000)
    args = ap.parse_args()
    import os

    os.environ.setdefault("CORP_LDAP_PASSWORD", "x")
    os.environ.setdefault("APP_SCIM_TOKEN", "x")
    kf = load(REPO / "config" / "openldap-to-scim.toml").flows["staff-to-app"].kinds[0]
    data = entries(args.entries)

    t0 = time.perf_counter()
    hand = [by_hand(r) for r in data]
    t_hand = time.perf_counter() - t0

    t0 = time.perf_counter()
    ours = [kf.mapping.map(r) if kf.scope.contains(r) else None for r in data]
    t_ours = time.perf_counter() - t0

    agree = sum(1 for a, b in zip(hand, ours, strict=True) if a == b)
    n = args.entries
    print(f"entries: {n:,} (in scope: {sum(1 for h in hand if h is not None):,}); "
          f"results equal to the hand-written mapping: {agree:,}")
    print(f"hand-written Python: {t_hand / n * 1e6:6.2f} µs/entry ({t_hand:.2f} s)")
    print(f"syncd mapping+scope: {t_ours / n * 1e6:6.2f} µs/entry ({t_ours:.2f} s)  "
          f"ratio {t_ours / t_hand:.2f}x")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
