"""Reading unified profiles: find one by any identifier, show its identities and history,
and its timeline — every event of all its identities, across sources."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb
import orjson
import pyarrow as pa

from onefold.errors import OnefoldError
from onefold.store import Warehouse
from onefold.store.serving import PROFILE_NAMESPACE, ServingStore
from onefold.unify.identifiers import normalise_phone
from onefold.unify.membership import PROFILE_HASH
from onefold.unify.rules import IdentityRules


class ProfileError(OnefoldError):
    """A profile request that cannot be answered."""


@dataclass(frozen=True)
class Lookup:
    namespace: str
    value: str


def parse_identifier(text: str, rules: IdentityRules) -> Lookup:
    """``namespace:value`` (or ``profile:pr_…``), with the value normalised like the
    namespace's identifiers are."""
    namespace, sep, value = text.partition(":")
    if not sep or not value:
        raise ProfileError(
            "invalid_identifier",
            f"an identifier is namespace:value, e.g. email:jane@example.com; got {text!r}",
        )
    if namespace == "profile":
        return Lookup(namespace, value)
    rule = rules.namespaces.get(namespace)
    if rule is None:
        known = ", ".join(["profile", *rules.ordered()])
        raise ProfileError("unknown_namespace", f"unknown namespace {namespace!r}; known: {known}")
    value = value.strip()
    if rule.normalise in ("email", "lower"):
        value = value.lower()
    elif rule.normalise == "phone":
        value = normalise_phone(value, rules.default_region) or value
    return Lookup(namespace, value)


def find_profile(con: duckdb.DuckDBPyConnection, lookup: Lookup) -> str | None:
    """The live profile id holding the identifier (following merges for old ids)."""
    if lookup.namespace == "profile":
        rows = con.execute(
            "SELECT coalesce(merged_into, profile_id) FROM identity_profiles WHERE profile_id = ?",
            [lookup.value],
        ).fetchall()
    else:
        rows = con.execute(
            "SELECT profile_id FROM identifiers WHERE namespace = ? AND value = ?",
            [lookup.namespace, lookup.value],
        ).fetchall()
    return rows[0][0] if rows else None


def profile_view(con: duckdb.DuckDBPyConnection, profile_id: str) -> dict:
    """Everything known about one live profile (see :func:`profile_views_json`)."""
    return orjson.loads(profile_views_json(con, [profile_id])[profile_id])


def _iso(column: str) -> str:
    """A timestamp as Python's ``isoformat()`` writes it (what the API answers)."""
    return (
        f"CASE WHEN {column} IS NULL THEN NULL "
        f"WHEN microsecond({column}) % 1000000 = 0 "
        f"THEN strftime({column}, '%Y-%m-%dT%H:%M:%S') "
        f"ELSE strftime({column}, '%Y-%m-%dT%H:%M:%S.%f') END"
    )


