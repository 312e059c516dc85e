"""Junk values found by frequency: placeholders that many different people share.

Forms and tills fill required fields with whatever passes validation: none@none.com,
test@test.com, 00000000, the shop's own phone number, 1900-01-01, "Test Test". Two
records holding such a value have not shown anything in common; counted as agreement
they would be merged, and each would chain many people together. A list of known
placeholders catches only the usual ones (a shop's own number is on no list), so they
are found by how they spread over the data instead. People are told apart by the
initials of their first and last names, in either order, so that one person's typos,
swapped names or dropped second surname do not make them look like several:

- a contact or identifier value (e-mail, e-mail user name, phone, its last nine digits,
  `id` fields) is junk when at least `junk_min_people` (6) people hold it — no one's
  own address or number is shared that widely, a household's by five at most — or
  when it is on more than `junk_max_records` records;
- a date of birth is junk when it is on more than max(20, 10 × the average number of
  records per date) records held by at least `junk_min_people` people (many people
  share a birthday by chance, but not that many);
- a first and last name is junk when at least `junk_min_people` people (told apart by
  their e-mails and phones) hold it and it is at least 20 times as common as its first
  name and surname would meet by chance ("Test Test", "Max Mustermann"; a common real
  name such as "Maria Garcia" is held by many people too, but about as often as "Maria"
  and "Garcia" meet at random).

Junk values are set to NULL in the working table: they count as missing (no weight, no
blocking). `MatchResult.stats["junk_values"]` lists them with how many records held each.
"""

from __future__ import annotations

import duckdb

from onefold.unify.matching.config import Field, MatchConfig
from onefold.unify.matching.normalise import quote

# Derived columns that go with a value: cleared along with it.
_DERIVED = {"email": ("_user",), "phone": ("_tail",), "date": ("_date",)}
_LISTED = 20  # values listed per column in the stats
# Tells people apart: the initials of first and last name, in either order (so that
# swapped names, typos after the first letter and a dropped second surname do not make
# one person look like several), for records with both names.
_SIGNATURE = (
    "CASE WHEN first_name IS NOT NULL AND last_name IS NOT NULL THEN "
    "least(left(first_name, 1), left(last_name, 1)) || "
    "greatest(left(first_name, 1), left(last_name, 1)) END"
)


def _columns(fields: list[Field]) -> list[tuple[str, str]]:
    """(column, kind) of the working-table columns that are checked for junk."""
    out: list[tuple[str, str]] = []
    for f in fields:
        if f.kind in ("email", "phone", "id", "date"):
            out.append((f.column, f.kind))
        if f.kind == "email":
            out.append((f.column + "_user", "email_user"))
        if f.kind == "phone":
            out.append((f.column + "_tail", "phone_tail"))
    return out


def find_junk(
    con: duckdb.DuckDBPyConnection, work: str, fields: list[Field], config: MatchConfig
) -> dict[str, dict[str, int]]:
    """Set junk values to NULL in table `work`; returns, per column, the junk values found
    (the `_LISTED` most frequent) and their record counts, plus the totals."""
    found: dict[str, dict[str, int]] = {}
    totals: dict[str, int] = {}
    if not config.junk_detection:
        return {}
    for column, kind in _columns(fields):
        c = quote(column)
        spread = f"people >= {int(config.junk_min_people)}"
        if kind == "date":
            rule = f"n > greatest(20, 10 * avg_n) AND {spread}"
        else:
            rule = f"({spread}) OR n > {int(config.junk_max_records)}"
        table = f"{work}_junk"
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {table} AS "
            f"WITH v AS (SELECT {c} AS v, count(*) AS n, count(DISTINCT {_SIGNATURE}) "
            f"AS people FROM {work} WHERE {c} IS NOT NULL GROUP BY 1), "
            f"a AS (SELECT avg(n) AS avg_n FROM v) "
            f"SELECT v, n FROM v, a WHERE {rule}"
        )
        rows = con.execute(
            f"SELECT CAST(v AS VARCHAR), n FROM {table} ORDER BY n DESC, v LIMIT {_LISTED}"
        ).fetchall()
        if rows:
            n_values, n_records = con.execute(f"SELECT count(*), sum(n) FROM {table}").fetchall()[0]
            clear = [column] + [column + s for s in _DERIVED.get(kind, ())]
            if kind == "phone_tail":  # a junk number in any country's writing
                clear.append(column.removesuffix("_tail"))
            sets = ", ".join(f"{quote(x)} = NULL" for x in clear)
            con.execute(f"UPDATE {work} SET {sets} WHERE {c} IN (SELECT v FROM {table})")
            found[column] = {str(v): int(n) for v, n in rows}
            totals[column] = int(n_records)
            totals[column + ":values"] = int(n_values)
        con.execute(f"DROP TABLE IF EXISTS {table}")
    contacts = [f.column for f in fields if f.kind in ("email", "phone")]
    if contacts and any(f.kind == "name" for f in fields):
        names = _junk_names(con, work, contacts, config)
        if names:
            found["name"] = dict(list(names.items())[:_LISTED])
            totals["name"] = sum(names.values())
            totals["name:values"] = len(names)
    return {"values": found, "records": totals} if found else {}


_NAME_COLUMNS = (
    "first_name",
    "last_name",
    "full_name",
    "name_concat",
    "name_tokens",
    "first_name_forms",
)


def _junk_names(
    con: duckdb.DuckDBPyConnection, work: str, contacts: list[str], config: MatchConfig
) -> dict[str, int]:
    """Placeholder names ("Test Test", "Max Mustermann", "Cliente Contado"): a first and
    last name held by at least `junk_min_people` people (told apart by their e-mails and
    phones) and at least 20 times as common as its first name and surname are when
    paired at random. A common real name ("Maria Garcia") is held by many people too, but
    about as often as "Maria" and "Garcia" meet by chance. Their names are cleared."""
    people = "greatest(" + ", ".join(f"count(DISTINCT {quote(c)})" for c in contacts) + ")"
    if len(contacts) == 1:
        people = f"count(DISTINCT {quote(contacts[0])})"
    table = f"{work}_junk_names"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {table} AS "
        f"WITH named AS (SELECT * FROM {work} "
        f"WHERE first_name IS NOT NULL AND last_name IS NOT NULL), "
        f"total AS (SELECT count(*) AS n FROM named), "
        f"f AS (SELECT first_name, count(*) AS nf FROM named GROUP BY 1), "
        f"l AS (SELECT last_name, count(*) AS nl FROM named GROUP BY 1), "
        f"v AS (SELECT first_name, last_name, count(*) AS n, {people} AS people "
        f"FROM named GROUP BY 1, 2 HAVING {people} >= {int(config.junk_min_people)}) "
        f"SELECT v.first_name, v.last_name, v.n FROM v JOIN f USING (first_name) "
        f"JOIN l USING (last_name), total WHERE v.n * total.n >= 20.0 * f.nf * l.nl"
    )
    rows = con.execute(
        f"SELECT first_name || ' ' || last_name, n FROM {table} ORDER BY n DESC, 1"
    ).fetchall()
    if rows:
        sets = ", ".join(f"{quote(c)} = NULL" for c in _NAME_COLUMNS)
        con.execute(
            f"UPDATE {work} SET {sets} WHERE (first_name, last_name) IN "
            f"(SELECT (first_name, last_name) FROM {table})"
        )
    con.execute(f"DROP TABLE {table}")
    return {name: int(n) for name, n in rows}
