"""Opening the state store: URL checks, local file checks, and errors an operator can act on.

Kept apart from `syncd.state.store` (which is about what the store keeps) because everything here
runs *before* a query: at config load (`check_state_url`: parseable, a dialect we support,
its driver installed), in `syncd validate` (`check_sqlite_path`: without opening anything),
and when `Store` connects. A store that cannot be opened is a `StoreError` naming the store
(its path, or its URL with the password masked) and the reason — never a traceback, never
the password.

The database password may come from a secret reference (``[state] password = "env:PGPASS"``)
instead of the URL. `StateURL` carries it *with* the URL string: every caller hands
``config.state_url`` to `Store`, so none of them can forget the password, while ``str()`` of
the URL — what gets logged and printed — never contains it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from syncd.errors import StoreError

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.engine import URL

#: The first 16 bytes of every SQLite 3 database file.
SQLITE_MAGIC = b"SQLite format 3\x00"
#: Backends whose upsert dialect `syncd.state.store` speaks.
SUPPORTED = ("sqlite", "postgresql")
#: Seconds to wait for a database server before calling it down (unless the URL says).
CONNECT_TIMEOUT_S = 10


class StateURL(str):
    """A state store URL (as text, without any separately configured password) plus that
    password as a `SecretStr`; `Store` combines the two only when it connects."""

    secret: SecretStr | None

    def __new__(cls, url: str, secret: SecretStr | None = None) -> StateURL:
        obj = super().__new__(cls, url)
        obj.secret = secret
        return obj


def secret_of(url: str) -> SecretStr | None:
    return getattr(url, "secret", None)


def safe_url(url: str) -> str:
    """The store as shown to a person: the URL with any password masked (a `StateURL` never
    holds a separately configured one)."""
    from sqlalchemy.engine import make_url

    return make_url(str(url)).render_as_string(hide_password=True)


def check_state_url(text: str) -> str:
    """Config-time check of ``[state] url`` (ValueError: pydantic names the key)."""
    parse_state_url(text)
    return text


def parse_state_url(text: str) -> URL:
    """The parsed URL, or ValueError saying why it cannot be a state store. Messages never
    repeat the URL (it may hold a password)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        url = make_url(text)
    except (ArgumentError, ValueError):
        raise ValueError("not a database URL (e.g. sqlite:////var/lib/syncd/syncd-state.db "
                         "or postgresql+psycopg://syncd@db.example.com/syncd)") from None
    backend = url.get_backend_name()
    try:
        dialect = url.get_dialect()
    except NoSuchModuleError:
        raise ValueError(f"unknown database dialect {url.drivername!r} "
                         f"(supported: {', '.join(SUPPORTED)})") from None
    if backend not in SUPPORTED:
        raise ValueError(f"the state store runs on {' or '.join(SUPPORTED)}, "
                         f"not {backend!r}")
    if getattr(dialect, "is_async", False):
        raise ValueError(f"{url.drivername!r} is an asyncio driver; use a synchronous one "
                         "(e.g. postgresql+psycopg)")
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        raise ValueError(f"the database driver for {url.drivername!r} is not installed "
                         f"({exc.name or exc})") from None
    return url


def check_password_use(url: str | None, password: SecretStr | None) -> None:
    """``[state] password`` completes a server URL that has none; anything else is a
    config mistake that would otherwise be silently ignored."""
    if password is None or url is None:
        if password is not None:
            raise ValueError("password needs a server url (the default store is SQLite)")
        return
    parsed = parse_state_url(url)
    if parsed.get_backend_name() == "sqlite":
        raise ValueError("SQLite has no password: remove [state] password")
    if parsed.password is not None:
        raise ValueError("the url already holds a password: give it in one place only "
                         "(preferably [state] password = \"env:NAME\" or \"file:/path\")")


def _ok(path: Path, mode: int) -> bool:
    # effective ids: what the process may do now (a root process that dropped privileges)
    return os.access(path, mode, effective_ids=os.access in os.supports_effective_ids)


