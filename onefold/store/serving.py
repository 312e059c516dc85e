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

import logging
import os
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

_TABLES = """
CREATE TABLE IF NOT EXISTS profile_keys (
    namespace TEXT NOT NULL,
    value TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    PRIMARY KEY (namespace, value)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS profile_views (
    profile_id TEXT PRIMARY KEY,
    view BLOB NOT NULL,
    keys BLOB NOT NULL
);
"""
LAYOUT = 2
"""The file layout's version (``PRAGMA user_version``); a store of another layout is
dropped and rebuilt from the warehouse."""
_NAME = re.compile(r"^serving\.(\d+)\.sqlite$")
log = logging.getLogger("onefold.serving")

PROFILE_NAMESPACE = "profile"
"""Keys in this namespace map an absorbed profile id to the live profile; a live profile
id is found by its view."""

Published = tuple[str, bytes, bytes]
"""A live profile as published: its id, its view, and its keys (its identifiers and the
ids of the profiles it absorbed) as a JSON list of ``[namespace, value]`` pairs, the same
bytes for the same keys."""


class ServingStore:
    """Profile views by identifier, in a SQLite file; safe to share between threads.

    The store lives in a directory as ``serving.<generation>.sqlite``. Changes to some
    profiles are written in place (:meth:`replace`); a rewrite of every profile is built
    as the next generation's file beside the current one and then switched to
    (:meth:`rebuild`), so lookups go on being answered from the old file meanwhile.
    """

    def __init__(self, directory: Path, checkpoint_interval: float = 2.0) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        for partial in directory.glob("*.building*"):
            partial.unlink()
        generations = sorted(int(m.group(1)) for m in map(_NAME.match, os.listdir(directory)) if m)
        if generations and _layout(directory / f"serving.{generations[-1]}.sqlite") != LAYOUT:
            for generation in generations:
                for path in directory.glob(f"serving.{generation}.sqlite*"):
                    path.unlink()
            generations = []
        self.created = not generations
        """Whether the store was made just now: a new store has every profile to receive."""
        self.generation = generations[-1] if generations else 0
        self._remove_older()
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._checkpoint_interval = checkpoint_interval
        self._written = threading.Event()
        self._closing = threading.Event()
        self._checkpointer: threading.Thread | None = None
        self._writes = 0
        self._checkpointed_writes = 0
        con = self._connection()
        con.executescript(_TABLES)
        con.execute(f"PRAGMA user_version = {LAYOUT}")

    @property
    def path(self) -> Path:
        return self.directory / f"serving.{self.generation}.sqlite"

    def _remove_older(self) -> None:
        for name in os.listdir(self.directory):
            match = _NAME.match(name.split("-")[0])
            if match and int(match.group(1)) < self.generation:
                (self.directory / name).unlink(missing_ok=True)

    def _connection(self) -> sqlite3.Connection:
        local = self._local
        con = getattr(local, "con", None)
        if con is None or local.generation != self.generation:
            if con is not None:  # this thread's connection to an older generation
                with self._connections_lock:
                    self._connections.remove(con)
                con.close()
            local.generation = self.generation
            local.writer = False
            con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            con.execute("PRAGMA journal_mode = WAL")
            con.execute("PRAGMA synchronous = FULL")
            con.execute("PRAGMA busy_timeout = 10000")
            con.execute("PRAGMA journal_size_limit = 67108864")  # WAL back to 64 MB after
            local.con = con
            with self._connections_lock:
                self._connections.append(con)
        return con

    def find(self, namespace: str, value: str) -> str | None:
        """The live profile holding an identifier (or, in ``profile``, a profile id)."""
        con = self._connection()
        row = con.execute(
            "SELECT profile_id FROM profile_keys WHERE namespace = ? AND value = ?",
            (namespace, value),
        ).fetchone()
        if row is None and namespace == PROFILE_NAMESPACE:
            row = con.execute(
                "SELECT profile_id FROM profile_views WHERE profile_id = ?", (value,)
            ).fetchone()
        return row[0] if row else None

    def view(self, profile_id: str) -> bytes | None:
        """The profile's view as the JSON the profile API answers with."""
        row = (
            self._connection()
            .execute("SELECT view FROM profile_views WHERE profile_id = ?", (profile_id,))
            .fetchone()
        )
        return row[0] if row else None

    def replace(self, stale: Iterable[str], profiles: Iterable[Published]) -> None:
        """In one transaction: forget everything about the ``stale`` profile ids, then
        store the given live profiles' views and keys.

        Most of a touched profile's keys are unchanged, and a B-tree write costs many
        reads: the keys each stale profile was published with are kept in its row, read
        first, and only the difference is written."""
        stale = sorted(set(stale))
        profiles = list(profiles)
        with self._writing() as con:
            stored = _stored_keys(con, stale)
            # Only the profiles whose keys changed (and the ids no longer live) are
            # compared key by key.
            before: set[tuple[str, str, str]] = set()
            after: set[tuple[str, str, str]] = set()
            for profile_id, _, owned in profiles:
                old = stored.pop(profile_id, None)
                if old != owned:
                    after.update(_keys(profile_id, owned))
                    if old is not None:
                        before.update(_keys(profile_id, old))
            for profile_id, old in stored.items():
                before.update(_keys(profile_id, old))
            con.execute(
                "DELETE FROM profile_keys WHERE (namespace, value) IN "
                "(SELECT value ->> 0, value ->> 1 FROM json_each(?))",
                (orjson.dumps([key[:2] for key in before - after]),),
            )
            _upsert_keys(con, sorted(after - before))
            live = {profile_id for profile_id, _, _ in profiles}
            gone = [profile_id for profile_id in stale if profile_id not in live]
            con.execute(
                "DELETE FROM profile_views WHERE profile_id IN (SELECT value FROM json_each(?))",
                (orjson.dumps(gone),),
            )
            _upsert_views(con, profiles)

    def set_computed_traits(self, profiles: list[tuple[str, str]]) -> list[str]:
        """In one transaction: set the computed traits (JSON text) in the stored views of
        these profiles, whose views changed in nothing else; returns the ids of those it
        has no view of (they are to be given their whole views)."""
        if not profiles:
            return []
        updated: set[str] = set()
        with self._writing() as con:
            for start in range(0, len(profiles), ROWS_PER_STATEMENT):
                updated.update(row[0] for row in con.execute(
                    "UPDATE profile_views SET view = CAST(json_set(CAST(view AS TEXT), "
                    "'$.computed_traits', json(p.value ->> 1)) AS BLOB) "
                    "FROM json_each(?) p WHERE profile_views.profile_id = p.value ->> 0 "
                    "RETURNING profile_views.profile_id",
                    (orjson.dumps(profiles[start : start + ROWS_PER_STATEMENT]),),
                ).fetchall())  # fmt: skip
        return [profile_id for profile_id, _ in profiles if profile_id not in updated]

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, on the calling thread's connection set up for writing;
        rolled back if the block raises."""
        with self._write_lock:
            con = self._connection()
            if not getattr(self._local, "writer", False):
                con.execute("PRAGMA cache_size = -65536")  # 64 MB for the writer
                # The writer never checkpoints: copying the WAL back into the database is
                # left to a thread of its own (see _checkpoint_loop).
                con.execute("PRAGMA wal_autocheckpoint = 0")
                self._local.writer = True
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
            self._wrote()

    @property
    def unchecked_writes(self) -> int:
        """Committed writes that no checkpoint has copied into the database file yet."""
        return self._writes - self._checkpointed_writes

    def _wrote(self) -> None:
        self._writes += 1
        if self._checkpointer is None:
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, name="onefold-serving-checkpoint", daemon=True
            )
            self._checkpointer.start()
        self._written.set()

    def _checkpoint_loop(self) -> None:
        """Copy the WAL back into the database, at most every ``checkpoint_interval``
        seconds while profiles are published. A checkpoint of a few thousand profiles'
        pages takes a few hundred milliseconds; here it runs beside the next publish (a
        passive checkpoint waits for no reader or writer) instead of inside one. Pages
        rewritten by several publishes in between are copied once."""
        while not self._closing.is_set():
            self._written.wait()
            self._written.clear()
            if self._closing.wait(self._checkpoint_interval):
                return
            writes = self._writes
            try:
                busy, frames, copied = (
                    self._connection().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                )
                if not busy and frames == copied:
                    self._checkpointed_writes = writes
                else:  # a reader held some frames back: try again
                    self._written.set()
            except sqlite3.Error:  # the next write asks again
                log.exception("checkpointing the serving store failed")

    def rebuild(self, batches: Iterable[list[Published]]) -> None:
        """Replace the whole store with the live profiles given, in batches: written to
        the next generation's file (no deletes), made durable, then switched to."""
        with self._write_lock:
            target = self.directory / f"serving.{self.generation + 1}.sqlite"
            building = target.with_name(target.name + ".building")
            building.unlink(missing_ok=True)
            con = sqlite3.connect(building, isolation_level=None)
            try:
                con.execute("PRAGMA journal_mode = OFF")
                con.execute("PRAGMA synchronous = OFF")
                con.execute("PRAGMA cache_size = -262144")
                con.executescript(_TABLES)
                con.execute(f"PRAGMA user_version = {LAYOUT}")
                con.execute("BEGIN")
                for profiles in batches:
                    _upsert_keys(con, [key for profile_id, _, owned in profiles
                                       for key in _keys(profile_id, owned)])  # fmt: skip
                    _upsert_views(con, profiles)
                con.execute("COMMIT")
            finally:
                con.close()
            with building.open("rb+") as file:
                os.fsync(file.fileno())
            os.replace(building, target)
            directory = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
            self.generation += 1
            self._remove_older()

    def counts(self) -> dict[str, int]:
        con = self._connection()
        return {
            "keys": con.execute("SELECT count(*) FROM profile_keys").fetchone()[0],
            "views": con.execute("SELECT count(*) FROM profile_views").fetchone()[0],
        }

    def close(self) -> None:
        self._closing.set()
        self._written.set()
        if self._checkpointer is not None:
            self._checkpointer.join()
        with self._connections_lock:
            for con in self._connections:
                con.close()
            self._connections.clear()
        self._local = threading.local()


