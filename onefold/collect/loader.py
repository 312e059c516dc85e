"""Moving closed landing-log segments into the warehouse, exactly once.

Segments are loaded in a transaction that also records them as landed, so a crash before
the commit loads them again and a crash after it only leaves files to delete. Under load
several segments wait by the time a load ends, and the next load takes them together:
the fixed costs of a load are paid once for all of them, so the loader gets more
efficient the further it falls behind, and catches up.
Messages are deduplicated on (source, messageId) against every message ever stored — the
SDKs retry, and a retry may arrive in the same segment, a later one, or after a restart.
Every stored message gets ``seq``: (segment number << 32) + its position in the segment,
increasing in commit order, which is what later stages read incrementally.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import duckdb

from onefold.collect.landing import LandingLog, list_segments, recover_segment, segment_number
from onefold.store import Warehouse

log = logging.getLogger("onefold.loader")

_RECORD_COLUMNS = {
    "n": "BIGINT",
    "source_id": "VARCHAR",
    "message_id": "VARCHAR",
    "type": "VARCHAR",
    "event": "VARCHAR",
    "user_id": "VARCHAR",
    "anonymous_id": "VARCHAR",
    "group_id": "VARCHAR",
    "previous_id": "VARCHAR",
    "timestamp": "TIMESTAMP",
    "original_timestamp": "TIMESTAMP",
    "sent_at": "TIMESTAMP",
    "received_at": "TIMESTAMP",
    "request_id": "VARCHAR",
    "origin": "VARCHAR",
    "raw": "JSON",
    "batch": "JSON",
}
_COLUMNS_SQL = "{" + ", ".join(f"'{k}': '{v}'" for k, v in _RECORD_COLUMNS.items()) + "}"
_EVENT_COLUMNS = ", ".join(f'"{c}"' for c in _RECORD_COLUMNS if c != "n")
_STAGE_EVENT_COLUMNS = ", ".join(f'stage."{c}"' for c in _RECORD_COLUMNS if c != "n")


@dataclass(frozen=True)
class LoadResult:
    segment: int
    messages: int
    stored: int


def landed_segments(warehouse: Warehouse) -> set[int]:
    rows = warehouse.cursor().execute("SELECT segment FROM landed_segments").fetchall()
    return {row[0] for row in rows}


def next_segment_number(warehouse: Warehouse, directory: Path) -> int:
    """The number for a new segment: after every segment on disk or ever landed."""
    on_disk = [segment_number(p) for p in list_segments(directory)] if directory.exists() else []
    row = warehouse.cursor().execute("SELECT max(segment) FROM landed_segments").fetchall()[0]
    return max([*on_disk, row[0] if row[0] is not None else -1, -1]) + 1


def load_segment(warehouse: Warehouse, path: Path) -> LoadResult:
    """Load one closed segment; a segment landed before is skipped."""
    return load_segments(warehouse, [path])[0]


def load_segments(warehouse: Warehouse, paths: list[Path]) -> list[LoadResult]:
    """Load closed segments in one transaction, storing exactly what loading them one by
    one in this order would; segments landed before are skipped.

    Under load the loader finds several segments ready at once; one transaction for all
    of them pays the fixed costs (statements, commit) once, and a large enough one lets
    DuckDB write whole row groups straight to the database file instead of the WAL.

    Messages are first taken as never seen before, which they nearly always are: their
    keys are added to ``message_keys`` with a plain insert, which checks each key in the
    index. Skipping the keys stored before (``ON CONFLICT DO NOTHING``) costs DuckDB about
    10 ms more a load whatever its size, a third of a load of a thousand messages. When a
    key was stored before (a client retried a delivered batch), that insert fails, the
    transaction is rolled back, and the segments are loaded again skipping those keys.
    """
    try:
        return _load_segments(warehouse, paths, repeats=False)
    except duckdb.ConstraintException:
        return _load_segments(warehouse, paths, repeats=True)


def _load_segments(warehouse: Warehouse, paths: list[Path], repeats: bool) -> list[LoadResult]:
    numbers = [segment_number(path) for path in paths]
    results = {number: LoadResult(number, 0, 0) for number in numbers}
    with warehouse.transaction() as con:
        landed = {
            row[0]
            for row in con.execute(
                "SELECT segment FROM landed_segments WHERE segment IN (SELECT unnest(?::BIGINT[]))",
                [numbers],
            ).fetchall()
        }
        todo = []
        for path, number in zip(paths, numbers, strict=True):
            if number in landed:
                continue
            if path.stat().st_size == 0:
                con.execute(
                    "INSERT INTO landed_segments VALUES (?, 0, 0, now()::TIMESTAMP)", [number]
                )
            else:
                todo.append(path)
        if todo:
            results.update(_load(con, todo, repeats))
    return [results[number] for number in numbers]


def _load(con, paths: list[Path], repeats: bool) -> dict[int, LoadResult]:
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE landing_stage AS
        SELECT * EXCLUDE (filename),
            parse_filename(filename, true)::BIGINT AS segment,
            md5_number(source_id || chr(31) || message_id)::UHUGEINT AS key
        FROM read_ndjson(
            ?, columns = {_COLUMNS_SQL}, format = 'newline_delimited', filename = true
        )
        """,
        [[str(path) for path in paths]],
    )
    counts = dict(
        con.execute("SELECT segment, count(*) FROM landing_stage GROUP BY segment").fetchall()
    )
    new_keys = con.sql(
        f"""
        INSERT INTO message_keys SELECT DISTINCT key FROM landing_stage
        {"ON CONFLICT DO NOTHING" if repeats else ""}
        RETURNING (key >> 64)::UBIGINT AS hi, (key & 18446744073709551615)::UBIGINT AS lo
        """
    ).to_arrow_table()
    # seq is (segment << 32) + the message's rank by n among the segment's rows whose
    # key that segment stored first; of several rows with one key the first is kept.
    if new_keys.num_rows == sum(counts.values()):
        # Every row has a key of its own, never seen before: every row is stored. The
        # ranks are computed over narrow rows and joined back, which is cheaper than a
        # window over the whole rows (it would sort the raw messages along).
        con.execute(
            f"""
            INSERT INTO events (seq, {_EVENT_COLUMNS})
            SELECT ranked.seq, {_STAGE_EVENT_COLUMNS}
            FROM landing_stage AS stage
            JOIN (
                SELECT rowid AS row_id,
                    (segment << 32) + row_number() OVER (PARTITION BY segment ORDER BY n) AS seq
                FROM landing_stage
            ) AS ranked ON stage.rowid = ranked.row_id
            """
        )
        stored = counts
    else:
        con.register("landing_new_keys", new_keys)
        try:
            con.execute(
                """
                CREATE OR REPLACE TEMP TABLE landing_new AS
                SELECT * FROM (
                    SELECT *, min(segment) OVER (PARTITION BY key) AS first_segment
                    FROM landing_stage
                    WHERE ((key >> 64)::UBIGINT, (key & 18446744073709551615)::UBIGINT)
                        IN (SELECT (hi, lo) FROM landing_new_keys)
                )
                WHERE segment = first_segment
                """
            )
        finally:
            con.unregister("landing_new_keys")
        con.execute(
            f"""
            INSERT INTO events (seq, {_EVENT_COLUMNS})
            SELECT (segment << 32) + row_number() OVER (PARTITION BY segment ORDER BY n),
                {_EVENT_COLUMNS}
            FROM landing_new
            QUALIFY row_number() OVER (PARTITION BY key ORDER BY n) = 1
            """
        )
        stored = dict(
            con.execute(
                "SELECT segment, count(DISTINCT key) FROM landing_new GROUP BY segment"
            ).fetchall()
        )
        con.execute("DROP TABLE landing_new")
    con.execute("DROP TABLE landing_stage")
    results = {}
    for path in paths:
        number = segment_number(path)
        total, kept = counts.get(number, 0), stored.get(number, 0)
        con.execute(
            "INSERT INTO landed_segments VALUES (?, ?, ?, now()::TIMESTAMP)",
            [number, total, kept],
        )
        results[number] = LoadResult(number, total, kept)
    return results


