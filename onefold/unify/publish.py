"""Publishing profile views to the serving store after the graph changes them.

Whatever changes profiles (a micro-batch, an override, a rebuild, a recompute) marks them
in ``serving_dirty`` inside its own warehouse transaction; :func:`publish` then rewrites
their views and keys in the serving store and only afterwards clears the marks. A crash
in between leaves the marks, and the next publish (at the latest when Onefold starts)
rewrites those profiles again: the serving store may lag the warehouse by a batch, never
lose a change.

Most events change nothing in a profile but its computed traits (a page view, an order):
no identifier, merge, refused link, trait or account. A micro-batch marks such a profile
with its new computed traits (:func:`mark_computed`), and the publish sets that part of
the stored view (:meth:`ServingStore.set_computed_traits`) instead of building the whole
view in the warehouse, which reads a dozen tables. A micro-batch's marks for whole views
carry the computed traits too, so that building those views need not read them back
(whole JSON columns cost DuckDB about as much to read for a few profiles as for all).
"""

from __future__ import annotations

from collections.abc import Iterable

import duckdb
import pyarrow as pa

from onefold.store import Warehouse
from onefold.store.serving import ServingStore
from onefold.unify.profiles import profile_views_and_keys


def mark_dirty(con: duckdb.DuckDBPyConnection, profile_ids: Iterable[str]) -> None:
    """Mark profiles for their whole views, their computed traits to be read."""
    _mark(con, dict.fromkeys(sorted(set(profile_ids))), None, whole=True)


def mark_computed(
    con: duckdb.DuckDBPyConnection, computed_traits: dict[str, str], upto: int
) -> None:
    """Mark profiles of which a micro-batch (ending at seq ``upto``) changed only the
    computed traits, with those traits (JSON text): the latest mark of a profile is what
    its view is given, unless the profile is marked for its whole view too."""
    _mark(con, computed_traits, upto, whole=False)


def _mark(
    con: duckdb.DuckDBPyConnection, marks: dict[str, str | None], upto: int | None, whole: bool
) -> None:
    if not marks:
        return
    con.register("batch_marks", pa.table({
        "profile_id": pa.array(list(marks), pa.string()),
        "computed_traits": pa.array(list(marks.values()), pa.string()),
    }))  # fmt: skip
    try:
        con.execute(
            "INSERT INTO serving_dirty (profile_id, computed_traits, batch_upto, whole) "
            "SELECT profile_id, computed_traits, $upto, $whole FROM batch_marks",
            {"upto": upto, "whole": whole},
        )
    finally:
        con.unregister("batch_marks")


ALL = "*"
"""The mark that asks for the whole store to be rebuilt."""


def mark_all_dirty(con: duckdb.DuckDBPyConnection) -> None:
    """Every profile is to be published again (after a rebuild or a recompute, or for a new
    serving store): the next publish rebuilds the store from all live profiles."""
    con.execute("INSERT INTO serving_dirty (profile_id) VALUES (?)", [ALL])


def mark_batch(
    con: duckdb.DuckDBPyConnection,
    reshaped: Iterable[str],
    after: int,
    upto: int,
    computed_traits: dict[str, str] | None = None,
) -> None:
    """Mark what one micro-batch changed. For their whole views: the profiles it
    ``reshaped`` (more than their computed traits), the profiles on either side of the
    links it refused, and the profiles whose refusals name a profile it absorbed (their
    views show the absorbed profile's survivor), each with its computed traits when
    ``computed_traits`` has them. For their computed traits only: the profiles of
    ``computed_traits`` that are none of those."""
    rows = con.execute(
        """
        SELECT profile_id FROM identity_refusals WHERE seq > $after AND seq <= $upto
        UNION
        SELECT other_profile_id FROM identity_refusals
        WHERE seq > $after AND seq <= $upto AND other_profile_id IS NOT NULL
        UNION
        SELECT x.profile_id FROM identity_refusals x
        JOIN identity_merges m ON m.absorbed_id = x.other_profile_id
        WHERE m.seq > $after AND m.seq <= $upto
        """,
        {"after": after, "upto": upto},
    ).fetchall()
    whole = {*reshaped, *(row[0] for row in rows)}
    computed_traits = computed_traits or {}
    _mark(con, {p: computed_traits.get(p) for p in sorted(whole)}, upto, whole=True)
    mark_computed(con, {p: t for p, t in computed_traits.items() if p not in whole}, upto)


