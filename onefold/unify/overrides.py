"""Undoing and steering the identity graph by hand: overrides, unmerge, rebuild.

Overrides take precedence over the rules: ``block`` keeps one identifier from linking
anything; ``never_link`` keeps two identifiers out of the same profile. Adding one re-derives
the part of the graph it affects — the connected component of the messages and identifiers
involved, including links the rules refused — by replaying those events through the same
resolver, in ``seq`` order, from the raw store. Events, traits and computed traits are
re-attributed with it, and an audit entry records the profiles before and after.

Because a component's messages never touch another component's identifiers, replaying the
component gives exactly what a full rebuild of the whole graph would (tested).
"""

from __future__ import annotations

import secrets
from datetime import datetime

import duckdb
import orjson
import pyarrow as pa

from onefold.errors import OnefoldError
from onefold.unify import computed, links, profile_rows, traits
from onefold.unify.identifiers import extraction_sql, group_messages
from onefold.unify.resolver import Key, Resolver
from onefold.unify.rules import IdentityRules

KINDS = ("block", "never_link")


class OverrideError(OnefoldError):
    """An override that cannot be recorded."""


def active(con: duckdb.DuckDBPyConnection) -> tuple[frozenset[Key], list[tuple[Key, Key]]]:
    rows = con.execute(
        """
        SELECT kind, namespace, value, other_namespace, other_value
        FROM identity_overrides WHERE removed_at IS NULL
        """
    ).fetchall()
    blocked = frozenset((ns, v) for kind, ns, v, _, _ in rows if kind == "block")
    never = [((ns, v), (ons, ov)) for kind, ns, v, ons, ov in rows if kind == "never_link"]
    return blocked, never


def _resolved(column: str) -> str:
    return (
        f"(SELECT coalesce(p.merged_into, p.profile_id) FROM identity_profiles p "
        f"WHERE p.profile_id = {column})"
    )


def component(con: duckdb.DuckDBPyConnection, seeds: set[str]) -> set[str]:
    """The profiles connected to ``seeds`` by any message, linked or refused."""
    found = set(seeds)
    frontier = set(seeds)
    while frontier:
        con.register("frontier", pa.table({"profile_id": pa.array(sorted(frontier), pa.string())}))
        try:
            rows = con.execute(
                f"""
                WITH r AS (
                    SELECT {_resolved("x.profile_id")} AS profile_id,
                           {_resolved("x.other_profile_id")} AS other_id,
                           i.profile_id AS owner_id
                    FROM identity_refusals x
                    LEFT JOIN identifiers i ON i.namespace = x.namespace AND i.value = x.value
                )
                SELECT profile_id, other_id, owner_id FROM r
                WHERE profile_id IN (SELECT profile_id FROM frontier)
                   OR other_id IN (SELECT profile_id FROM frontier)
                   OR owner_id IN (SELECT profile_id FROM frontier)
                UNION ALL
                SELECT a.profile_id, b.profile_id, NULL FROM identity_links l
                JOIN identifiers a ON a.namespace = l.namespace_a AND a.value = l.value_a
                JOIN identifiers b ON b.namespace = l.namespace_b AND b.value = l.value_b
                WHERE l.status = 'active'
                  AND (a.profile_id IN (SELECT profile_id FROM frontier)
                       OR b.profile_id IN (SELECT profile_id FROM frontier))
                """
            ).fetchall()
        finally:
            con.unregister("frontier")
        reached = {p for row in rows for p in row if p}
        frontier = reached - found
        found |= reached
    return found


def _profiles_of(con: duckdb.DuckDBPyConnection, profiles: set[str]) -> dict[str, list[str]]:
    con.register("some_profiles", pa.table({"profile_id": pa.array(sorted(profiles), pa.string())}))
    try:
        rows = con.execute(
            """
            SELECT profile_id, namespace || ':' || value FROM identifiers
            WHERE profile_id IN (SELECT profile_id FROM some_profiles) ORDER BY 1, 2
            """
        ).fetchall()
    finally:
        con.unregister("some_profiles")
    grouped: dict[str, list[str]] = {}
    for profile_id, identifier in rows:
        grouped.setdefault(profile_id, []).append(identifier)
    return grouped