def load_ready(warehouse: Warehouse, directory: Path, below: int | None = None) -> list[LoadResult]:
    """Load every segment in ``directory`` numbered below ``below`` (all when None), in
    order, deleting each file once it is landed."""
    results = []
    for path in list_segments(directory):
        number = segment_number(path)
        if below is not None and number >= below:
            break
        results.append(load_segment(warehouse, path))
        path.unlink()
    return results


def recover(warehouse: Warehouse, directory: Path) -> None:
    """After a crash: mend torn segment tails and drop files already landed."""
    if not directory.exists():
        return
    done = landed_segments(warehouse)
    for path in list_segments(directory):
        if segment_number(path) in done:
            path.unlink()
        else:
            recover_segment(path)


class Loader:
    """A background thread loading closed segments as the landing log closes them."""

    def __init__(
        self,
        warehouse: Warehouse,
        log_: LandingLog,
        interval_ms: int = 100,
        batch_bytes: int = 128 * 1024 * 1024,
        threads: int | None = None,
        checkpoint_threshold: str = "64MiB",
    ) -> None:
        # Settings of the whole database, for the loads' sake:
        # - DuckDB runs a query on as many threads as there are cores; a large load would
        #   take the event loop's core too and slow the requests down. Leave it one.
        # - A checkpoint rewrites the row groups that loads appended to since the last
        #   one; at DuckDB's default of every 16 MB of WAL that rewriting costs more than
        #   the loads themselves.
        if threads is None:
            threads = max(1, len(os.sched_getaffinity(0)) - 1)
        con = warehouse.cursor()
        con.execute(f"SET threads = {int(threads)}")
        con.execute("SET checkpoint_threshold = ?", [checkpoint_threshold])
        self._warehouse = warehouse
        self._log = log_
        self._interval = interval_ms / 1000
        self._batch_bytes = batch_bytes
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.loaded_segments = 0
        self.stored_messages = 0
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="onefold-loader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def notify(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            self.load_now()

    def load_now(self) -> int:
        """Load what is ready; returns how many segments were loaded."""
        with self._lock:
            return self._load_ready()

    def _load_ready(self) -> int:
        count = 0
        ready = []
        for path in list_segments(self._log.directory):
            if segment_number(path) >= self._log.current_segment:
                break
            ready.append((path, path.stat().st_size))
        one_by_one = False
        while ready:
            # What is ready goes in one transaction, up to a size that bounds the memory
            # a load takes.
            batch = [ready.pop(0)]
            size = batch[0][1]
            while not one_by_one and ready and size + ready[0][1] <= self._batch_bytes:
                batch.append(ready.pop(0))
                size += batch[-1][1]
            try:
                results = load_segments(self._warehouse, [path for path, _ in batch])
            except Exception as exc:  # keep the files; try again on the next round
                if len(batch) > 1:  # but first load those before the one that fails
                    ready[:0] = batch
                    one_by_one = True
                    continue
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("loading segment %s failed", batch[0][0].name)
                break
            for (path, size), result in zip(batch, results, strict=True):
                try:
                    path.unlink()
                except OSError as exc:  # landed: the next round skips it and deletes it
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    log.exception("deleting segment %s failed", path.name)
                    continue
                self._log.segment_loaded(size)
                self.loaded_segments += 1
                self.stored_messages += result.stored
                count += 1
        return count

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()