def pending(con: duckdb.DuckDBPyConnection) -> int:
    """How many profiles are marked and not yet published (every live profile while the
    whole store is to be rebuilt)."""
    ((marked, everything),) = con.execute(
        "SELECT count(DISTINCT profile_id), bool_or(profile_id = ?) FROM serving_dirty", [ALL]
    ).fetchall()
    if everything:
        return con.execute(
            "SELECT count(*) FROM identity_profiles WHERE merged_into IS NULL"
        ).fetchall()[0][0]
    return marked


def publish(
    warehouse: Warehouse, store: ServingStore, chunk: int = 100_000, drain: bool = True
) -> int:
    """Rewrite the marked profiles in the serving store (all of them, in a new file, when
    everything is marked), ``chunk`` at a time; returns how many profile ids it handled.
    With ``drain``, until nothing is marked, profiles marked meanwhile included; without,
    one chunk of what was marked when it began (a caller publishing again and again takes
    the rest next time)."""
    total = 0
    while True:
        with warehouse.transaction() as con:
            if con.execute("SELECT 1 FROM serving_dirty WHERE profile_id = ?", [ALL]).fetchall():
                total += _publish_all(con, store)
                con.execute("DELETE FROM serving_dirty")
                if not drain:
                    return total
                continue
            # A profile's computed traits are known from its marks when every one of them
            # carries them (the latest is then the current one); a mark without them (an
            # override, an unmerge) means reading them from the warehouse.
            rows = con.execute(
                """
                SELECT profile_id, bool_or(whole), arg_max(computed_traits, batch_upto),
                       bool_and(computed_traits IS NOT NULL)
                FROM serving_dirty GROUP BY profile_id ORDER BY profile_id LIMIT ?
                """,
                [chunk],
            ).fetchall()
            if not rows:
                return total
            marked = [row[0] for row in rows]
            parts = [(profile_id, computed) for profile_id, whole, computed, _ in rows if not whole]
            known = {profile_id: computed for profile_id, _, computed, known in rows if known}
            # a profile the store has no view of yet is given its whole view
            whole = [profile_id for profile_id, whole, _, _ in rows if whole]
            whole += store.set_computed_traits(parts)
            if whole:
                live = _live(con, whole)
                given = {p: known[p] for p in live if p in known}
                store.replace(
                    set(whole) | set(live), profile_views_and_keys(con, live, computed=given)
                )
            con.register("published_ids", pa.table({"profile_id": pa.array(marked)}))
            try:
                con.execute(
                    "DELETE FROM serving_dirty "
                    "WHERE profile_id IN (SELECT profile_id FROM published_ids)"
                )
            finally:
                con.unregister("published_ids")
        total += len(marked)
        if not drain:
            return total


def _publish_all(con: duckdb.DuckDBPyConnection, store: ServingStore, chunk: int = 50_000) -> int:
    live = [row[0] for row in con.execute(
        "SELECT profile_id FROM identity_profiles WHERE merged_into IS NULL ORDER BY 1"
    ).fetchall()]  # fmt: skip
    store.rebuild(
        profile_views_and_keys(con, live[start : start + chunk])
        for start in range(0, len(live), chunk)
    )
    return len(live)


def _live(con: duckdb.DuckDBPyConnection, marked: list[str]) -> list[str]:
    """The live profiles of ``marked`` ids (an absorbed id's survivor)."""
    con.register("marked_ids", pa.table({"profile_id": pa.array(marked, pa.string())}))
    try:
        return sorted({row[0] for row in con.execute(
            """
            SELECT coalesce(merged_into, profile_id) FROM identity_profiles
            WHERE profile_id IN (SELECT profile_id FROM marked_ids)
            """
        ).fetchall()})  # fmt: skip
    finally:
        con.unregister("marked_ids")
