"""Blocking: which pairs of records are compared at all.

Two records become a candidate pair when they share the value of at least one blocking
key (e.g. last name + date of birth, or one word of the name + birth year). Many keys,
each specific, find far more true pairs than a few broad ones; a key value shared by more
than `max_block_size` records (a common surname in a big city) generates no pairs, which
bounds the work at about `keys × records × max_block_size / 2` pairs whatever the data.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from onefold.unify.matching.config import Field
from onefold.unify.matching.normalise import quote


@dataclass(frozen=True)
class BlockingKey:
    """Records agree on every expression (SQL over the normalised columns)."""

    name: str
    exprs: tuple[str, ...]
    explode_name_tokens: bool = False  # one key value per word of the name


def default_keys(fields: list[Field]) -> list[BlockingKey]:
    kinds: dict[str, list[str]] = {}
    for f in fields:
        kinds.setdefault(f.kind, []).append(f.column)
    has_name = "name" in kinds
    first, last = "first_name", "last_name"
    keys: list[BlockingKey] = []

    def add(name: str, *exprs: str, explode: bool = False) -> None:
        keys.append(BlockingKey(name, tuple(exprs), explode))

    # Identifiers and contacts: a shared value is itself strong evidence.
    for kind in ("email", "phone", "id"):
        for col in kinds.get(kind, []):
            add(col, quote(col))
    for col in kinds.get("email", []):
        add(col + "_user", quote(col + "_user"))
    for col in kinds.get("exact", []):
        if col == "user_id":
            add(col, quote(col))
    dates = [quote(c) for c in kinds.get("date", [])]
    posts = kinds.get("postcode", [])
    places = [quote(c) for c in kinds.get("city", [])]
    streets = [quote(c) for c in kinds.get("street", [])]
    if has_name:
        add("first+last", first, last)
        add("first3+last4", f"substr({first}, 1, 3)", f"substr({last}, 1, 4)")
    for d in dates:
        year = f"substr({d}, 1, 4)"
        add("date", d)
        if has_name:
            add("last+date", last, d)
            add("first+date", first, d)
            add("last+year", last, year)
            add("first2+last2+year", f"substr({first}, 1, 2)", f"substr({last}, 1, 2)", year)
            add("name word+year", year, explode=True)
        for p in posts:
            add("date+postcode", d, quote(p))
            add("year+postcode", year, quote(p))
        for c in places:
            add("date+city", d, c)
            add("month-day+city", f"substr({d}, 6, 5)", c)
    for p in posts:
        add("postcode", quote(p))
        if has_name:
            add("last+postcode", last, quote(p))
            add("first+postcode", first, quote(p))
            add("name word+district", quote(p + "_district"), explode=True)
        for s in streets:
            add("street+postcode", s, quote(p))
    for c in places:
        if has_name:
            add("last+city", last, c)
            add("first+city", first, c)
    for s in streets:
        if has_name:
            add("last+street", last, s)
    return keys


def _key_select(i: int, key: BlockingKey) -> str:
    parts = list(key.exprs)
    if key.explode_name_tokens:
        parts = ["t", *parts]
    not_null = " AND ".join(f"({e}) IS NOT NULL" for e in parts)
    value = f"hash({i}, " + ", ".join(f"({e})" for e in parts) + ")"
    if key.explode_name_tokens:
        return (
            f"SELECT unique_id, {i} AS k, {value} AS v FROM "
            f"(SELECT *, unnest(name_tokens) AS t FROM __work) WHERE {not_null}"
        )
    return f"SELECT unique_id, {i} AS k, {value} AS v FROM __work WHERE {not_null}"


def blocked_pairs(
    con: duckdb.DuckDBPyConnection,
    work: str,
    keys: list[BlockingKey],
    max_block_size: int,
    max_pairs_per_key: int,
    out: str,
) -> dict[str, int]:
    """Create table `out` (match_key, join_key_l, join_key_r) of candidate pairs, l < r.

    Per key, blocks of more than `max_block_size` records are skipped, and so are the
    largest remaining blocks until the key yields at most `max_pairs_per_key` pairs (on a
    big data set a broad key such as the date of birth alone then only pairs records of
    rare dates). Returns, per key, how many pairs it found first.
    """
    selects = " UNION ALL ".join(_key_select(i, k) for i, k in enumerate(keys))
    keys_table = out + "_keys"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {keys_table} AS "
        f"WITH __work AS (SELECT * FROM {work}) {selects}"
    )
    # v hashes the key number with its value: one integer column to group and join on.
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {keys_table}_kept AS "
        f"WITH sizes AS (SELECT v, min(k) AS k, count(*) AS n FROM {keys_table} GROUP BY v "
        f"HAVING count(*) BETWEEN 2 AND {int(max_block_size)}), "
        f"by_size AS (SELECT k, n, sum(n * (n - 1) / 2) AS pairs FROM sizes GROUP BY k, n), "
        f"cum AS (SELECT k, n, sum(pairs) OVER (PARTITION BY k ORDER BY n) AS total "
        f"FROM by_size), "
        f"allowed AS (SELECT k, max(n) AS max_n FROM cum "
        f"WHERE total <= {int(max_pairs_per_key)} GROUP BY k), "
        f"kept AS (SELECT s.v FROM sizes s JOIN allowed a ON a.k = s.k WHERE s.n <= a.max_n) "
        f"SELECT x.unique_id, x.k, x.v FROM {keys_table} x SEMI JOIN kept USING (v)"
    )
    con.execute(f"DROP TABLE {keys_table}")
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {out} AS "
        f"SELECT CAST(min(a.k) AS VARCHAR) AS match_key, a.unique_id AS join_key_l, "
        f"b.unique_id AS join_key_r FROM {keys_table}_kept a JOIN {keys_table}_kept b "
        f"ON a.v = b.v AND a.unique_id < b.unique_id "
        f"GROUP BY a.unique_id, b.unique_id"
    )
    con.execute(f"DROP TABLE {keys_table}_kept")
    rows = con.execute(
        f"SELECT CAST(match_key AS INTEGER), count(*) FROM {out} GROUP BY 1 ORDER BY 1"
    ).fetchall()
    counts: dict[str, int] = {}
    for k, n in rows:
        name = keys[int(k)].name
        counts[name] = counts.get(name, 0) + int(n)
    return counts
