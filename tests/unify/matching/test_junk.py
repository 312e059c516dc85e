"""Junk values are found by how many people share them, not by a list."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from onefold.unify.matching import MatchConfig
from onefold.unify.matching.config import Field
from onefold.unify.matching.junk import find_junk
from onefold.unify.matching.normalise import column_types, normalise_sql

FIELDS = [
    Field("name", "name"),
    Field("email", "email"),
    Field("phone", "phone"),
    Field("birth_date", "date"),
]
FIRST = ["anna", "ben", "carla", "dirk", "eva", "femke", "gus", "hana", "ivo", "jana"]
LAST = ["kuiper", "lopez", "meyer", "novak", "olsen", "pires", "quinn", "ruiz", "smit", "tran"]


def _records() -> list[dict]:
    rows = []
    for i in range(25):
        first, last = FIRST[i % 10], LAST[(i + i // 10) % 10]
        for j in range(3):  # each person: three records, own e-mail and phone
            rows.append(
                {
                    "record_id": f"p{i}-{j}",
                    "first_name": first,
                    "last_name": last,
                    "email": f"{first}.{last}{i}@mail.example",
                    "phone": f"+3161234{i:04d}",
                    "birth_date": f"19{50 + i}-0{j + 1}-1{i % 9}",
                }
            )
        # ... and one record at the shop's till, where the cashier typed placeholders
        rows.append(
            {
                "record_id": f"till-{i}",
                "first_name": first,
                "last_name": last,
                "email": "none@none.com" if i % 2 else " NONE@none.com",
                "phone": "+31 20 555 0100",  # the shop's own number: on no list
                "birth_date": "1900-01-01",
            }
        )
    # A household: two people sharing an e-mail and a landline is not junk.
    for k, first in enumerate(["wim", "xandra"]):
        rows.append(
            {
                "record_id": f"h{k}",
                "first_name": first,
                "last_name": "de vries",
                "email": "fam.devries@mail.example",
                "phone": "+31 70 123 4567",
                "birth_date": f"196{k}-05-05",
            }
        )
    return rows


def _work(rows: list[dict]) -> tuple[duckdb.DuckDBPyConnection, dict]:
    con = duckdb.connect()
    con.register("src", pa.Table.from_pylist(rows))
    sql = normalise_sql("src", column_types(con, "src"), FIELDS, [])
    con.execute(f"CREATE TABLE work AS {sql}")
    found = find_junk(con, "work", FIELDS, MatchConfig())
    return con, found


def test_values_shared_by_many_people_are_junk_and_cleared():
    con, found = _work(_records())
    values = found["values"]
    assert values["email"] == {"none@none.com": 25}
    assert values["phone"] == {"+31205550100": 25}
    assert values["birth_date"] == {"1900-01-01": 25}
    # Cleared: they count as missing, and so generate no blocking pairs either.
    left = con.execute(
        "SELECT count(*) FROM work WHERE record_id LIKE 'till-%' "
        "AND (email IS NOT NULL OR email_user IS NOT NULL OR phone IS NOT NULL "
        "OR birth_date IS NOT NULL)"
    ).fetchall()[0][0]
    assert left == 0
    # A person's own values and a household's shared ones are kept.
    kept = con.execute(
        "SELECT count(*) FROM work WHERE record_id NOT LIKE 'till-%' "
        "AND email IS NOT NULL AND phone IS NOT NULL"
    ).fetchall()[0][0]
    assert kept == 77


def test_few_people_sharing_a_value_is_not_junk():
    rows = [r for r in _records() if not r["record_id"].startswith("till-")]
    rows += [
        dict(r, email="none@none.com", record_id=f"t{i}")
        for i, r in enumerate(rows[:15:3])  # five people
    ]
    _, found = _work(rows)
    assert "email" not in found.get("values", {})


def test_placeholder_names_are_junk_but_common_names_are_not():
    rows = []
    for i in range(8):  # "Test Test" typed in for eight different customers
        rows.append(
            {
                "record_id": f"t{i}",
                "first_name": "Test",
                "last_name": "Test",
                "email": f"someone{i}@mail.example",
                "phone": None,
                "birth_date": None,
            }
        )
    firsts = ["maria", "jose", "ana", "juan"]
    lasts = ["garcia", "lopez", "perez", "sanchez"]
    for i in range(400):  # common names, each held by many people
        rows.append(
            {
                "record_id": f"c{i}",
                "first_name": firsts[i % 4],
                "last_name": lasts[(i // 4) % 4],
                "email": f"customer{i}@mail.example",
                "phone": None,
                "birth_date": None,
            }
        )
    con, found = _work(rows)
    assert found["values"]["name"] == {"test test": 8}
    cleared = con.execute(
        "SELECT count(*) FROM work WHERE first_name IS NULL AND last_name IS NULL "
        "AND name_tokens IS NULL"
    ).fetchall()[0][0]
    assert cleared == 8
