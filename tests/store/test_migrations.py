"""A warehouse made by an older Onefold opens with its data carried over."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

import duckdb
import orjson
import pyarrow as pa
import pytest

from onefold.store import Warehouse, warehouse
from onefold.store.schema import MIGRATIONS
from onefold.unify import membership
from onefold.unify.profiles import profile_views_json


@contextmanager
def _upgraded(
    path,
    monkeypatch: pytest.MonkeyPatch,
    made_with: int,
    fill: Callable[[duckdb.DuckDBPyConnection], object],
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A warehouse made with the first ``made_with`` migrations and given rows by
    ``fill``, then opened by this Onefold: its cursor."""
    monkeypatch.setattr(warehouse, "MIGRATIONS", MIGRATIONS[:made_with])
    old = Warehouse(path)
    fill(old.cursor())
    old.close()
    monkeypatch.setattr(warehouse, "MIGRATIONS", MIGRATIONS)
    new = Warehouse(path)
    try:
        yield new.cursor()
    finally:
        new.close()


def test_event_identity_gets_the_identifier_hashes_of_its_rows(tmp_path, monkeypatch):
    rows = (
        "INSERT INTO event_identity VALUES (1, 'email', 'jane@example.com'), "
        "(2, 'anonymous_id', 'a-1'), (3, 'email', 'jane@example.com')"
    )
    with _upgraded(tmp_path / "w.duckdb", monkeypatch, 11, lambda c: c.execute(rows)) as con:
        assert con.execute("SELECT max(version) FROM schema_version").fetchall() == [
            (len(MIGRATIONS),)
        ]
        assert con.execute(
            f"SELECT count(*) FROM event_identity WHERE identifier_hash IS NOT NULL "
            f"AND identifier_hash = {membership.IDENTIFIER_HASH}"
        ).fetchall() == [(3,)]
        members = membership.events_of_identifiers(
            con,
            pa.table({"namespace": ["email"], "value": ["jane@example.com"], "profile_id": ["p"]}),
        )
        assert sorted(members.column("seq").to_pylist()) == [1, 3]


def test_marks_made_before_computed_trait_marks_ask_for_whole_views(tmp_path, monkeypatch):
    def fill(con: duckdb.DuckDBPyConnection) -> None:
        con.execute("DELETE FROM serving_dirty")
        con.execute("INSERT INTO serving_dirty VALUES ('pr_1'), ('pr_2')")

    with _upgraded(tmp_path / "w.duckdb", monkeypatch, 12, fill) as con:
        rows = con.execute(
            "SELECT profile_id, computed_traits, batch_upto FROM serving_dirty ORDER BY 1"
        ).fetchall()
        assert rows == [("pr_1", None, None), ("pr_2", None, None)]


def test_marks_made_before_whole_marks_said_so_keep_what_they_asked_for(tmp_path, monkeypatch):
    def fill(con: duckdb.DuckDBPyConnection) -> None:
        con.execute("DELETE FROM serving_dirty")
        con.execute("INSERT INTO serving_dirty VALUES ('pr_1', NULL, NULL), ('pr_2', '{}', 7)")

    with _upgraded(tmp_path / "w.duckdb", monkeypatch, 15, fill) as con:
        rows = con.execute("SELECT profile_id, whole FROM serving_dirty ORDER BY 1").fetchall()
        assert rows == [("pr_1", True), ("pr_2", False)]
        con.execute("INSERT INTO serving_dirty (profile_id) VALUES ('pr_3')")
        assert con.execute(
            "SELECT whole FROM serving_dirty WHERE profile_id = 'pr_3'"
        ).fetchall() == [(True,)]


def test_identifiers_get_their_profiles_hashes_and_views_find_them(tmp_path, monkeypatch):
    def fill(con: duckdb.DuckDBPyConnection) -> None:
        con.execute(
            "INSERT INTO identifiers VALUES ('email', 'jane@example.com', 'pr_1', 1, NULL), "
            "('anonymous_id', 'a-1', 'pr_1', 2, NULL), ('user_id', 'ana', 'pr_2', 3, NULL)"
        )

    with _upgraded(tmp_path / "w.duckdb", monkeypatch, 16, fill) as con:
        assert con.execute(
            "SELECT count(*) FROM identifiers WHERE profile_hash = md5_number(profile_id)"
        ).fetchall() == [(3,)]
        views = profile_views_json(con, ["pr_1", "pr_2"])
        identities = {
            profile_id: sorted(i["value"] for i in orjson.loads(view)["identities"])
            for profile_id, view in views.items()
        }
        assert identities == {"pr_1": ["a-1", "jane@example.com"], "pr_2": ["ana"]}


def test_per_profile_rows_get_their_profiles_hashes_and_are_replaced_by_them(tmp_path, monkeypatch):
    def fill(con: duckdb.DuckDBPyConnection) -> None:
        con.execute(
            "INSERT INTO profile_traits VALUES "
            "('pr_1', 'name', '\"Jane\"', 'src', 1, TIMESTAMP '2026-11-01'), "
            "('pr_1', 'city', '\"Lyon\"', 'src', 1, TIMESTAMP '2026-11-01'), "
            "('pr_2', 'name', '\"Ana\"', 'src', 2, TIMESTAMP '2026-11-01')"
        )
        con.execute(
            "INSERT INTO profile_computed_traits VALUES "
            "('pr_1', '{\"orders\":2}', TIMESTAMP '2026-11-01'), "
            "('pr_2', '{\"orders\":5}', TIMESTAMP '2026-11-01')"
        )

    with _upgraded(tmp_path / "w.duckdb", monkeypatch, 13, fill) as con:
        for table in ("profile_traits", "profile_computed_traits"):
            assert con.execute(
                f"SELECT count(*) FROM {table} WHERE profile_hash IS NOT NULL "
                f"AND profile_hash = {membership.PROFILE_HASH}"
            ).fetchall() == [(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0],)]
            with membership.replacing(con, table, ["pr_1"]):
                pass
            assert con.execute(f"SELECT DISTINCT profile_id FROM {table}").fetchall() == [("pr_2",)]


def test_profiles_keep_their_anchors_and_survivors_when_absorbed_ones_move_out(
    tmp_path, monkeypatch
):
    rows = [
        ("pr_a", "user_id", "a", 1, None, datetime(2026, 11, 1)),
        ("pr_b", "anonymous_id", "b", 2, "pr_a", datetime(2026, 11, 2)),
        ("pr_c", "email", "c@example.com", 3, "pr_a", datetime(2026, 11, 3)),
        ("pr_d", "anonymous_id", "d", 4, None, datetime(2026, 11, 4)),
    ]

    def fill(con: duckdb.DuckDBPyConnection) -> None:
        con.executemany("INSERT INTO identity_profiles VALUES (?, ?, ?, ?, ?, ?)", rows)

    with _upgraded(tmp_path / "w.duckdb", monkeypatch, 14, fill) as con:
        assert con.execute("SELECT * FROM identity_profiles ORDER BY 1").fetchall() == rows
        assert con.execute("SELECT * FROM absorbed_profiles ORDER BY 1").fetchall() == [
            ("pr_b", "pr_a"),
            ("pr_c", "pr_a"),
        ]
        assert con.execute("SELECT count(*) FROM profile_anchors").fetchall() == [(4,)]