_VIEWS_JSON = f"""
WITH owners AS (
    SELECT profile_id, profile_id AS owner FROM view_ids
    UNION ALL
    SELECT profile_id, merged_into FROM absorbed_profiles
    WHERE merged_into IN (SELECT profile_id FROM view_ids)
), ids AS MATERIALIZED (
    -- read once: the identities, the accounts and the keys all come from it
    -- (by hash: another profile's identifiers sharing one make groups no view joins)
    SELECT namespace, value, profile_id, source_id, first_seq FROM identifiers
    WHERE profile_hash IN (SELECT {PROFILE_HASH} FROM view_ids)
), traits AS (
    SELECT t.profile_id, ('{{' || string_agg(to_json(t.trait) || ':' || json_object(
               'value', t.value, 'source', s.name, 'updated_at', {_iso('t."timestamp"')}
           ), ',' ORDER BY t.trait) || '}}') AS j
    FROM profile_traits t LEFT JOIN sources s ON s.id = t.source_id
    WHERE t.profile_hash IN (SELECT {PROFILE_HASH} FROM view_ids)
    GROUP BY t.profile_id
), computed AS (
    {{computed}}
), accounts AS (
    SELECT profile_id,
           ('[' || string_agg(to_json(group_id), ',' ORDER BY group_id) || ']') AS j FROM (
        SELECT DISTINCT i.profile_id, a.group_id FROM account_events a
        JOIN event_identity ei ON ei.seq = a.seq
        JOIN ids i ON i.namespace = ei.namespace AND i.value = ei.value
    ) GROUP BY profile_id
), identities AS (
    SELECT i.profile_id, ('[' || string_agg(json_object(
               'namespace', i.namespace, 'value', i.value, 'source', s.name,
               'first_seen', {_iso('e."timestamp"')}
           ), ',' ORDER BY i.first_seq, i.namespace, i.value) || ']') AS j
    FROM ids i
    LEFT JOIN sources s ON s.id = i.source_id
    LEFT JOIN events e ON e.seq = i.first_seq
    GROUP BY i.profile_id
), keys AS (
    -- what the serving store finds the profile by: its identifiers and absorbed ids, in
    -- order, so that an unchanged set of keys gives the same bytes
    SELECT profile_id, to_json(list([namespace, value] ORDER BY namespace, value)) AS j
    FROM (
        SELECT namespace, value, profile_id FROM ids
        UNION ALL
        SELECT $profile, profile_id, owner FROM owners WHERE profile_id <> owner
    ) GROUP BY profile_id
), merges AS (
    SELECT o.owner AS profile_id, ('[' || string_agg(json_object(
               'absorbed_id', m.absorbed_id, 'method', m.method, 'namespace', m.namespace,
               'value', m.value, 'message_id', m.message_id, 'probability', m.probability,
               'reasons', m.reasons, 'created_at', {_iso("m.created_at")},
               'message_received_at', {_iso("e.received_at")}
           ), ',' ORDER BY m.created_at, m.seq, m.absorbed_id) || ']') AS j
    FROM identity_merges m
    JOIN owners o ON o.profile_id = m.surviving_id
    LEFT JOIN events e ON e.seq = m.seq
    GROUP BY o.owner
), refusals AS (
    SELECT x.owner AS profile_id, ('[' || string_agg(json_object(
               'rule', x.rule, 'namespace', x.namespace, 'value', x.value,
               'other_profile_id', coalesce(p.merged_into, x.other_profile_id),
               'detail', x.detail, 'message_id', x.message_id,
               'created_at', {_iso("x.created_at")}
           ), ',' ORDER BY x.seq DESC, x.namespace, x.value, x.rule) || ']') AS j
    FROM (
        SELECT o.owner, x.*, row_number() OVER (
            PARTITION BY o.owner ORDER BY x.seq DESC, x.namespace, x.value, x.rule) AS rank
        FROM identity_refusals x JOIN owners o ON o.profile_id = x.profile_id
    ) x
    LEFT JOIN identity_profiles p ON p.profile_id = x.other_profile_id
    WHERE x.rank <= 50
    GROUP BY x.owner
)
-- Each part is JSON text already: concatenated, not parsed again by json_object.
SELECT v.profile_id, '{{"profile_id":' || to_json(v.profile_id)
    || ',"traits":' || coalesce(traits.j, '{{}}')
    || ',"computed_traits":' || coalesce(computed.j, '{{}}')
    || ',"accounts":' || coalesce(accounts.j, '[]')
    || ',"identities":' || coalesce(identities.j, '[]')
    || ',"merges":' || coalesce(merges.j, '[]')
    || ',"refused_links":' || coalesce(refusals.j, '[]') || '}}',
    coalesce(keys.j, '[]')
FROM view_ids v
LEFT JOIN traits USING (profile_id) LEFT JOIN computed USING (profile_id)
LEFT JOIN accounts USING (profile_id) LEFT JOIN identities USING (profile_id)
LEFT JOIN merges USING (profile_id) LEFT JOIN refusals USING (profile_id)
LEFT JOIN keys USING (profile_id)
"""

_COMPUTED_GIVEN = "SELECT profile_id, computed AS j FROM view_ids WHERE computed IS NOT NULL"
_COMPUTED_STORED = f"""
    SELECT profile_id, CAST(traits AS VARCHAR) AS j FROM profile_computed_traits
    WHERE profile_hash IN (SELECT {PROFILE_HASH} FROM view_ids WHERE computed IS NULL)
"""


def profile_views_json(con: duckdb.DuckDBPyConnection, profile_ids: list[str]) -> dict[str, bytes]:
    """The views of live profiles as the profile API answers with them, serialised by
    DuckDB in one query for all of them: identities with where and when each was first
    seen, traits with provenance, computed traits, accounts, the merges that made the
    profile and the last 50 links it refused. What the serving store holds."""
    return {profile_id: view for profile_id, view, _ in profile_views_and_keys(con, profile_ids)}


