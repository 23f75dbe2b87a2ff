"""Offline checks of config values that point outside the file: a listen address, a CA
bundle. Used as pydantic validators, so `syncd validate` (and every command, at load) reports
them as config errors naming the key — instead of the daemon failing to bind, or a TLS
handshake failing with a library's traceback at the first connection.

Cheap to import: connector config modules use `CAFile`
(see connectors/syncd_connectors/*/config.py).
"""

from __future__ import annotations

import ipaddress
import re
import ssl
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
#: How much of a CA file is read to look for a certificate (bundles are ~200 KB).
_CA_READ_LIMIT = 16 * 1024 * 1024


def check_listen(text: str) -> str:
    """``host:port`` or ``[v6]:port``: port 1-65535, host an IP address or a DNS name."""
    host, sep, port = text.rpartition(":")
    example = "use host:port, e.g. 127.0.0.1:9464 or [::1]:9464"
    if not sep or not host:
        raise ValueError(f"{text!r}: {example}")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r}: port {port!r} is not a number from 1 to 65535")
    if host.startswith("[") or host.endswith("]"):
        inner = host[1:-1] if host.startswith("[") and host.endswith("]") else ""
        try:
            ipaddress.IPv6Address(inner)
        except ValueError:
            raise ValueError(f"{text!r}: {host!r} is not a bracketed IPv6 address") from None
        return text
    if ":" in host:
        raise ValueError(f"{text!r}: an IPv6 address goes in brackets, e.g. [::1]:9464")
    try:
        ipaddress.IPv4Address(host)
        return text
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    if len(host) > 253 or not all(_LABEL.match(lb) for lb in labels) or labels[-1].isdigit():
        raise ValueError(f"{text!r}: {host!r} is neither an IP address nor a host name")
    return text


def check_ca_file(value: str) -> str:
    """A CA bundle must exist, be readable, and hold at least one PEM certificate — the
    TLS libraries otherwise fail late (first connection) with messages that do not name
    the config key."""
    path = Path(value).expanduser()
    if not path.exists():
        raise ValueError(f"{value}: not found")
    if not path.is_file():
        raise ValueError(f"{value}: not a regular file")
    try:
        with path.open("rb") as fh:
            data = fh.read(_CA_READ_LIMIT)
    except OSError as exc:
        raise ValueError(f"{value}: not readable ({exc.strerror or exc})") from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise ValueError(f"{value}: no PEM certificate in it (expected a "
                         "-----BEGIN CERTIFICATE----- block; convert DER with openssl x509)")
    try:  # the markers are there: the certificates between them must parse too
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=data.decode(
            "ascii", errors="replace"))
    except (ssl.SSLError, ValueError) as exc:
        raise ValueError(f"{value}: no usable PEM certificate in it ({exc})") from None
    return value


#: Use as the type of a connector's ``ca_file`` field.
CAFile = Annotated[str, AfterValidator(check_ca_file)]
#: Use as the type of a listen address.
ListenAddress = Annotated[str, AfterValidator(check_listen)]
