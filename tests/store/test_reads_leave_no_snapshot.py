"""Reads that leave no transaction open behind them.

A DuckDB result read only in part (``fetchone``) keeps its transaction, and so its
snapshot, open until the cursor's next statement; a request thread's cursor may then hold
one for as long as it waits for the next request, and while it does no checkpoint can
drop the rows deleted since. The helpers the server's threads call read their results in
full."""

from __future__ import annotations

from collections.abc import Callable

import duckdb
import pytest

from onefold.collect.cursor import EventCursor
from onefold.collect.events import count_events
from onefold.collect.loader import next_segment_number
from onefold.store import Warehouse
from onefold.unify import publish
from onefold.unify.accounts import account_view
from onefold.unify.health import health_report
from onefold.unify.search import parse_condition, search_profiles


def _checkpoint_held_back(warehouse: Warehouse) -> bool:
    """Whether a checkpoint from another cursor is held back by some transaction still
    open: it refuses to run, or keeps rows deleted after that transaction began."""
    other = warehouse._con.cursor()
    other.execute(
        "CREATE OR REPLACE TABLE scratch AS SELECT range AS i, repeat('x', 50) AS s "
        "FROM range(500000)"
    )
    try:
        other.execute("CHECKPOINT")
        other.execute("DELETE FROM scratch WHERE i < 2 * 122880")  # two whole row groups
        other.execute("CHECKPOINT")
    except duckdb.TransactionException:  # "other write transactions active"
        return True
    (stored,) = other.execute(
        "SELECT estimated_size FROM duckdb_tables() WHERE table_name = 'scratch'"
    ).fetchall()[0]
    return stored > 400_000  # 254,240 once the deleted row groups are dropped


READS: dict[str, Callable[[Warehouse], object]] = {
    "count_events": count_events,
    "cursor position": lambda w: EventCursor(w, "identity").position(),
    "cursor pending": lambda w: EventCursor(w, "identity").pending(),
    "publish pending": lambda w: publish.pending(w.cursor()),
    "account view": lambda w: account_view(w.cursor(), "acme"),
    "health report": lambda w: health_report(w.cursor()),
    "search": lambda w: search_profiles(w.cursor(), [parse_condition("plan=pro")]),
    "next segment": lambda w: next_segment_number(w, w.path.parent / "landing"),
}


def test_the_check_sees_a_snapshot_held_open(tmp_path):
    warehouse = Warehouse(tmp_path / "w.duckdb")
    try:
        assert not _checkpoint_held_back(warehouse)
        warehouse.cursor().execute("SELECT count(*) FROM events").fetchone()  # left unfinished
        assert _checkpoint_held_back(warehouse)
    finally:
        warehouse.close()


@pytest.mark.parametrize("read", READS.values(), ids=READS.keys())
def test_a_read_leaves_no_snapshot_open(tmp_path, read):
    warehouse = Warehouse(tmp_path / "w.duckdb")
    try:
        # a row where the reads look for one: a query with no rows finishes at once
        warehouse.cursor().execute(
            "INSERT INTO consumer_cursors VALUES ('identity', 41, now())"
        ).fetchall()
        read(warehouse)
        assert not _checkpoint_held_back(warehouse)
    finally:
        warehouse.close()
