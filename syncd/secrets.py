"""Secret references: ``literal``, ``env:NAME`` or ``file:/path``.

Resolved once at config load so a missing variable or unreadable file is a config error
(exit 2) rather than a mid-run failure. Values are held as `pydantic.SecretStr`, whose repr is
``'**********'``, so they cannot leak through logs, plan output or validation errors.
``file:`` paths that are relative resolve against ``$CREDENTIALS_DIRECTORY`` when systemd set
it (``LoadCredential=``), which is how the service unit hands secrets over.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, SecretStr

from syncd.redact import register


def resolve_secret(value: object) -> SecretStr:
    """Resolve a reference; the value is registered with `syncd.redact`, so it is masked in
    every error text, log line and stored row even when a peer echoes it back."""
    secret = _resolve(value)
    register(secret.get_secret_value())
    return secret


def _resolve(value: object) -> SecretStr:
    if isinstance(value, SecretStr):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a string: a literal, env:NAME or file:/path")
    if value.startswith("env:"):
        name = value[4:]
        if not name:
            raise ValueError("env: needs a variable name")
        if name not in os.environ:
            raise ValueError(f"environment variable {name} is not set")
        return SecretStr(os.environ[name])
    if value.startswith("file:"):
        raw = value[5:]
        path = Path(raw)
        creds = os.environ.get("CREDENTIALS_DIRECTORY")
        if not path.is_absolute() and creds:
            path = Path(creds) / path
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None
        return SecretStr(text.rstrip("\r\n"))
    return SecretStr(value)


#: Use as a field type in connector config models.
Secret = Annotated[SecretStr, BeforeValidator(resolve_secret)]