def profile_views_and_keys(
    con: duckdb.DuckDBPyConnection,
    profile_ids: list[str],
    computed: dict[str, str] | None = None,
) -> list[tuple[str, bytes, bytes]]:
    """Each live profile's view (see :func:`profile_views_json`) and its keys: every
    identifier and the id of every profile it absorbed, as a JSON list of ``[namespace,
    value]`` in order (the same bytes for the same keys). The computed traits (JSON text)
    of the profiles in ``computed`` are taken from there, the others' read."""
    ids = sorted(set(profile_ids))
    if not ids:
        return []
    computed = computed or {}
    given = [computed.get(profile_id) for profile_id in ids]
    parts = []
    if computed:
        parts.append(_COMPUTED_GIVEN)
    if None in given:
        parts.append(_COMPUTED_STORED)
    query = _VIEWS_JSON.replace("{computed}", "\n    UNION ALL\n".join(parts))
    con.register("view_ids", pa.table({
        "profile_id": pa.array(ids, pa.string()), "computed": pa.array(given, pa.string()),
    }))  # fmt: skip
    try:
        rows = con.execute(query, {"profile": PROFILE_NAMESPACE}).fetchall()
    finally:
        con.unregister("view_ids")
    return [(profile_id, view.encode(), keys.encode()) for profile_id, view, keys in rows]


_TIMELINE_COLUMNS = (
    "seq", "source", "message_id", "type", "event", "user_id", "anonymous_id",
    "timestamp", "received_at", "raw",
)  # fmt: skip


def timeline(
    con: duckdb.DuckDBPyConnection,
    profile_id: str,
    *,
    type: str | None = None,
    limit: int = 50,
    before: str | None = None,
) -> tuple[list[dict], str | None]:
    """The profile's events, newest first by event time; ``before`` is the cursor the
    previous page returned."""
    clauses = ["i.profile_id = $profile"]
    params: dict[str, object] = {"profile": profile_id, "limit": limit + 1}
    if type is not None:
        clauses.append("e.type = $type")
        params["type"] = type
    if before is not None:
        moment, _, seq = before.partition("~")
        try:
            params["before_ts"] = datetime.fromisoformat(moment)
            params["before_seq"] = int(seq)
        except ValueError as exc:
            raise ProfileError("invalid_cursor", f"not a timeline cursor: {before!r}") from exc
        clauses.append("(e.timestamp, e.seq) < ($before_ts, $before_seq)")
    rows = con.execute(
        f"""
        SELECT e.seq, s.name AS source, e.message_id, e.type, e.event, e.user_id,
               e.anonymous_id, e.timestamp, e.received_at, e.raw
        FROM identifiers i
        JOIN event_identity ei ON ei.namespace = i.namespace AND ei.value = i.value
        JOIN events e ON e.seq = ei.seq
        LEFT JOIN sources s ON s.id = e.source_id
        WHERE {" AND ".join(clauses)}
        ORDER BY e.timestamp DESC, e.seq DESC
        LIMIT $limit
        """,
        params,
    ).fetchall()
    more = len(rows) > limit
    events = []
    for row in rows[:limit]:
        item = dict(zip(_TIMELINE_COLUMNS, row, strict=True))
        item["raw"] = orjson.loads(item["raw"])
        events.append(item)
    cursor = None
    if more:
        last = events[-1]
        cursor = f"{last['timestamp'].isoformat()}~{last['seq']}"
    return events, cursor


class ProfileReader:
    """Answers profile lookups from the serving store, falling back to the warehouse for a
    profile the graph has changed but not yet published."""

    def __init__(self, warehouse: Warehouse, serving: ServingStore) -> None:
        self.warehouse = warehouse
        self.serving = serving

    def find(self, lookup: Lookup) -> str | None:
        found = self.serving.find(lookup.namespace, lookup.value)
        if found is None:
            found = find_profile(self.warehouse.cursor(), lookup)
        return found

    def view_json(self, profile_id: str) -> bytes:
        """The profile's view, serialised as the profile API answers with it."""
        view = self.serving.view(profile_id)
        if view is None:
            view = profile_views_json(self.warehouse.cursor(), [profile_id])[profile_id]
        return view
