"""OpenLDAP after a crash: a contextCSN older than the entries it should cover.

Measured on slapd 2.5.13: killed (SIGKILL, or a power loss), syncprov restarts with the
contextCSN of its last checkpoint (``olcSpCheckpoint``), older than the newest entryCSN. Two
things then go wrong silently: a cookie taken in that state claims less than the entries
hold, and after the *next* such restart the server's contextCSN can be as old as a stored
cookie while entries changed after that cookie exist, so a refresh from the cookie answers
"nothing changed" and those changes are never read. A clean stop checkpoints and is fine.

Defence (`CsnGuard._behind`): a cookie is a valid cursor only if no entry under the base has
an entryCSN newer than it that the server's current contextCSN does not cover either. One
search ``(entryCSN>=csn)``, served by the usual ``index entryCSN eq``, that returns nothing
on a quiet directory and the changed entries' entryCSN otherwise; only when it finds some is
the contextCSN read again (a concurrent write moves it forward, a rolled-back one does not).

Limits: deletes made between the last checkpoint and the crash leave no entry behind, so
they are found by the periodic full reconcile (which confirms before deprovisioning).
Cookies with several CSNs (multi-provider) and 389-ds cookies are not checked.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ldap3.utils.conv import escape_filter_chars

from syncd_connectors.ldap.feeds.ds389 import Ds389Feed
from syncd_connectors.ldap.wire.events import SearchDone, SearchEntry

_CSN = re.compile(rb"(?:^|,)csn=([^,]*)")


def cookie_csn(cookie: bytes) -> str | None:
    """The CSN of an OpenLDAP cookie (``rid=000,csn=...``); None without one or with several
    (one per server id: multi-provider), which are not checked."""
    m = _CSN.search(cookie)
    if m is None:
        return None
    value = m.group(1).decode("ascii", "replace")
    return value if value and ";" not in value else None


class CsnGuard(Ds389Feed):
    """The check of a syncrepl cookie against the entries (see the module docstring)."""

    def _newest_after(self, base: str, csn: str) -> str | None:
        """The newest entryCSN under `base` strictly newer than `csn` (None: none, or the
        server cannot tell, e.g. entryCSN not readable: then nothing is claimed)."""
        v = escape_filter_chars(csn)
        newest: str | None = None
        for event in self._search(base, f"(&(entryCSN>={v})(!(entryCSN={v})))", "sub",
                                  ["entryCSN"]):  # fmt: skip
            if isinstance(event, SearchEntry):
                for name, values in event.attrs.items():
                    if name.lower() == "entrycsn" and values:
                        found = values[0].decode("ascii", "replace")
                        newest = found if newest is None or found > newest else newest
            elif isinstance(event, SearchDone) and event.code != 0 and newest is None:
                return None  # the server cannot tell (no access, no ordering): claim nothing
        return newest  # entries seen before a size or time limit are evidence enough

    def _behind(self, base: str, cookie: bytes, current: Callable[[], bytes]) -> str | None:
        """Why `cookie` is not a valid cursor for `base`, or None when it is. `current`
        takes the server's cookie now (its contextCSN)."""
        csn = cookie_csn(cookie)
        if csn is None:
            return None
        newest = self._newest_after(base, csn)
        if newest is None:
            return None
        now = cookie_csn(current())
        if now is not None and now >= newest:
            return None  # changes the server knows about: what a cookie is for
        return (
            f"entries under {base} carry entryCSN {newest}, newer than the server's "
            f"contextCSN {now or csn}: slapd restarted after a crash without a checkpoint "
            "(olcSpCheckpoint); a cookie would miss changes"
        )
