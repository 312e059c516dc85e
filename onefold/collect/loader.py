"""Moving closed landing-log segments into the warehouse, exactly once.

Each segment is loaded in one transaction that also records the segment as landed, so a
crash before the commit loads it again and a crash after it only leaves a file to delete.
Messages are deduplicated on (source, messageId) against every message ever stored — the
SDKs retry, and a retry may arrive in the same segment, a later one, or after a restart.
Every stored message gets ``seq``: (segment number << 32) + its position in the segment,
increasing in commit order, which is what later stages read incrementally.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

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
    row = warehouse.cursor().execute("SELECT max(segment) FROM landed_segments").fetchone()
    return max([*on_disk, row[0] if row[0] is not None else -1, -1]) + 1


def load_segment(warehouse: Warehouse, path: Path) -> LoadResult:
    """Load one closed segment; a segment landed before is skipped."""
    number = segment_number(path)
    with warehouse.transaction() as con:
        if con.execute("SELECT 1 FROM landed_segments WHERE segment = ?", [number]).fetchone():
            return LoadResult(number, 0, 0)
        if path.stat().st_size == 0:
            con.execute("INSERT INTO landed_segments VALUES (?, 0, 0, now()::TIMESTAMP)", [number])
            return LoadResult(number, 0, 0)
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE landing_stage AS
            SELECT *, md5_number(source_id || chr(31) || message_id)::UHUGEINT AS key
            FROM read_ndjson(?, columns = {_COLUMNS_SQL}, format = 'newline_delimited')
            """,
            [str(path)],
        )
        new_keys = con.sql(
            """
            INSERT INTO message_keys SELECT DISTINCT key FROM landing_stage
            ON CONFLICT DO NOTHING
            RETURNING (key >> 64)::UBIGINT AS hi, (key & 18446744073709551615)::UBIGINT AS lo
            """
        ).to_arrow_table()
        con.register("landing_new_keys", new_keys)
        try:
            con.execute(
                f"""
                INSERT INTO events (seq, {_EVENT_COLUMNS})
                SELECT (?::BIGINT << 32) + row_number() OVER (ORDER BY n), {_EVENT_COLUMNS}
                FROM landing_stage
                WHERE ((key >> 64)::UBIGINT, (key & 18446744073709551615)::UBIGINT)
                    IN (SELECT (hi, lo) FROM landing_new_keys)
                QUALIFY row_number() OVER (PARTITION BY key ORDER BY n) = 1
                """,
                [number],
            )
        finally:
            con.unregister("landing_new_keys")
        total = con.execute("SELECT count(*) FROM landing_stage").fetchone()[0]
        con.execute(
            "INSERT INTO landed_segments VALUES (?, ?, ?, now()::TIMESTAMP)",
            [number, total, new_keys.num_rows],
        )
        con.execute("DROP TABLE landing_stage")
    return LoadResult(number, total, new_keys.num_rows)


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

    def __init__(self, warehouse: Warehouse, log_: LandingLog, interval_ms: int = 100) -> None:
        self._warehouse = warehouse
        self._log = log_
        self._interval = interval_ms / 1000
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
        directory = self._log.directory
        for path in list_segments(directory):
            number = segment_number(path)
            if number >= self._log.current_segment:
                break
            try:
                size = path.stat().st_size
                result = load_segment(self._warehouse, path)
                path.unlink()
            except Exception as exc:  # keep the file; try again on the next round
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("loading segment %s failed", path.name)
                break
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
