"""Accounts (B2B companies, households, teams): ``group`` calls name an account
(``groupId``), describe it (``traits``, latest value wins) and make the caller's profile a
member of it."""

from __future__ import annotations

import duckdb
import orjson


def observe(con: duckdb.DuckDBPyConnection, after: int, upto: int) -> set[int]:
    """Record the group calls in ``(after, upto]``; returns their seqs."""
    params = {"after": after, "upto": upto}
    grouped = con.execute(
        """
        INSERT INTO account_events
        SELECT seq, group_id, "timestamp" FROM events
        WHERE seq > $after AND seq <= $upto AND type = 'group' AND group_id IS NOT NULL
        RETURNING seq
        """,
        params,
    ).fetchall()
    con.execute(
        """
        INSERT INTO account_observations
        SELECT e.seq, e.group_id, e.source_id, t.key, t.value, e."timestamp"
        FROM events e, json_each(e.raw -> '$.traits') t
        WHERE e.seq > $after AND e.seq <= $upto AND e.type = 'group'
          AND e.group_id IS NOT NULL AND json_type(e.raw -> '$.traits') = 'OBJECT'
        """,
        params,
    )
    return {row[0] for row in grouped}


def account_view(con: duckdb.DuckDBPyConnection, group_id: str) -> dict | None:
    seen = con.execute(
        'SELECT min("timestamp"), max("timestamp"), count(*) FROM account_events '
        "WHERE group_id = ?",
        [group_id],
    ).fetchall()[0]
    if not seen[2]:
        return None
    traits = con.execute(
        """
        SELECT trait, arg_max(value, struct_pack(t := "timestamp", s := seq))
        FROM account_observations
        WHERE group_id = ? AND json_type(value) <> 'NULL'
        GROUP BY trait ORDER BY trait
        """,
        [group_id],
    ).fetchall()
    members = con.execute(
        """
        SELECT i.profile_id, min(a."timestamp") AS joined
        FROM account_events a
        JOIN event_identity ei ON ei.seq = a.seq
        JOIN identifiers i ON i.namespace = ei.namespace AND i.value = ei.value
        WHERE a.group_id = ? GROUP BY i.profile_id ORDER BY joined, i.profile_id
        """,
        [group_id],
    ).fetchall()
    return {
        "group_id": group_id,
        "traits": {trait: orjson.loads(value) for trait, value in traits},
        "members": [{"profile_id": p, "joined": joined} for p, joined in members],
        "first_seen": seen[0],
        "last_seen": seen[1],
    }
