"""Finding profiles by their traits: ``country=ES``, ``lifetime_value>=500``,
``email~@example.com``, ``phone?`` — every condition must hold.

Values are compared as the trait holds them: numbers as numbers for ``<``, ``<=``, ``>``,
``>=``; text case-insensitively for ``=``, ``!=`` and ``~`` (contains). This is a lookup for
people, not the segment engine: it reads current traits (and computed traits) only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import duckdb
import orjson

from onefold.errors import OnefoldError

OPERATORS = ("=", "!=", "~", "<", "<=", ">", ">=", "?")
_CONDITION = re.compile(r"^\s*([^\s=!~<>?]+)\s*(!=|<=|>=|=|~|<|>|\?)\s*(.*?)\s*$", re.S)


class SearchError(OnefoldError):
    """A search that cannot be run."""


@dataclass(frozen=True)
class Condition:
    trait: str
    op: str
    value: str


def parse_condition(text: str) -> Condition:
    match = _CONDITION.match(text)
    if not match:
        raise SearchError(
            "invalid_condition",
            f"a condition is trait, operator, value (e.g. country=ES, orders>=2, "
            f"email~@example.com, phone?); got {text!r}",
        )
    trait, op, value = match.groups()
    if op == "?" and value:
        raise SearchError("invalid_condition", f"'?' (has the trait) takes no value: {text!r}")
    if op != "?" and not value:
        raise SearchError("invalid_condition", f"the condition has no value: {text!r}")
    if op in ("<", "<=", ">", ">="):
        try:
            float(value)
        except ValueError as exc:
            raise SearchError(
                "invalid_condition", f"{op} compares numbers; {value!r} is not a number"
            ) from exc
    return Condition(trait, op, value)


def _predicate(condition: Condition) -> str:
    text = "lower(value ->> '$')"
    if condition.op == "?":
        return "TRUE"
    if condition.op == "=":
        return f"{text} = lower(?)"
    if condition.op == "!=":
        return f"{text} <> lower(?)"
    if condition.op == "~":
        return f"contains({text}, lower(?))"
    return f"TRY_CAST(value ->> '$' AS DOUBLE) {condition.op} CAST(? AS DOUBLE)"


def search_profiles(
    con: duckdb.DuckDBPyConnection,
    conditions: list[Condition],
    *,
    limit: int = 50,
    after: str | None = None,
) -> dict:
    """Profiles meeting every condition, by profile id; ``after`` is the last id of the
    previous page. Traits and computed traits alike (a computed trait wins a name clash,
    as it is the one a segment would use)."""
    if not conditions:
        raise SearchError("invalid_condition", "give at least one condition")
    parts, params = [], []
    for condition in conditions:
        parts.append(
            f"""SELECT profile_id FROM searchable
            WHERE name = ? AND json_type(value) <> 'NULL' AND {_predicate(condition)}"""
        )
        params.append(condition.trait)
        if condition.op != "?":
            params.append(condition.value)
    matching = "\nINTERSECT\n".join(parts)
    searchable = f"""
        WITH searchable AS (
            SELECT t.profile_id, t.trait AS name, t.value FROM profile_traits t
            WHERE NOT EXISTS (SELECT 1 FROM computed_traits c
                              WHERE c.profile_id = t.profile_id AND c.name = t.trait)
            UNION ALL
            SELECT profile_id, name, value FROM computed_traits
        ), matching AS ({matching})
    """
    total = con.execute(f"{searchable} SELECT count(*) FROM matching", params).fetchall()[0][0]
    page_params = [*params, after or "", limit + 1]
    ids = [row[0] for row in con.execute(
        f"{searchable} SELECT profile_id FROM matching WHERE profile_id > ? "
        "ORDER BY profile_id LIMIT ?",
        page_params,
    ).fetchall()]  # fmt: skip
    more = len(ids) > limit
    ids = ids[:limit]
    traits: dict[str, dict] = {profile_id: {} for profile_id in ids}
    if ids:
        rows = con.execute(
            f"""
            SELECT profile_id, trait, value FROM profile_traits
            WHERE profile_id IN ({", ".join("?" * len(ids))}) ORDER BY profile_id, trait
            """,
            ids,
        ).fetchall()
        for profile_id, trait, value in rows:
            traits[profile_id][trait] = orjson.loads(value)
    return {
        "total": total,
        "profiles": [{"profile_id": p, "traits": traits[p]} for p in ids],
        "next_after": ids[-1] if more else None,
    }
