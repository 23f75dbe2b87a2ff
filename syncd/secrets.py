"""Secret references: ``literal``, ``env:NAME`` or ``file:/path``.

Resolved once at config load so a missing variable or unreadable file is a config error
(exit 2) rather than a mid-run failure — by the commands that open connectors. Commands that
only read the state store (`status`, `conflicts`, `release`, `validate`, `test-mapping`) load
the config with references left unresolved (`UnresolvedSecret`), so an admin can inspect the
service from a shell without its credentials (``LoadCredential=`` files exist only inside the
service). Values are held as `pydantic.SecretStr`, whose repr is
``'**********'``, so they cannot leak through logs, plan output or validation errors.
``file:`` paths that are relative resolve against ``$CREDENTIALS_DIRECTORY`` when systemd set
it (``LoadCredential=``), which is how the service unit hands secrets over.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, SecretStr, ValidationInfo, WrapValidator
from pydantic_core.core_schema import ValidatorFunctionWrapHandler

from syncd.errors import ConfigError
from syncd.redact import register

#: Validation context that leaves ``env:``/``file:`` references unresolved.
DEFER = {"secrets": "defer"}


class UnresolvedSecret(SecretStr):
    """A reference (``env:NAME``, ``file:/path``: not secret themselves) that a command which
    opens no connector left unresolved. Using it is a bug of that command, reported as such."""

    def __init__(self, reference: str) -> None:
        super().__init__("")
        self.reference = reference

    def get_secret_value(self) -> str:
        raise ConfigError(f"secret {self.reference} was not resolved: this command does not "
                          "open connectors")

    def problem(self) -> str | None:
        """Why resolving it here and now would fail (None: it would work)."""
        try:
            _resolve(self.reference)
        except ValueError as exc:
            return str(exc)
        return None


def resolve_secret(value: object, info: ValidationInfo | None = None) -> SecretStr:
    """Resolve a reference; the value is registered with `syncd.redact`, so it is masked in
    every error text, log line and stored row even when a peer echoes it back. Under the
    `DEFER` context a reference is only checked for its form."""
    if (info is not None and info.context == DEFER and isinstance(value, str)
            and value.startswith(("env:", "file:"))):
        if value in ("env:", "file:"):
            raise ValueError(f"{value} needs a {'variable name' if value == 'env:' else 'path'}")
        return UnresolvedSecret(value)
    secret = _resolve(value)
    register(secret.get_secret_value())
    return secret


def _validate(value: object, handler: ValidatorFunctionWrapHandler,
              info: ValidationInfo) -> SecretStr:
    out = resolve_secret(value, info)
    return out if isinstance(out, UnresolvedSecret) else handler(out)


def unresolved(model: BaseModel, where: str) -> list[tuple[str, UnresolvedSecret]]:
    """The unresolved references of a config model, each with its key path."""
    out = []
    for name in type(model).model_fields:
        value = getattr(model, name, None)
        if isinstance(value, UnresolvedSecret):
            out.append((f"{where}.{name}", value))
        elif isinstance(value, BaseModel):
            out += unresolved(value, f"{where}.{name}")
    return out


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
Secret = Annotated[SecretStr, WrapValidator(_validate)]
