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
    # No country: "+44…" is E.164 as written, the national number stays digits; the
    # last nine digits agree.
    assert (a["phone"], b["phone"]) == ("+447700900123", "07700900123")
    assert a["phone_tail"] == b["phone_tail"] == "700900123"
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


def test_phones_become_e164_with_the_records_country():
    written = [
        ("+44 (0)7700 900123", "GB"),
        ("07700 900123", "GB"),
        ("0044 7700 900123", "uk"),
        ("(212) 555-0123", "US"),
        ("1-212-555-0123", "US"),
        ("+1 212 555 0123", None),
        ("02 1234 5678", "IT"),  # Italy keeps the leading 0
        ("+39 02 1234 5678", "IT"),
        ("06.12.34.56.78", "FR"),
        ("612 34 56 78", "ES"),
        ("0612345678", None),  # no country: digits only
        ("12-34", "DE"),  # too short
    ]
    rows = _normalise(
        [
            {"record_id": f"{i:02d}", "phone": phone, "country": country}
            for i, (phone, country) in enumerate(written)
        ]
    )
    assert [r["phone"] for r in rows] == [
        "+447700900123",
        "+447700900123",
        "+447700900123",
        "+12125550123",
        "+12125550123",
        "+12125550123",
        "+390212345678",
        "+390212345678",
        "+33612345678",
        "+34612345678",
        "0612345678",
        None,
    ]
    # The French number written without its country agrees on the last nine digits.
    assert rows[8]["phone_tail"] == rows[10]["phone_tail"] == "612345678"


def test_phone_region_default_applies_without_a_country():
    con = duckdb.connect()
    con.register("src", pa.table({"record_id": ["a"], "phone": ["07700 900123"]}))
    sql = normalise_sql("src", column_types(con, "src"), [Field("phone", "phone")], [], "GB")
    assert con.sql(f"SELECT phone FROM ({sql})").fetchall() == [("+447700900123",)]


def test_email_variants_take_one_form():
    emails = [
        "Jane.Doe@Gmail.com",
        " janedoe+shop@gmail.com ",
        "j.a.n.e.doe@googlemail.com",
        "JANE.DOE+news@GMAIL.COM",
    ]
    rows = _normalise([{"record_id": str(i), "email": e} for i, e in enumerate(emails)])
    assert {r["email"] for r in rows} == {"janedoe@gmail.com"}
    # Elsewhere case and +tags go, dots stay (they are part of the address there).
    other = _normalise(
        [
            {"record_id": "a", "email": "Jane.Doe+news@Example.org"},
            {"record_id": "b", "email": "janedoe@example.org"},
        ]
    )
    assert [r["email"] for r in other] == ["jane.doe@example.org", "janedoe@example.org"]