# Each statement below takes its rows as one JSON parameter. The sqlite3 module lets go of
# the interpreter lock around every step of a statement, so ``executemany`` (a step per
# row) or a fetch row by row has to win the lock back once per row; while the resolving
# thread and the event loop run Python, each of those waits up to the switch interval.
# Measured with two Python threads busy: 2,500 views written in 1,000 ms by executemany,
# in 33 ms by one statement. Writes go ROWS_PER_STATEMENT at a time, so a rebuild of
# every profile does not hold all its views as one string.
ROWS_PER_STATEMENT = 5000


def _stored_keys(con: sqlite3.Connection, profile_ids: list[str]) -> dict[str, bytes]:
    """The keys each of these profiles was published with (those that have a view)."""
    (rows,) = con.execute(
        "SELECT json_group_array(json_array(profile_id, CAST(keys AS TEXT))) "
        "FROM profile_views WHERE profile_id IN (SELECT value FROM json_each(?))",
        (orjson.dumps(profile_ids),),
    ).fetchone()
    return {profile_id: keys.encode() for profile_id, keys in orjson.loads(rows)}


def _upsert_keys(con: sqlite3.Connection, keys: list[tuple[str, str, str]]) -> None:
    for start in range(0, len(keys), ROWS_PER_STATEMENT):
        con.execute(
            "INSERT INTO profile_keys SELECT value ->> 0, value ->> 1, value ->> 2 "
            "FROM json_each(?) WHERE true ON CONFLICT (namespace, value) "
            "DO UPDATE SET profile_id = excluded.profile_id",
            (orjson.dumps(keys[start : start + ROWS_PER_STATEMENT]),),
        )


def _upsert_views(con: sqlite3.Connection, profiles: list[Published]) -> None:
    # An update in place: REPLACE would delete the row and insert it under a new rowid,
    # rewriting the primary key's index as well. Views and keys travel as JSON strings
    # and are stored as the same bytes.
    for start in range(0, len(profiles), ROWS_PER_STATEMENT):
        rows = [
            (profile_id, view.decode(), owned.decode())
            for profile_id, view, owned in profiles[start : start + ROWS_PER_STATEMENT]
        ]
        con.execute(
            "INSERT INTO profile_views SELECT value ->> 0, CAST(value ->> 1 AS BLOB), "
            "CAST(value ->> 2 AS BLOB) FROM json_each(?) WHERE true ON CONFLICT (profile_id) "
            "DO UPDATE SET view = excluded.view, keys = excluded.keys",
            (orjson.dumps(rows),),
        )


def _keys(profile_id: str, owned: bytes) -> list[tuple[str, str, str]]:
    return [(namespace, value, profile_id) for namespace, value in orjson.loads(owned)]


def _layout(path: Path) -> int:
    con = sqlite3.connect(path)
    try:
        return con.execute("PRAGMA user_version").fetchone()[0]
    finally:
        con.close()
