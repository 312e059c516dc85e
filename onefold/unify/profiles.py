"""Reading unified profiles: find one by any identifier, show its identities and history,
and its timeline — every event of all its identities, across sources."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb
import orjson

from onefold.unify.accounts import profile_accounts
from onefold.unify.computed import profile_computed
from onefold.unify.identifiers import normalise_phone
from onefold.unify.rules import IdentityRules
from onefold.unify.traits import profile_traits


class ProfileError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


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


def _dicts(cursor: duckdb.DuckDBPyConnection) -> list[dict]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def profile_view(con: duckdb.DuckDBPyConnection, profile_id: str) -> dict:
    identities = _dicts(con.execute(
        """
        SELECT i.namespace, i.value, s.name AS source, e."timestamp" AS first_seen
        FROM identifiers i
        LEFT JOIN sources s ON s.id = i.source_id
        LEFT JOIN events e ON e.seq = i.first_seq
        WHERE i.profile_id = ?
        ORDER BY i.first_seq, i.namespace, i.value
        """,
        [profile_id],
    ))  # fmt: skip
    merges = _dicts(con.execute(
        """
        SELECT m.absorbed_id, m.method, m.namespace, m.value, m.message_id,
               m.probability, m.reasons, m.created_at, e.received_at AS message_received_at
        FROM identity_merges m LEFT JOIN events e ON e.seq = m.seq
        WHERE m.surviving_id = ? OR m.surviving_id IN (
            SELECT profile_id FROM identity_profiles WHERE merged_into = ?)
        ORDER BY m.created_at, m.seq
        """,
        [profile_id, profile_id],
    ))  # fmt: skip
    for merge in merges:
        merge["reasons"] = orjson.loads(merge["reasons"]) if merge["reasons"] else None
    refusals = _dicts(con.execute(
        """
        SELECT x.rule, x.namespace, x.value,
               coalesce(o.merged_into, x.other_profile_id) AS other_profile_id,
               x.detail, x.message_id, x.created_at
        FROM identity_refusals x
        LEFT JOIN identity_profiles p ON p.profile_id = x.profile_id
        LEFT JOIN identity_profiles o ON o.profile_id = x.other_profile_id
        WHERE coalesce(p.merged_into, x.profile_id) = ? ORDER BY x.seq DESC LIMIT 50
        """,
        [profile_id],
    ))  # fmt: skip
    return {
        "profile_id": profile_id,
        "traits": profile_traits(con, profile_id),
        "computed_traits": profile_computed(con, profile_id),
        "accounts": profile_accounts(con, profile_id),
        "identities": identities,
        "merges": merges,
        "refused_links": refusals,
    }


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
