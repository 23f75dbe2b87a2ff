"""A map whose bulk lives on disk past a size: per-entry bookkeeping of a million-entry read
(part of the plugin API: the engine and connectors use it alike).

Why: an initial sync remembers a few things per entry until the read ends -- the identifiers
planned (duplicate check across pages), the LDAP source's member DN -> anchor map, the LDAP
target's anchor -> DN cache. As dicts of Python strings they cost ~500 B per user, which at a
million users was most of the run's memory (issue 17: 1.4 GB). Up to `limit` entries a
`SpillMap` is a plain dict, so a directory of the usual size pays nothing; past it, the dict
is written to a private temporary SQLite file (deleted when the map is closed or collected;
its page cache is SQLite's default ~2 MB) and starts over as a buffer of what was written or
read most recently. Lookups look in the dict, then in the file: one indexed query per key,
or per 500 keys with `get_many`.

Keys are ``str`` or ``int`` (one type per map), values ``str`` or None; None is a value
("known: none"), distinct from a missing key. Safe to share between threads (the LDAP
writer's apply threads all record DNs): writes and the file are under one lock, reads of the
dict take none.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from typing import Generic, TypeVar

K = TypeVar("K", str, int)

#: Entries kept as a dict before the map spills to its file (each map on its own).
LIMIT = 100_000
#: Keys per query of `get_many`: under SQLite's default limit of bound variables.
CHUNK = 500

_MISSING = object()


class SpillMap(Generic[K]):
    """``K -> str | None``: a dict up to `limit` entries, then a dict in front of a file."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = LIMIT if limit is None else limit
        self._mem: dict[K, str | None] = {}
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    # ---- reads --------------------------------------------------------------------------

    def get(self, key: K, default: str | None = None) -> str | None:
        found = self._mem.get(key, _MISSING)
        if found is not _MISSING:
            return found  # type: ignore[return-value]
        if self._db is None:
            return default
        rows = self._query("SELECT v FROM m WHERE k = ?", (key,))
        return default if not rows else rows[0][0]  # type: ignore[return-value]

    def __contains__(self, key: K) -> bool:
        if key in self._mem:
            return True
        if self._db is None:
            return False
        return bool(self._query("SELECT 1 FROM m WHERE k = ?", (key,)))

    def __getitem__(self, key: K) -> str | None:
        found = self.get(key, _MISSING)  # type: ignore[arg-type]
        if found is _MISSING:
            raise KeyError(key)
        return found

    def get_many(self, keys: Iterable[K]) -> dict[K, str | None]:
        """The entries of these keys that are in the map (missing keys are left out)."""
        out: dict[K, str | None] = {}
        rest: list[K] = []
        mem = self._mem
        for k in keys:
            v = mem.get(k, _MISSING)
            if v is _MISSING:
                rest.append(k)
            else:
                out[k] = v  # type: ignore[assignment]
        if self._db is not None and rest:
            rest = list(dict.fromkeys(rest))
            for i in range(0, len(rest), CHUNK):
                chunk = rest[i : i + CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._query(f"SELECT k, v FROM m WHERE k IN ({marks})", chunk)
                out.update(rows)  # type: ignore[arg-type]
        return out

    def __len__(self) -> int:
        """Entries in the file plus the dict's (a key in both is counted twice: an estimate
        for logs and tests, not an identity)."""
        on_disk = 0 if self._db is None else self._query("SELECT count(*) FROM m")[0][0]
        return int(on_disk) + len(self._mem)  # type: ignore[call-overload]

    @property
    def spilled(self) -> bool:
        return self._db is not None

    # ---- writes -------------------------------------------------------------------------

    def __setitem__(self, key: K, value: str | None) -> None:
        with self._lock:
            self._mem[key] = value
            if len(self._mem) > self.limit:
                self._spill()

    def update(self, pairs: Iterable[tuple[K, str | None]]) -> None:
        pairs = list(pairs)  # a generator could read the map: not under its lock
        with self._lock:
            self._mem.update(pairs)
            if len(self._mem) > self.limit:
                self._spill()

    def pop(self, key: K, default: str | None = None) -> str | None:
        """Remove the key; its value (the dict's, which is the newer one), else `default`."""
        with self._lock:
            found = self._mem.pop(key, _MISSING)
            if self._db is not None:
                row = self._db.execute("DELETE FROM m WHERE k = ? RETURNING v",
                                       (key,)).fetchone()
                if found is _MISSING and row is not None:
                    found = row[0]
        return default if found is _MISSING else found  # type: ignore[return-value]

    def clear(self) -> None:
        with self._lock:
            self._mem = {}
        self.close()

    def close(self) -> None:
        """Drop the file (the dict stays usable)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __del__(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()

    # ---- the file -----------------------------------------------------------------------

    def _spill(self) -> None:
        """Write the dict to the file (created on first use), then start the dict over.
        Under the lock, as every write is: readers, who take no lock, find a key in the
        dict they hold or, once it is replaced, in the file. A failed write (disk full)
        leaves the dict as it was and raises."""
        if self._db is None:
            # "" = a private temporary database on disk, deleted when closed
            db = sqlite3.connect("", check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode = OFF")
            db.execute("PRAGMA synchronous = OFF")
            kind = "INTEGER" if isinstance(next(iter(self._mem)), int) else "TEXT"
            db.execute(f"CREATE TABLE m (k {kind} PRIMARY KEY, v TEXT)"
                       + (" WITHOUT ROWID" if kind == "TEXT" else ""))
            self._db = db
        db = self._db
        db.execute("BEGIN")
        try:
            db.executemany("INSERT OR REPLACE INTO m VALUES (?, ?)", list(self._mem.items()))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        self._mem = {}

    def _query(self, sql: str, args: Iterable[object] = ()) -> list[tuple[object, ...]]:
        with self._lock:
            if self._db is None:  # closed meanwhile (`clear`): the file's keys are gone
                return []
            return self._db.execute(sql, tuple(args)).fetchall()
