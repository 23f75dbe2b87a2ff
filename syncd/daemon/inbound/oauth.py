"""OAuth 2 access tokens (JWTs) for ``syncd serve`` (``[serve.oauth]``), next to the static
bearer tokens: a token is accepted when its signature verifies against a key of the JWKS
file (chosen by ``kid``), with one of the configured asymmetric algorithms, and its ``iss``,
``aud``, ``exp`` (required), ``nbf`` and ``iat`` hold, within a leeway.

Keys come from a file, never fetched over the network: the daemon starts and answers without
reaching the identity provider, and an admin (or a timer) rotates keys by replacing the file,
which is re-read when its modification time or size changes. PyJWT does the verification
(an optional dependency: ``pip install 'syncd[oauth]'``); nothing here logs a token or a claim.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("syncd.serve")


class JwtVerifier:
    def __init__(self, issuer: str, audience: Sequence[str], jwks_file: str | Path, *,
                 algorithms: Sequence[str] = ("RS256",), leeway: float = 60.0) -> None:
        try:
            import jwt
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise RuntimeError("[serve.oauth] needs PyJWT: pip install 'syncd[oauth]'") from exc
        self._jwt = jwt
        self.issuer = issuer
        self.audience = list(audience)
        self.path = Path(jwks_file)
        self.algorithms = list(algorithms)
        self.leeway = leeway
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._keys: dict[str | None, Any] = {}
        self._load()  # a broken file fails the start, not the first request

    def _load(self) -> None:
        st = os.stat(self.path)
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        with self._lock:
            if stamp == self._stamp:
                return
            keys = self._jwt.PyJWKSet.from_json(self.path.read_text(encoding="utf-8"))
            self._keys = {k.key_id: k for k in keys.keys
                          if getattr(k, "public_key_use", None) in (None, "sig")}
            self._stamp = stamp
            log.info("OAuth: %d signing key(s) from %s", len(self._keys), self.path)

    def _key(self, kid: str | None) -> Any | None:
        if kid in self._keys:
            return self._keys[kid]
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return None

    def valid(self, token: str) -> bool:
        """True when `token` is a JWT this server accepts; False for anything else."""
        jwt = self._jwt
        if token.count(".") != 2:
            return False
        try:
            self._load()
        except (OSError, ValueError, jwt.PyJWTError) as exc:  # keep the keys we had
            log.error("OAuth: cannot read %s: %s", self.path, type(exc).__name__)
        try:
            header = jwt.get_unverified_header(token)
            key = self._key(header.get("kid"))
            if key is None or header.get("alg") not in self.algorithms:
                return False
            jwt.decode(token, key.key, algorithms=self.algorithms, audience=self.audience,
                       issuer=self.issuer, leeway=self.leeway,
                       options={"require": ["exp", "iss", "aud"]})
        except jwt.PyJWTError:
            return False
        return True
