"""TLS of the LDAP connector: verified settings, warnings about unsafe ones, clear errors.

Why a module: three decisions that must be the same for the read connections (`base.py`)
and the writer's (`write/session.py`), and that are testable without a server:

- `build_tls`: ldap3's own default ``Tls()`` validates nothing, so we always pass
  ``CERT_REQUIRED`` (ldap3 then checks the host name too) unless the admin explicitly set
  ``tls_verify = false``.
- `tls_warnings`: what is unsafe about a config, logged as a WARNING at every `open()` so
  it is never silent: an unverified certificate, or a password sent in clear text (simple
  bind over plain ``ldap://`` without StartTLS) to another machine. Loopback is exempt:
  the password never leaves the host.
- `certificate_problem`: a failed certificate check says so, with the way out (``ca_file``),
  instead of a generic "cannot connect" that sends the admin looking at firewalls.
"""

from __future__ import annotations

import re
import ssl
from urllib.parse import urlsplit

import ldap3
from ldap3.core.exceptions import LDAPCertificateError

from syncd.net import is_loopback
from syncd_connectors.ldap.config import LdapConfig

_VERIFY_REASON = re.compile(r"certificate verify failed:?\s*([^(]*)")


def build_tls(config: LdapConfig) -> ldap3.Tls | None:
    """TLS settings for ldaps:// or StartTLS (None for neither), verifying by default."""
    if config.scheme != "ldaps" and not config.start_tls:
        return None
    return ldap3.Tls(
        validate=ssl.CERT_REQUIRED if config.tls_verify else ssl.CERT_NONE,
        ca_certs_file=config.ca_file,
    )


def tls_warnings(config: LdapConfig) -> list[str]:
    """Why this config is unsafe on the wire (empty: it is not); see the module docstring."""
    out: list[str] = []
    if not config.tls_verify:
        out.append(
            "tls_verify = false: the server's certificate is not verified, so anyone on the "
            "path can pose as the server and read the bind password and the directory; set "
            "ca_file to the CA that issued the server's certificate instead"
        )
    host = urlsplit(config.url).hostname or ""
    plain = config.scheme == "ldap" and not config.start_tls
    if plain and config.bind_password is not None and not is_loopback(host):
        out.append(
            f"the bind password for {config.bind_dn} is sent in clear text to {host} (simple "
            "bind over ldap:// without start_tls); use ldaps:// or start_tls = true"
        )
    return out


def certificate_problem(exc: BaseException, config: LdapConfig) -> str | None:
    """The message for a failed certificate check, or None when `exc` is something else."""
    url = config.url
    hint = (
        f"set ca_file to the CA that issued the server's certificate (ca_file={config.ca_file})"
    )
    if isinstance(exc, ssl.SSLCertVerificationError):
        found = _VERIFY_REASON.search(str(exc))
        reason = (found.group(1).strip() if found else "") or str(exc)
        return f"TLS certificate verification failed for {url}: {reason}; {hint}"
    if isinstance(exc, LDAPCertificateError) or "doesn't match any name" in str(exc):
        host = urlsplit(url).hostname
        return (
            f"TLS certificate verification failed for {url}: the certificate is not valid "
            f"for the host name {host}; use a host name the certificate names in url"
        )
    return None
