"""Probabilistic matching of profiles: their traits become the matcher's records, and its
pairs become links (merged above the auto-merge threshold, queued for review between the
review thresholds; see :mod:`onefold.unify.links`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

if TYPE_CHECKING:
    from onefold.unify.matching import MatchConfig

TRAIT_FIELDS: dict[str, tuple[str, ...]] = {
    "first_name": ("firstName", "first_name", "firstname", "given_name"),
    "last_name": ("lastName", "last_name", "lastname", "surname", "family_name"),
    "full_name": ("name", "fullName", "full_name"),
    "email": ("email",),
    "phone": ("phone", "mobile"),
    "birth_date": ("birthday", "birthDate", "birth_date", "dateOfBirth", "dob"),
    "gender": ("gender",),
    "street": ("address.street", "street", "address_line1"),
    "city": ("address.city", "city"),
    "postcode": ("address.postalCode", "address.postal_code", "postalCode", "postal_code",
                 "postcode", "zip"),
    "country": ("address.country", "country"),
}  # fmt: skip
"""Matcher field → the traits it is read from, first present wins (``a.b`` is field ``b``
of an object trait ``a``)."""


def _field_sql(field: str, names: tuple[str, ...]) -> str:
    picks = []
    for name in names:
        trait, _, inner = name.partition(".")
        path = f"$.{inner}" if inner else "$"
        picks.append(
            f"max(CASE WHEN trait = '{trait}' THEN json_extract_string(value, '{path}') END)"
        )
    return f"nullif(trim(coalesce({', '.join(picks)})), '') AS {field}"


def profile_records(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """One record per live profile with any of the matched traits, plus its ``user_id``
    (the strong identifier the matcher never auto-merges across)."""
    fields = ",\n".join(_field_sql(field, names) for field, names in TRAIT_FIELDS.items())
    traits = sorted({name.partition(".")[0] for names in TRAIT_FIELDS.values() for name in names})
    listed = ", ".join(f"'{t}'" for t in traits)
    return con.sql(
        f"""
        WITH t AS (
            SELECT profile_id, {fields}
            FROM profile_traits WHERE trait IN ({listed})
            GROUP BY profile_id
        ), u AS (
            SELECT profile_id, min(value) AS user_id FROM identifiers
            WHERE namespace = 'user_id' GROUP BY profile_id
        )
        SELECT t.profile_id AS record_id, t.* EXCLUDE (profile_id), u.user_id
        FROM t LEFT JOIN u USING (profile_id)
        ORDER BY record_id
        """
    ).to_arrow_table()


def find_pairs(con: duckdb.DuckDBPyConnection, config: MatchConfig | None = None) -> dict:
    """Match the warehouse's profiles; returns the pairs (profile ids, probability,
    decision, reasons) and the matcher's stats. The matching itself runs on a DuckDB of
    its own, so its working tables never touch the warehouse."""
    from onefold.unify.matching import match_records  # Splink: imported when used

    records = profile_records(con)
    if records.num_rows < 2:
        return {"records": records.num_rows, "pairs": []}
    work = duckdb.connect()
    try:
        result = match_records(work, records, config)
    finally:
        work.close()
    pairs = result.pairs.select(
        ["record_id_l", "record_id_r", "match_probability", "decision", "vetoed_by", "reasons"]
    ).to_pylist()
    return {"records": records.num_rows, "pairs": pairs}
