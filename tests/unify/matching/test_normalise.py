"""Normalisation of names, e-mails, phones, dates and postcodes."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from onefold.unify.matching.config import Field
from onefold.unify.matching.normalise import column_types, normalise_sql

FIELDS = [
    Field("name", "name"),
    Field("email", "email"),
    Field("phone", "phone"),
    Field("birth_date", "date"),
    Field("postcode", "postcode"),
    Field("gender", "exact"),
]


def _normalise(rows: list[dict]) -> list[dict]:
    con = duckdb.connect()
    con.register("src", pa.Table.from_pylist(rows))
    types = column_types(con, "src")
    fields = [f for f in FIELDS if f.kind == "name" or f.column in types]
    sql = normalise_sql("src", types, fields, [])
    return con.sql(f"SELECT * FROM ({sql}) ORDER BY unique_id").to_arrow_table().to_pylist()


def test_values_take_a_canonical_form():
    rows = _normalise(
        [
            {
                "record_id": "a",
                "first_name": " José-María ",
                "last_name": "O'Brien",
                "full_name": None,
                "email": "Jane.Doe+news@GoogleMail.com",
                "phone": "+44 7700 900123",
                "birth_date": "1980-02-03",
                "postcode": "SW1A  1AA",
                "gender": "Female",
            },
            {
                "record_id": "b",
                "first_name": None,
                "last_name": None,
                "full_name": "Müller, Hans",
                "email": "jane.doe@example.com",
                "phone": "07700-900123",
                "birth_date": "03/02/1980",
                "postcode": "2612",
                "gender": "M",
            },
        ]
    )
    a, b = rows
    assert (a["first_name"], a["last_name"]) == ("jose maria", "obrien")
    assert a["full_name"] == "jose maria obrien"
    assert a["email"] == "janedoe@gmail.com" and a["email_user"] == "janedoe"
    assert b["email"] == "jane.doe@example.com"  # dots matter outside Gmail
    assert a["phone"] == b["phone"] == "700900123"
    assert a["birth_date"] == b["birth_date"] == "1980-02-03"
    assert str(a["birth_date_date"]) == "1980-02-03"
    assert a["postcode"] == "sw1a 1aa" and a["postcode_district"] == "sw1a"
    assert b["postcode_district"] == "261"
    assert (a["gender"], b["gender"]) == ("f", "m")
    # A full name alone gives the first and last name.
    assert (b["first_name"], b["last_name"]) == ("muller", "hans")
    assert set(a["name_tokens"]) == {"jose", "maria", "obrien"}


def test_typos_in_dates_stay_comparable():
    rows = _normalise(
        [{"record_id": "a", "birth_date": "19801403"}, {"record_id": "b", "birth_date": ""}]
    )
    assert rows[0]["birth_date"] == "1980-14-03" and rows[0]["birth_date_date"] is None
    assert rows[1]["birth_date"] is None
