"""Rewriting tables whose deleted rows pile up: the table stays the same to its users."""

from __future__ import annotations

import duckdb
import pytest

from onefold.store import compaction


@pytest.fixture
def con(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute(
        """
        CREATE TABLE "per profile" (
            profile_id VARCHAR NOT NULL, value JSON, n BIGINT DEFAULT 7 CHECK (n > 0)
        );
        CREATE INDEX per_profile_id ON "per profile" (profile_id);
        INSERT INTO "per profile" SELECT 'p' || i, json_object('i', i), i + 1 FROM range(3000) r(i);
        CREATE VIEW per_profile_view AS SELECT profile_id FROM "per profile";
        """
    )
    yield con
    con.close()


def test_compact_keeps_the_rows_definition_and_indexes(con):
    con.execute("""DELETE FROM "per profile" WHERE n % 3 <> 0""")
    stored, live = compaction.rows(con, "per profile")
    assert (stored, live) == (3000, 1000)
    assert compaction.worth_compacting(stored, live, min_dead=100)
    before = con.execute('SELECT * FROM "per profile"').fetchall()
    definition = con.execute(
        "SELECT sql FROM duckdb_tables() WHERE table_name = 'per profile'"
    ).fetchall()
    con.execute("BEGIN")
    compaction.compact(con, "per profile")
    con.execute("COMMIT")
    assert compaction.rows(con, "per profile") == (1000, 1000)
    assert con.execute('SELECT * FROM "per profile"').fetchall() == before  # same order too
    assert (
        con.execute("SELECT sql FROM duckdb_tables() WHERE table_name = 'per profile'").fetchall()
        == definition
    )
    assert con.execute(
        "SELECT index_name FROM duckdb_indexes() WHERE table_name = 'per profile'"
    ).fetchall() == [("per_profile_id",)]
    assert con.execute("SELECT count(*) FROM per_profile_view").fetchall() == [(1000,)]
    # The constraints and defaults came along.
    with pytest.raises(duckdb.ConstraintException):
        con.execute("""INSERT INTO "per profile" (profile_id) VALUES (NULL)""")
    with pytest.raises(duckdb.ConstraintException):
        con.execute("""INSERT INTO "per profile" VALUES ('x', NULL, 0)""")
    con.execute("""INSERT INTO "per profile" (profile_id) VALUES ('x')""")
    assert con.execute("""SELECT n FROM "per profile" WHERE profile_id = 'x'""").fetchall() == [
        (7,)
    ]
    assert not any(
        name.endswith("__compacted")
        for (name,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()
    )


def test_a_reader_already_in_a_transaction_keeps_reading_the_old_table(con):
    reader = con.cursor()
    reader.execute("BEGIN")
    assert reader.execute('SELECT count(*) FROM "per profile"').fetchall() == [(3000,)]
    con.execute("""DELETE FROM "per profile" WHERE n > 100""")
    con.execute("BEGIN")
    compaction.compact(con, "per profile")
    con.execute("COMMIT")
    assert reader.execute('SELECT count(*) FROM "per profile"').fetchall() == [(3000,)]
    reader.execute("COMMIT")
    assert reader.execute('SELECT count(*) FROM "per profile"').fetchall() == [(100,)]


@pytest.mark.parametrize(
    ("stored", "live", "min_dead", "worth"),
    [(2000, 1000, 100, True), (1999, 1000, 100, False), (200, 100, 101, False), (10, 0, 10, True)],
)
def test_worth_compacting_once_the_dead_rows_outnumber_the_live(stored, live, min_dead, worth):
    assert compaction.worth_compacting(stored, live, min_dead) is worth


def test_an_unknown_table_is_an_error(con):
    with pytest.raises(ValueError, match="no table"):
        compaction.rows(con, "missing")
