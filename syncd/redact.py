"""Secrets never leave through a peer's words.

A server may echo a request back in an error body (a proxy's HTML error page quoting the
``Authorization`` header, a debug page listing the environment). Every error text is built
from such words, and it is logged, stored (pending and journal rows) and printed (`status`,
`explain`). So every configured secret value is registered here when it is resolved, and
`redact` removes those values and anything shaped like a credential before a text goes
anywhere. `ConnectorError` applies it to its message, the log handler to every record, and the
store to every error column: one choke point per way out, not one per connector.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Mapping
from typing import Any

MASK = "[redacted]"
#: Texts kept for humans are capped: an error body can be megabytes (or a whole HTML page).
LIMIT = 2000
#: Shorter values are not registered: masking "a" or "ab" everywhere would mangle every text
#: and says nothing a guesser would not try first.
_MIN_SECRET = 4

_lock = threading.Lock()
_secrets: set[str] = set()
_secret_re: re.Pattern[str] | None = None

#: Credential shapes, applied in this order (each to the previous one's output).
_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    # an Authorization value wherever it appears, also inline in an HTML error page
    (re.compile(r"(?i)\b(bearer|basic|negotiate|ntlm)\s+[A-Za-z0-9._~+/=\-]{6,}"),
     r"\1 " + MASK),
    # header lines a server echoed
    (re.compile(r"(?im)^([ \t]*(?:proxy-)?authorization|[ \t]*(?:set-)?cookie"
                r"|[ \t]*x-api-key)([ \t]*[:=]).*?$"), r"\1\2 " + MASK),
    # key=value and "key": "value" for keys that name a credential
    (re.compile(r"""(?ix)(["']?\b(?:authorization|password|passwd|secret|client_secret
                 |access_token|refresh_token|id_token|api_key|apikey)["']?\s*[:=]\s*)
                 (?!\[redacted\])("[^"]*"|'[^']*'|[^\s,;&}<]+)"""), r"\1" + MASK),
)


#: Attribute names whose values are secrets wherever syncd keeps or shows them: a mapped
#: initial password, a password hash a bind account could read (userPassword, unicodePwd).
SECRET_ATTRIBUTE = re.compile(r"(?i)pass(?:word|wd)?|pwd|secret|token|credential|private|hash"
                              r"|pkcs12|(?:^|[._-])key$|apikey")


def mask_value(attribute: str, value: Any) -> Any:
    """`value`, or the mask when `attribute` names a secret (an absent value stays absent)."""
    return MASK if value is not None and _secret(attribute) else value


@functools.lru_cache(maxsize=4096)
def _secret(attribute: str) -> bool:
    """A flow maps a handful of attributes: one regex search per name, not per value shown
    (a plan of 20,000 creates shows ~180,000 values)."""
    return SECRET_ATTRIBUTE.search(attribute) is not None


def mask_attributes(values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` with every secret attribute's value replaced by the mask (a new dict). Most
    changes name no secret: those are copied whole, without a call per value (rendering a
    plan masks each change's values twice)."""
    if not any(map(_secret, values)):
        return dict(values)
    return {k: mask_value(k, v) for k, v in values.items()}


def register(value: str) -> None:
    """Remember a secret value so that no text carrying it is ever logged, stored or shown."""
    global _secret_re
    if len(value) < _MIN_SECRET:
        return
    with _lock:
        if value in _secrets:
            return
        _secrets.add(value)
        # longest first, so a secret containing another is masked whole
        ordered = sorted(_secrets, key=len, reverse=True)
        _secret_re = re.compile("|".join(re.escape(s) for s in ordered))


def redact(text: str, limit: int | None = LIMIT) -> str:
    """`text` without registered secrets or credential-shaped fragments, at most `limit`
    characters (None: no cap)."""
    if not text:
        return text
    pattern = _secret_re
    if pattern is not None:
        text = pattern.sub(MASK, text)
    for shape, replacement in _SHAPES:
        text = shape.sub(replacement, text)
    if limit is not None and len(text) > limit:
        text = text[:limit] + f" … [{len(text) - limit} more characters cut]"
    return text
