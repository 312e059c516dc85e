"""Opening the embedded DuckDB warehouse and keeping its schema current."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pyarrow as pa

from onefold.store.schema import MIGRATIONS


def insert_arrow(
    con: duckdb.DuckDBPyConnection, table: str, data: pa.Table, extra: dict[str, str] | None = None
) -> None:
    """Append ``data``'s rows to ``table`` by column name, with ``extra`` columns set to
    SQL expressions (e.g. ``{"created_at": "now()"}``); nothing for no rows."""
    if data.num_rows == 0:
        return
    extra = extra or {}
    names = ", ".join([*data.column_names, *extra])
    select = ", ".join([*data.column_names, *extra.values()])
    con.register("inserted_rows", data)
    try:
        con.execute(f"INSERT INTO {table} ({names}) SELECT {select} FROM inserted_rows")
    finally:
        con.unregister("inserted_rows")


SETTINGS: dict[str, object] = {
    # No vacuum in checkpoints. Once a table's row groups hold deleted rows, DuckDB's
    # checkpoint merges and rewrites them whole, whatever few rows changed: with the
    # per-profile tables that every micro-batch refreshes (deletes scattered over the
    # table, appends at its end), each checkpoint rewrote most of them, a cost that grew
    # with the number of profiles (0.45 s of a 0.85 s checkpoint after 30,000 events at
    # 260,000 profiles). Row groups whose rows are all deleted are still dropped, and
    # :mod:`onefold.store.compaction` rewrites those tables when their dead rows outnumber
    # the live ones.
    "max_vacuum_tasks": 0,
}


class Warehouse:
    """One DuckDB database file, shared by the threads of one process.

    DuckDB lets a single process write a database file; each thread works through its own
    cursor, which :meth:`cursor` hands out.
    """

    def __init__(self, path: Path, memory_limit: str = "4GB") -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._con = duckdb.connect(str(path), config={**SETTINGS, "memory_limit": memory_limit})
        self._local = threading.local()
        self._migrate()

    def _migrate(self) -> None:
        con = self._con
        con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = con.execute("SELECT max(version) FROM schema_version").fetchall()[0]
        current = row[0] or 0
        for version, ddl in enumerate(MIGRATIONS, start=1):
            if version <= current:
                continue
            con.execute("BEGIN")
            try:
                con.execute(ddl)
                con.execute("INSERT INTO schema_version VALUES (?)", [version])
                con.execute("COMMIT")
            except Exception:
                con.execute("ROLLBACK")
                raise

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """The calling thread's own connection to the database.

        Read every result in full (``fetchall`` and the like, never ``fetchone``): a
        result left unfinished keeps its transaction open until the cursor's next
        statement, and a request thread may wait long for its next request. Meanwhile
        no checkpoint runs or drops deleted rows."""
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._con.cursor()
            self._local.cursor = cur
        return cur

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        cur = self.cursor()
        cur.execute("BEGIN")
        try:
            yield cur
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")

    def close(self) -> None:
        self._con.close()
