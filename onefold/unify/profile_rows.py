"""The identity graph's profiles as stored: every profile's anchor in ``profile_anchors``,
and each profile merged away in ``absorbed_profiles`` with the live profile that holds it
now. ``identity_profiles``, a view, shows both as one row per profile (``merged_into`` null
while the profile is live), and is what readers use.

They are kept apart because merges change where absorbed profiles point. DuckDB updates a
row by preparing the whole 2,048-row vector it sits in, so updating ``merged_into`` of a
micro-batch's absorbed profiles, scattered over a table of every profile, cost 25–45 ms
for 100 of them, about the price of the rest of the merge. The absorbed profiles are a few
percent of all, and a merge only adds rows to their table (and points the profiles the
absorbed one had absorbed at the survivor, an update of a few rows of a small table).
"""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from onefold.store.warehouse import insert_arrow


def insert(
    con: duckdb.DuckDBPyConnection, profiles: pa.Table, extra: dict[str, str] | None = None
) -> None:
    """Store new profiles: ``profile_id``, the anchor's ``anchor_namespace``,
    ``anchor_value`` and ``anchor_seq``, and ``merged_into`` (null for a live one), with
    ``extra`` columns of the anchors given as SQL (``created_at``)."""
    insert_arrow(con, "profile_anchors", profiles.drop_columns(["merged_into"]), extra)
    absorbed = profiles.filter(pc.is_valid(profiles["merged_into"]))
    insert_arrow(con, "absorbed_profiles", absorbed.select(["profile_id", "merged_into"]))


def absorb(con: duckdb.DuckDBPyConnection, moves: pa.Table) -> None:
    """Record that live profiles were absorbed: ``moves`` holds each one's id
    (``absorbed``) and the live profile that absorbed it (``surviving``). The profiles they
    had absorbed before now point at that survivor too."""
    con.register("absorbing", moves)
    try:
        con.execute(
            """
            UPDATE absorbed_profiles SET merged_into = m.surviving FROM absorbing m
            WHERE absorbed_profiles.merged_into = m.absorbed
            """
        )
        con.execute(
            "INSERT INTO absorbed_profiles (profile_id, merged_into) "
            "SELECT absorbed, surviving FROM absorbing"
        )
    finally:
        con.unregister("absorbing")


def delete(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Forget the profiles whose ids the table (or subquery) ``table`` lists, live or
    absorbed."""
    for stored in ("absorbed_profiles", "profile_anchors"):
        con.execute(f"DELETE FROM {stored} WHERE profile_id IN (SELECT profile_id FROM {table})")


def clear(con: duckdb.DuckDBPyConnection) -> None:
    """Forget every profile (for a rebuild)."""
    for stored in ("absorbed_profiles", "profile_anchors"):
        con.execute(f"DELETE FROM {stored}")