def check_sqlite_path(path: Path, *, readonly: bool) -> None:
    """What can be known about an SQLite store without opening it: the file (if there) is
    readable, writable and starts like an SQLite database; its directory exists or can be
    created, and is writable (SQLite keeps its -wal and -shm files next to the store)."""
    w = f"state store {path}"
    if path.exists():
        if path.is_dir():
            raise StoreError(f"{w}: is a directory, not a file")
        if not _ok(path, os.R_OK):
            raise StoreError(f"{w}: not readable (permission denied)")
        if not readonly and not _ok(path, os.W_OK):
            raise StoreError(f"{w}: not writable (permission denied)")
        with path.open("rb") as fh:
            head = fh.read(len(SQLITE_MAGIC))
        if head and head != SQLITE_MAGIC:
            raise StoreError(f"{w}: not an SQLite database (corrupt, or some other file); "
                             "restore it from a backup or move it away to start afresh")
        if not readonly and not _ok(path.parent, os.W_OK | os.X_OK):
            raise StoreError(f"{w}: directory {path.parent} is not writable (SQLite keeps "
                             "its -wal and -shm files next to the store)")
        return
    if readonly:
        return  # nothing stored yet: read-only users see an empty store
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise StoreError(f"{w}: cannot create it: {ancestor} is not a directory")
    if not _ok(ancestor, os.W_OK | os.X_OK):
        raise StoreError(f"{w}: cannot create it: directory {ancestor} is not writable "
                         "(permission denied)")


def create_private(path: Path) -> bool:
    """Create the SQLite file 0600 whatever the umask (links and bases are directory data);
    SQLite gives its -wal and -shm files the main file's mode. True if we created it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    except OSError as exc:
        raise StoreError(f"state store {path}: cannot create it: "
                         f"{exc.strerror or exc}") from None
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return True


def remove_created(path: Path) -> None:
    """Undo `create_private` after a failed first open: no half-initialised store stays."""
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(OSError):
            p.unlink()


_HINTS = (
    ("file is not a database", "not an SQLite database (corrupt, or some other file)"),
    ("database disk image is malformed", "the SQLite database is corrupt"),
    ("disk is full", "disk full"),
    ("readonly database", "not writable"),
    ("unable to open database file", "cannot open the database file"),
    ("connection refused", "cannot connect (is the database server running?)"),
    ("password authentication failed", "authentication failed (check [state] password)"),
    ("timeout expired", "cannot connect (timed out)"),
)


def reason(exc: BaseException, secret: SecretStr | None = None) -> str:
    """One line saying what went wrong, with the password masked even if a driver echoed it."""
    orig = getattr(exc, "orig", None) or exc
    text = " ".join(str(orig).split()) or type(orig).__name__
    if secret is not None and secret.get_secret_value():
        text = text.replace(secret.get_secret_value(), "***")
    low = text.lower()
    for needle, hint in _HINTS:
        if needle in low:
            return f"{hint}: {text}"
    return text


def translate_errors(engine: Engine, name: str, secret: SecretStr | None) -> None:
    """Every database error raised through `engine` becomes a `StoreError` naming the store:
    callers (CLI, daemon, engine) report one error type, and no query site needs a try."""
    from sqlalchemy import event

    @event.listens_for(engine, "handle_error")
    def _translate(ctx: Any) -> BaseException | None:
        if ctx.is_pre_ping:  # the pool's liveness probe: let it reconnect as designed
            return None
        return StoreError(f"state store {name}: {reason(ctx.original_exception, secret)}")


def check_offline(url: str) -> None:
    """`syncd validate`'s look at the store, opening nothing: the URL (again, for callers
    that did not load a config) and, for SQLite, the file and its directory."""
    from syncd.errors import ConfigError

    try:
        parsed = parse_state_url(url)
    except ValueError as exc:
        raise ConfigError(str(exc), "state.url") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        check_sqlite_path(Path(parsed.database), readonly=False)