def replay(
    con: duckdb.DuckDBPyConnection,
    rules: IdentityRules,
    trait_rules: traits.TraitRules,
    computed_traits: list[computed.ComputedTrait],
    as_of: datetime,
    profiles: set[str],
) -> tuple[dict[str, list[str]], dict[str, list[str]], int]:
    """Re-derive the component of ``profiles`` from the raw store; returns the profiles
    before, after, and how many events were replayed."""
    from onefold.unify.graph import write_changes

    affected = component(con, profiles)
    before = _profiles_of(con, affected)
    con.register("affected", pa.table({"profile_id": pa.array(sorted(affected), pa.string())}))
    try:
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE replay_seqs AS
            SELECT ei.seq FROM event_identity ei
            JOIN identifiers i ON i.namespace = ei.namespace AND i.value = ei.value
            WHERE i.profile_id IN (SELECT profile_id FROM affected)
            UNION
            SELECT seq FROM identity_refusals x
            WHERE {_resolved("x.profile_id")} IN (SELECT profile_id FROM affected)
            """
        )
        # what links did to these profiles goes with them (links are replayed below)
        con.execute(
            """
            CREATE OR REPLACE TEMP TABLE replay_ids AS SELECT profile_id FROM identity_profiles
            WHERE coalesce(merged_into, profile_id) IN (SELECT profile_id FROM affected)
            """
        )
        con.execute(
            f"""
            DELETE FROM identity_merges WHERE message_id LIKE '{links.PREFIX}%'
              AND (surviving_id IN (SELECT profile_id FROM replay_ids)
                   OR absorbed_id IN (SELECT profile_id FROM replay_ids))
            """
        )
        con.execute(
            f"""
            DELETE FROM identity_refusals WHERE message_id LIKE '{links.PREFIX}%'
              AND (profile_id IN (SELECT profile_id FROM replay_ids)
                   OR other_profile_id IN (SELECT profile_id FROM replay_ids))
            """
        )
        con.execute("DELETE FROM identifiers WHERE profile_id IN (SELECT profile_id FROM affected)")
        profile_rows.delete(con, "replay_ids")
        con.execute("DROP TABLE replay_ids")
        for table in ("identity_merges", "identity_refusals", "event_identity"):
            extra = " AND method = 'deterministic'" if table == "identity_merges" else ""
            con.execute(f"DELETE FROM {table} WHERE seq IN (SELECT seq FROM replay_seqs){extra}")
    finally:
        con.unregister("affected")
    rows = con.execute(
        extraction_sql(rules, where="seq IN (SELECT seq FROM replay_seqs)")
    ).fetchall()
    blocked, never = active(con)
    extracted = group_messages(rows, rules, blocked)
    keys = {key for message in extracted.messages for key in message.identifiers}
    applied = links.active_touching(con, keys)
    resolver = Resolver(rules, never)
    changes = links.resolve_with_links(resolver, extracted.messages, applied)
    write_changes(con, resolver, changes, "deterministic", links.merge_details(applied))
    after = _profiles_of(con, set(resolver.profiles))
    touched = sorted(affected | set(resolver.profiles))
    traits.refresh(con, trait_rules, touched)
    computed.refresh(con, computed_traits, as_of, touched)
    replayed = con.execute("SELECT count(*) FROM replay_seqs").fetchall()[0][0]
    con.execute("DROP TABLE replay_seqs")
    return before, after, replayed


def add(
    con: duckdb.DuckDBPyConnection,
    rules: IdentityRules,
    kind: str,
    key: Key,
    other: Key | None,
    reason: str,
) -> tuple[str, set[str]]:
    """Record an override; returns its id and the profiles it affects (to replay)."""
    if kind not in KINDS:
        raise OverrideError("invalid_override", f"kind must be one of {', '.join(KINDS)}")
    for namespace, _ in [key, *([other] if other else [])]:
        if namespace not in rules.namespaces:
            raise OverrideError("unknown_namespace", f"unknown namespace {namespace!r}")
    if kind == "never_link" and other is None:
        raise OverrideError("invalid_override", "never_link needs two identifiers")
    if not reason.strip():
        raise OverrideError("invalid_override", "an override needs a reason")
    override_id = "ovr_" + secrets.token_hex(8)
    con.execute(
        "INSERT INTO identity_overrides VALUES (?, ?, ?, ?, ?, ?, ?, now()::TIMESTAMP, NULL)",
        [override_id, kind, *key, *(other or (None, None)), reason],
    )
    return override_id, owners(con, [key, *([other] if other else [])])


def owners(con: duckdb.DuckDBPyConnection, keys: list[Key]) -> set[str]:
    """The profiles holding any of ``keys``."""
    found: set[str] = set()
    for namespace, value in keys:
        found.update(row[0] for row in con.execute(
            "SELECT profile_id FROM identifiers WHERE namespace = ? AND value = ?",
            [namespace, value],
        ).fetchall())  # fmt: skip
    return found


def audit(
    con: duckdb.DuckDBPyConnection,
    action: str,
    override_id: str | None,
    reason: str | None,
    before: dict,
    after: dict,
    replayed: int,
) -> None:
    con.execute(
        "INSERT INTO identity_audit VALUES (now()::TIMESTAMP, ?, ?, ?, ?, ?, ?)",
        [action, override_id, reason, orjson.dumps(before).decode(),
         orjson.dumps(after).decode(), replayed],
    )  # fmt: skip


def clear_graph(con: duckdb.DuckDBPyConnection) -> None:
    """Forget every derived identity table, for a rebuild from the raw store."""
    from onefold.unify.publish import mark_all_dirty

    mark_all_dirty(con)  # the profiles about to go, for the serving store to forget them
    profile_rows.clear(con)
    for table in ("identifiers", "identity_refusals", "event_identity",
                  "identity_blocked", "trait_observations", "profile_traits",
                  "profile_computed_traits", "account_events",
                  "account_observations"):  # fmt: skip
        con.execute(f"DELETE FROM {table}")
    con.execute("DELETE FROM identity_merges")  # links' merges too: a rebuild replays them
    con.execute("DELETE FROM consumer_cursors WHERE consumer = 'identity'")
