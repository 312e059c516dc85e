"""Reading newly stored messages incrementally, exactly once, for the stages after collect.

A consumer (the identity resolver, computed traits, …) reads the events after its cursor,
writes its own results, and moves its cursor forward in the same transaction. A crash
before the commit reads the same events again; a crash after it never reads them twice.
This holds because ``seq`` only grows in commit order (see :mod:`onefold.collect.loader`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import duckdb
import pyarrow as pa

from onefold.store import Warehouse


class EventCursor:
    def __init__(self, warehouse: Warehouse, consumer: str) -> None:
        self.warehouse = warehouse
        self.consumer = consumer

    def position(self) -> int:
        rows = (
            self.warehouse.cursor()
            .execute("SELECT seq FROM consumer_cursors WHERE consumer = ?", [self.consumer])
            .fetchall()
        )
        return rows[0][0] if rows else -1

    def pending(self) -> int:
        """How many stored events the consumer has yet to read: how far behind it is."""
        return (
            self.warehouse.cursor()
            .execute(
                "SELECT count(*) FROM events WHERE seq > coalesce("
                "(SELECT seq FROM consumer_cursors WHERE consumer = ?), -1)",
                [self.consumer],
            )
            .fetchall()[0][0]
        )

    def consume_range(
        self,
        handle: Callable[[duckdb.DuckDBPyConnection, int, int], None],
        limit: int = 50_000,
    ) -> int:
        """Like :meth:`consume`, but hands ``handle`` the range ``(after, upto]`` of ``seq``
        to read itself, for consumers that select only the columns they need."""
        with self.warehouse.transaction() as con:
            rows = con.execute(
                "SELECT seq FROM consumer_cursors WHERE consumer = ?", [self.consumer]
            ).fetchall()
            after = rows[0][0] if rows else -1
            count, upto = con.execute(
                """
                SELECT count(*), max(seq) FROM (
                    SELECT seq FROM events WHERE seq > ? ORDER BY seq LIMIT ?
                )
                """,
                [after, limit],
            ).fetchall()[0]
            if not count:
                return 0
            handle(con, after, upto)
            self._advance(con, upto)
            return count

    def _advance(self, con: duckdb.DuckDBPyConnection, seq: int) -> None:
        con.execute(
            """
            INSERT INTO consumer_cursors VALUES (?, ?, ?)
            ON CONFLICT (consumer) DO UPDATE SET seq = excluded.seq,
                updated_at = excluded.updated_at
            """,
            [self.consumer, seq, datetime.now(UTC).replace(tzinfo=None)],
        )

    def consume(
        self,
        handle: Callable[[duckdb.DuckDBPyConnection, pa.Table], None],
        limit: int = 50_000,
    ) -> int:
        """Pass the next events (at most ``limit``, in ``seq`` order) to ``handle`` inside
        a transaction that also advances the cursor; returns how many were handled."""
        with self.warehouse.transaction() as con:
            rows = con.execute(
                "SELECT seq FROM consumer_cursors WHERE consumer = ?", [self.consumer]
            ).fetchall()
            after = rows[0][0] if rows else -1
            batch = con.sql(
                "SELECT * FROM events WHERE seq > $after ORDER BY seq LIMIT $limit",
                params={"after": after, "limit": limit},
            ).to_arrow_table()
            if batch.num_rows == 0:
                return 0
            handle(con, batch)
            self._advance(con, batch.column("seq")[-1].as_py())
            return batch.num_rows
