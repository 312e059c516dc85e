"""Which events belong to which profile: an event belongs to the live profile holding the
identifier it was attributed to (``event_identity`` joined to ``identifiers``).

Recomputing a few profiles' traits and computed traits needs only their events, but
finding them means joining two tables as long as the warehouse's history. A micro-batch
finds its profiles' events once and hands them to every step that recomputes those
profiles, from the identifiers its resolver holds (:func:`events_of_identifiers`, one scan
of ``event_identity``). A full recompute and Spark use the same join
(:func:`members_sql`), so all ways read the same events.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
import pyarrow as pa

from onefold.store.warehouse import insert_arrow

#: An identifier as a 128-bit number, as ``event_identity.identifier_hash`` holds it (the
#: namespace never holds the separator, so no two identifiers share the text hashed). Two
#: identifiers sharing the number is as unlikely as two messages sharing their key
#: (:mod:`onefold.collect.loader` deduplicates messages by the same hash).
IDENTIFIER_HASH = "md5_number(namespace || chr(31) || value)"


#: A profile id as a 128-bit number, as ``profile_traits.profile_hash``,
#: ``profile_computed_traits.profile_hash`` and ``identifiers.profile_hash`` hold it.
#: Finding the rows of some profiles means reading a column of every row (DuckDB joins
#: by scanning); this one instead of the ids took 4–6 ms instead of 12–23 ms with 265,000
#: rows. Views still join on the ids themselves, so two profiles sharing a number (as
#: unlikely as two identifiers doing so) could cost a row a refresh, never show one
#: profile's values in another's view.
PROFILE_HASH = "md5_number(profile_id)"


def insert_attributions(con: duckdb.DuckDBPyConnection, attributions: pa.Table) -> None:
    """Append ``(seq, namespace, value)`` rows to ``event_identity``, each with its
    identifier's hash (:data:`IDENTIFIER_HASH`), which :func:`events_of_identifiers` joins on."""
    insert_arrow(con, "event_identity", attributions, {"identifier_hash": IDENTIFIER_HASH})


def members_sql(scope: str | None = None) -> str:
    """``(profile_id, seq)`` of every event, or of the profiles in the table ``scope``
    names (a ``profile_id`` column)."""
    where = f"WHERE i.profile_id IN (SELECT profile_id FROM {scope})" if scope else ""
    return f"""
        SELECT i.profile_id, ei.seq FROM event_identity ei
        JOIN identifiers i ON i.namespace = ei.namespace AND i.value = ei.value
        {where}
    """


def events_of_identifiers(con: duckdb.DuckDBPyConnection, identifiers: pa.Table) -> pa.Table:
    """``(profile_id, seq)`` of the events attributed to ``identifiers`` (``namespace``,
    ``value``, ``profile_id``): every identifier of some profiles gives those profiles'
    events, without reading ``identifiers``.

    The join is on the identifiers' hashes: it reads one integer column of
    ``event_identity`` instead of two strings, 10–17 ms instead of 40–90 ms at 700,000
    events, whatever the number of profiles (a join reads the whole table)."""
    con.register("member_identifiers", identifiers)
    try:
        return con.sql(
            f"""
            SELECT k.profile_id, ei.seq FROM event_identity ei
            JOIN (
                SELECT profile_id, {IDENTIFIER_HASH} AS identifier_hash FROM member_identifiers
            ) k ON k.identifier_hash = ei.identifier_hash
            """
        ).to_arrow_table()
    finally:
        con.unregister("member_identifiers")


@contextmanager
def replacing(
    con: duckdb.DuckDBPyConnection,
    table: str,
    profiles: list[str] | None,
    members: pa.Table | None = None,
) -> Iterator[str]:
    """Delete the rows of ``table`` (keyed by ``profile_id``, with its
    :data:`PROFILE_HASH` in ``profile_hash``) of ``profiles`` (every profile when None)
    and yield what to recompute them from: a table or subquery of ``(profile_id, seq)``,
    ``members`` when the caller found them already."""
    registered = []
    try:
        if profiles is None:
            con.execute(f"DELETE FROM {table}")
            source = f"({members_sql()})"
        else:
            ids = pa.table({"profile_id": pa.array(profiles, pa.string())})
            con.register("replaced_profiles", ids)
            registered.append("replaced_profiles")
            con.execute(
                f"DELETE FROM {table} WHERE profile_hash IN "
                f"(SELECT {PROFILE_HASH} FROM replaced_profiles)"
            )
            source = f"({members_sql('replaced_profiles')})"
        if members is not None:
            con.register("replaced_members", members)
            registered.append("replaced_members")
            source = "replaced_members"
        yield source
    finally:
        for name in registered:
            con.unregister(name)
