"""What a checkpoint of the warehouse rewrites: what was added, not the row groups that a
micro-batch's scattered deletes touched (those are left to compaction)."""

from __future__ import annotations

import pytest

from onefold.store import Warehouse, compaction


@pytest.fixture
def warehouse(tmp_path):
    warehouse = Warehouse(tmp_path / "w.duckdb")
    yield warehouse
    warehouse.close()


def _blocks(con, table: str) -> dict[int, list[int]]:
    return dict(
        con.execute(
            "SELECT row_group_id, list(block_id ORDER BY column_id, column_path, segment_id) "
            f"FROM pragma_storage_info('{table}') GROUP BY row_group_id"
        ).fetchall()
    )


def test_a_checkpoint_leaves_row_groups_with_scattered_deletes_as_they_were(warehouse):
    con = warehouse.cursor()
    con.execute(
        "INSERT INTO profile_computed_traits "
        "SELECT 'p' || i, json_object('orders', i % 7), TIMESTAMP '2026-11-01', "
        "md5_number('p' || i) FROM range(260000) r(i)"
    )
    con.execute("CHECKPOINT")
    before = _blocks(con, "profile_computed_traits")
    assert len(before) == 3  # row groups of 122,880 rows
    # What micro-batches do to it: replace the rows of profiles spread over the table.
    for part in range(3):
        with warehouse.transaction() as tx:
            tx.execute(
                "DELETE FROM profile_computed_traits "
                f"WHERE hash(profile_id) % 10 = 0 AND hash(profile_id) % 3 = {part}"
            )
            tx.execute(
                "INSERT INTO profile_computed_traits "
                "SELECT 'p' || i, json_object('orders', 99), TIMESTAMP '2026-11-02', "
                "md5_number('p' || i) FROM range(260000) r(i) "
                f"WHERE hash('p' || i) % 10 = 0 AND hash('p' || i) % 3 = {part}"
            )
    con.execute("CHECKPOINT")
    after = _blocks(con, "profile_computed_traits")
    # None of the row groups was written again: with DuckDB's vacuum
    # (`max_vacuum_tasks` above zero) all three were merged and rewritten.
    assert {group: after[group] for group in before} == before
    replaced = con.execute(
        "SELECT count(*), count(DISTINCT profile_id) FROM profile_computed_traits "
        "WHERE traits ->> '$.orders' = '99'"
    ).fetchall()[0]
    assert replaced[0] == replaced[1] > 20_000
    assert con.execute("SELECT count(*) FROM profile_computed_traits").fetchall() == [(260_000,)]
    # The dead rows stay until compaction rewrites the table.
    stored, live = compaction.rows(con, "profile_computed_traits")
    assert (stored - live, live) == (replaced[0], 260_000)


def test_a_checkpoint_still_drops_row_groups_whose_rows_are_all_deleted(warehouse):
    con = warehouse.cursor()
    # serving_dirty is a queue: marks appended, published ones deleted.
    con.execute("DELETE FROM serving_dirty")
    for start in range(0, 500_000, 100_000):
        con.execute(
            "INSERT INTO serving_dirty (profile_id) "
            f"SELECT 'p' || i FROM range({start}, {start + 100_000}) r(i)"
        )
        con.execute(
            "DELETE FROM serving_dirty "
            f"WHERE profile_id IN (SELECT 'p' || i FROM range({start}) r(i))"
        )
        con.execute("CHECKPOINT")
    # 100,000 marks live, and no more than the row groups they need are stored.
    assert con.execute("SELECT count(*) FROM serving_dirty").fetchall() == [(100_000,)]
    assert len(_blocks(con, "serving_dirty")) <= 2
    stored, live = compaction.rows(con, "serving_dirty")
    assert stored - live < 122_880
