"""The identity graph's health: where it may have over-merged, and what its rules refused."""

from __future__ import annotations

import duckdb

from onefold.unify.identifiers import ignored_merge_properties
from onefold.unify.rules import IdentityRules


def _rows(cursor: duckdb.DuckDBPyConnection) -> list[dict]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def health_report(
    con: duckdb.DuckDBPyConnection,
    over: int = 20,
    top: int = 10,
    rules: IdentityRules | None = None,
) -> dict:
    """Largest profiles, how many hold more than ``over`` identifiers, links refused per
    rule and namespace, the most frequent blocked values, and links beyond the rules per
    kind and status (``review``: the queue waiting for a person); with the ``rules``, the
    entries of merge calls that linked nothing (a type no namespace takes, or past the
    first ten)."""
    totals = con.execute(
        """
        SELECT (SELECT count(*) FROM identity_profiles WHERE merged_into IS NULL),
               (SELECT count(*) FROM identifiers),
               (SELECT count(*) FROM identity_merges)
        """
    ).fetchall()[0]
    largest = _rows(con.execute(
        """
        SELECT profile_id, count(*) AS identifiers,
               count(*) FILTER (WHERE namespace = 'email') AS emails,
               count(*) FILTER (WHERE namespace = 'phone') AS phones,
               count(*) FILTER (WHERE namespace = 'anonymous_id') AS anonymous_ids
        FROM identifiers GROUP BY profile_id ORDER BY identifiers DESC, profile_id LIMIT ?
        """,
        [top],
    ))  # fmt: skip
    over_count = con.execute(
        "SELECT count(*) FROM (SELECT profile_id FROM identifiers GROUP BY profile_id "
        "HAVING count(*) > ?)",
        [over],
    ).fetchall()[0][0]
    refused = _rows(con.execute(
        """
        SELECT rule, namespace, count(*) AS links FROM identity_refusals
        GROUP BY rule, namespace ORDER BY links DESC
        """
    ))  # fmt: skip
    blocked = _rows(con.execute(
        """
        SELECT namespace, value, occurrences FROM identity_blocked
        ORDER BY occurrences DESC, namespace, value LIMIT ?
        """,
        [top],
    ))  # fmt: skip
    links = _rows(con.execute(
        "SELECT kind, status, count(*) AS links FROM identity_links GROUP BY ALL ORDER BY ALL"
    ))  # fmt: skip
    return {
        "profiles": totals[0],
        "identifiers": totals[1],
        "merges": totals[2],
        "largest_profiles": largest,
        "profiles_over": {"identifiers": over, "profiles": over_count},
        "refused_links": refused,
        "blocked_values": blocked,
        "links": links,
        "ignored_merge_properties": ignored_merge_properties(con, rules)[:top] if rules else [],
    }
