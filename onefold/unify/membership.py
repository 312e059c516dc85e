"""Which events belong to which profile: an event belongs to the live profile holding the
identifier it was attributed to (``event_identity`` joined to ``identifiers``).

Recomputing a few profiles' traits and computed traits needs only their events, but
finding them means joining two tables as long as the warehouse's history. A micro-batch
finds its profiles' events once (:func:`profile_events`) and hands them to every step that
recomputes those profiles; a full recompute and Spark use the same join unscoped
(:func:`members_sql`), so both ways read the same events.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa


def members_sql(scope: str | None = None) -> str:
    """``(profile_id, seq)`` of every event, or of the profiles in the table ``scope``
    names (a ``profile_id`` column)."""
    where = f"WHERE i.profile_id IN (SELECT profile_id FROM {scope})" if scope else ""
    return f"""
        SELECT i.profile_id, ei.seq FROM event_identity ei
        JOIN identifiers i ON i.namespace = ei.namespace AND i.value = ei.value
        {where}
    """


def profile_events(con: duckdb.DuckDBPyConnection, profiles: list[str]) -> pa.Table:
    """``(profile_id, seq)`` of the events of ``profiles``."""
    con.register("member_profiles", pa.table({"profile_id": pa.array(profiles, pa.string())}))
    try:
        return con.sql(members_sql("member_profiles")).to_arrow_table()
    finally:
        con.unregister("member_profiles")
