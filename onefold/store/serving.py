"""The serving store: each live profile's view, ready to answer a lookup in one read.

A profile view gathers a dozen tables (identities, traits, computed traits, accounts,
merges, refusals); asking DuckDB for it takes a dozen queries of about a millisecond each,
far from the 20 ms p99 and thousands of lookups a second a website or an agent desk
expects. So the identity graph writes the view of every profile it changes into this
store, next to the warehouse, and lookups read it with two primary-key reads:
``(namespace, value) → profile id`` and ``profile id → view``.

It is SQLite (the Python standard library's, in WAL mode: one writer, any number of
readers that never wait for it). Everything in it is derived from the warehouse and can
be rebuilt from it; which profiles still have to be rewritten is kept in the warehouse
(``serving_dirty``), in the same transaction as the change, so a crash between the two
stores loses nothing.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS profile_keys (
    namespace TEXT NOT NULL,
    value TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    PRIMARY KEY (namespace, value)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS profile_keys_profile ON profile_keys (profile_id);
CREATE TABLE IF NOT EXISTS profile_views (
    profile_id TEXT PRIMARY KEY,
    view BLOB NOT NULL
) WITHOUT ROWID;
"""

PROFILE_NAMESPACE = "profile"
"""Keys in this namespace map a profile id, live or absorbed, to the live profile."""


class ServingStore:
    """Profile views by identifier, in a SQLite file; safe to share between threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.created = not path.exists()
        """Whether the file was made just now: a new store has every profile to receive."""
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        con = self._connection()
        con.executescript(_SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            con.execute("PRAGMA journal_mode = WAL")
            con.execute("PRAGMA synchronous = FULL")
            con.execute("PRAGMA busy_timeout = 10000")
            con.execute("PRAGMA journal_size_limit = 67108864")  # WAL back to 64 MB after
            self._local.con = con
            with self._connections_lock:
                self._connections.append(con)
        return con

    def find(self, namespace: str, value: str) -> str | None:
        """The live profile holding an identifier (or, in ``profile``, a profile id)."""
        row = (
            self._connection()
            .execute(
                "SELECT profile_id FROM profile_keys WHERE namespace = ? AND value = ?",
                (namespace, value),
            )
            .fetchone()
        )
        return row[0] if row else None

    def view(self, profile_id: str) -> bytes | None:
        """The profile's view as the JSON the profile API answers with."""
        row = (
            self._connection()
            .execute("SELECT view FROM profile_views WHERE profile_id = ?", (profile_id,))
            .fetchone()
        )
        return row[0] if row else None

    def replace(
        self,
        stale: Iterable[str],
        keys: Iterable[tuple[str, str, str]],
        views: Iterable[tuple[str, bytes]],
    ) -> None:
        """In one transaction: forget everything about the ``stale`` profile ids, then
        store the given ``(namespace, value, profile_id)`` keys and ``(profile_id, view)``
        views."""
        stale = [(profile_id,) for profile_id in stale]
        with self._write_lock:
            con = self._connection()
            con.execute("BEGIN IMMEDIATE")
            try:
                con.executemany("DELETE FROM profile_keys WHERE profile_id = ?", stale)
                con.executemany("DELETE FROM profile_views WHERE profile_id = ?", stale)
                con.executemany("INSERT OR REPLACE INTO profile_keys VALUES (?, ?, ?)", keys)
                con.executemany("INSERT OR REPLACE INTO profile_views VALUES (?, ?)", views)
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def clear(self) -> None:
        with self._write_lock:
            con = self._connection()
            con.execute("BEGIN IMMEDIATE")
            con.execute("DELETE FROM profile_keys")
            con.execute("DELETE FROM profile_views")
            con.execute("COMMIT")

    def counts(self) -> dict[str, int]:
        con = self._connection()
        return {
            "keys": con.execute("SELECT count(*) FROM profile_keys").fetchone()[0],
            "views": con.execute("SELECT count(*) FROM profile_views").fetchone()[0],
        }

    def close(self) -> None:
        with self._connections_lock:
            for con in self._connections:
                con.close()
            self._connections.clear()
        self._local = threading.local()
