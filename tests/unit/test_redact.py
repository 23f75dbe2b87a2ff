"""Secrets never leave through a peer's words: whatever a server echoes, the configured secret
values and credential-shaped text are masked before anything is logged, stored or printed."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd import config, redact
from syncd.cycle import engine
from syncd.errors import Rejected, Retriable
from syncd.log import JsonFormatter, TextFormatter
from syncd.state.store import Store
from syncd.testing import DIRECTORIES, directory, fail_with

SECRET = "tok-9f8e7d6c5b4a"
redact.register(SECRET)


@given(st.text(max_size=80), st.text(max_size=80))
def test_a_registered_secret_never_survives(before: str, after: str) -> None:
    out = redact.redact(before + SECRET + after, limit=None)
    assert SECRET not in out


@pytest.mark.parametrize("echo", [
    "<html><pre>Authorization: Bearer {t}</pre></html>",
    "GET /Users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\n\r\n",
    '{{"detail": "bad", "headers": {{"authorization": "Bearer {t}"}}}}',
    "access_token={t}&x=1",
])
def test_credential_shapes_are_masked(echo: str) -> None:
    token = "Zm9vYmFyYmF6cXV4MTIzNDU2"  # not registered: only its shape gives it away
    assert token not in redact.redact(echo.format(t=token))


def test_error_text_is_capped() -> None:
    out = redact.redact("x" * 10_000)
    assert len(out) < 2100 and "more characters cut" in out


def test_connector_errors_are_redacted_at_birth() -> None:
    exc = Rejected(f"400: server said: Authorization: Bearer {SECRET}")
    assert SECRET not in str(exc)


@pytest.mark.parametrize("fmt", [JsonFormatter(), TextFormatter()])
def test_log_lines_are_redacted(fmt: logging.Formatter) -> None:
    rec = logging.LogRecord("syncd.x", logging.WARNING, __file__, 1, "peer said %s",
                            (f"token {SECRET}",), None)
    assert SECRET not in fmt.format(rec)


def test_secret_echoed_by_the_target_is_stored_nowhere(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture
                                                       ) -> None:
    """End to end through the engine: a target whose error body reflects the token."""
    token = "scim-bearer-5a4b3c2d1e"
    src, dst = directory("redact-src"), directory("redact-dst")
    try:
        src.put("user", {"uid": "jdoe"}, "s1")
        dst.faults["create"] = fail_with(lambda: Retriable(
            f"503: <html>Authorization: Bearer {token}; token={token}</html>"))
        (tmp_path / "c.toml").write_text(f"""
[state]
url = "sqlite:///{tmp_path}/s.db"
[connectors.src]
type = "memory"
directory = "redact-src"
[connectors.dst]
type = "memory"
directory = "redact-dst"
[flows.f]
source = "src"
target = "dst"
[flows.f.users.mapping]
userName = "uid"
""")
        redact.register(token)  # what resolving `token = "env:…"` does
        cfg = config.load(tmp_path / "c.toml")
        with caplog.at_level(logging.DEBUG, logger="syncd"):
            (res,) = engine.run(cfg)
        assert res.result == "failed"
        assert token not in " ".join(f.message for f in res.failures)
        store = Store(cfg.state_url)
        try:
            (pending,) = store.pending("f", "user").values()
        finally:
            store.close()
        assert "[redacted]" in pending.error and token not in pending.error
        # nowhere in the store's files: pending rows, journal, runs
        for f in tmp_path.glob("s.db*"):
            assert token.encode() not in f.read_bytes()
        assert token not in caplog.text
    finally:
        DIRECTORIES.pop("redact-src", None)
        DIRECTORIES.pop("redact-dst", None)
