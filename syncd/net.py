"""Network facts every connector needs alike (part of the plugin API)."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and ``localhost`` names: traffic that never leaves this machine, so
    a plain-text credential to it is not a warning and plain http to it is allowed."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
