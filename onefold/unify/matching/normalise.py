"""Normalisation of profile attributes before matching, as one DuckDB projection.

Names lose case, accents and punctuation; emails take a canonical form (no "+tag", no dots
in Gmail local parts); phones become E.164 ("+447700900123") using the record's country
(or `MatchConfig.phone_region`) for numbers written nationally, plus their last nine
digits for numbers whose country is unknown; dates become "YYYY-MM-DD" text (a typo'd
date stays text, so it can still be compared character by character); postcodes get a
district (the outward code, or all but the last character).
"""

from __future__ import annotations

import functools
import re

import duckdb

from onefold.unify.matching.config import Field
from onefold.unify.matching.nicknames import sql_map


def quote(identifier: str) -> str:
    """A SQL identifier, double-quoted."""
    return '"' + identifier.replace('"', '""') + '"'


def _text(expr: str) -> str:
    """Lower-case ASCII text with single spaces, or NULL when nothing is left."""
    return (
        "nullif(trim(regexp_replace(regexp_replace(regexp_replace("
        f"lower(strip_accents(replace(CAST({expr} AS VARCHAR), 'ß', 'ss'))), '[''’`]', '', 'g'), "
        "'[^a-z0-9@.+ ]', ' ', 'g'), '\\s+', ' ', 'g')), '')"
    )


def _name(expr: str) -> str:
    """A name: as `_text`, with no dots either ("j.f." → "j f")."""
    return (
        "nullif(trim(regexp_replace(regexp_replace(regexp_replace("
        f"lower(strip_accents(replace(CAST({expr} AS VARCHAR), 'ß', 'ss'))), '[''’`]', '', 'g'), "
        "'[^a-z0-9 ]', ' ', 'g'), '\\s+', ' ', 'g')), '')"
    )


def _email(expr: str) -> str:
    local = f"split_part(lower(trim(CAST({expr} AS VARCHAR))), '@', 1)"
    domain = f"split_part(lower(trim(CAST({expr} AS VARCHAR))), '@', 2)"
    domain = (
        f"(CASE WHEN starts_with({domain}, 'googlemail.') "
        f"THEN 'gmail.' || split_part({domain}, '.', -1) ELSE {domain} END)"
    )
    local = f"split_part({local}, '+', 1)"
    # Gmail ignores dots in the user name (gmail.com, or gmail.<anything>).
    local = (
        f"(CASE WHEN starts_with({domain}, 'gmail.') THEN replace({local}, '.', '') "
        f"ELSE {local} END)"
    )
    return (
        f"(CASE WHEN strpos(CAST({expr} AS VARCHAR), '@') > 1 THEN {local} || '@' || {domain} END)"
    )


# Country names that are not ISO 3166 codes but common in country columns.
_COUNTRY_ALIASES = {"UK": "GB", "EL": "GR"}


@functools.cache
def region_map_sql() -> str:
    """A DuckDB MAP literal: ISO region code → [country calling code, national (trunk)
    prefix, international call prefix], from phonenumbers' metadata ("GB" → ["44", "0",
    "00"], "IT" → ["39", "", "00"], "US" → ["1", "1", "011"])."""
    import phonenumbers
    from phonenumbers.phonemetadata import PhoneMetadata

    items = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        meta = PhoneMetadata.metadata_for_region(region)
        if meta is None:
            continue
        national = meta.national_prefix or ""
        intl = meta.international_prefix or "00"
        if not re.fullmatch(r"\d+", intl):  # a pattern such as 0[09]: the usual one
            intl = "00"
        code = phonenumbers.country_code_for_region(region)
        items.append(f"'{region}': ['{code}', '{national}', '{intl}']")
    return f"MAP {{{', '.join(items)}}}"


def region_sql(country: str | None, default: str | None) -> str:
    """The record's phone region: its country as an ISO code when it is one, else the
    default region (or NULL)."""
    fallback = "NULL::VARCHAR" if default is None else _sql_str(default.upper())
    if country is None:
        return fallback
    code = f"upper(trim(CAST({country} AS VARCHAR)))"
    aliases = " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in _COUNTRY_ALIASES.items())
    code = f"(CASE {code} {aliases} ELSE {code} END)"
    known = f"CASE WHEN ({region_map_sql()})[{code}] IS NOT NULL THEN {code} END"
    return f"coalesce({known}, {fallback})"


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _phone_helpers(column: str) -> list[str]:
    """Helper columns for `_phone` (computed once per record in a subquery): the digits,
    whether the number starts with "+"."""
    raw = f"replace(CAST({quote(column)} AS VARCHAR), '(0)', '')"
    return [
        f"regexp_replace({raw}, '[^0-9]', '', 'g') AS {quote('__d_' + column)}",
        f"starts_with(ltrim({raw}), '+') AS {quote('__plus_' + column)}",
    ]


def _phone(column: str) -> str:
    """E.164 ("+4930123456") where the number says its country ("+", or the region's
    international prefix) or the record's region is known; else its digits (at least 6).

    Reads the helper columns of `_phone_helpers` and `__ri` (the region's [calling code,
    national prefix, international prefix], or NULL).
    """
    d, plus, ri = quote("__d_" + column), quote("__plus_" + column), "__ri"
    e164 = (
        f"CASE WHEN {plus} THEN {d} "
        f"WHEN {ri} IS NOT NULL AND starts_with({d}, {ri}[3]) "
        f"THEN substr({d}, length({ri}[3]) + 1) "
        f"WHEN {ri} IS NULL AND starts_with({d}, '00') THEN substr({d}, 3) "
        f"WHEN {ri} IS NOT NULL AND {ri}[2] <> '' AND starts_with({d}, {ri}[2]) "
        f"THEN {ri}[1] || substr({d}, length({ri}[2]) + 1) "
        f"WHEN {ri} IS NOT NULL THEN {ri}[1] || {d} END"
    )
    return (
        f"CASE WHEN regexp_full_match({e164}, '[1-9][0-9]{{6,14}}') THEN '+' || ({e164}) "
        f"WHEN length({d}) >= 6 THEN {d} END"
    )


def _date(expr: str, type_name: str) -> str:
    if type_name.startswith(("DATE", "TIMESTAMP")):
        return f"strftime(CAST({expr} AS DATE), '%Y-%m-%d')"
    s = f"trim(CAST({expr} AS VARCHAR))"
    dmy = f"regexp_extract({s}, '^(\\d{{1,2}})[/.-](\\d{{1,2}})[/.-](\\d{{4}})$', ['d', 'm', 'y'])"
    return (
        f"nullif(CASE WHEN regexp_full_match({s}, '\\d{{8}}') "
        f"THEN substr({s}, 1, 4) || '-' || substr({s}, 5, 2) || '-' || substr({s}, 7, 2) "
        f"WHEN regexp_full_match({s}, '\\d{{1,2}}[/.-]\\d{{1,2}}[/.-]\\d{{4}}') "
        f"THEN {dmy}.y || '-' || lpad({dmy}.m, 2, '0') || '-' || lpad({dmy}.d, 2, '0') "
        f"ELSE {s} END, '')"
    )


def _postcode(expr: str) -> str:
    return _text(expr)


def _gender(expr: str) -> str:
    g = _text(expr)
    return (
        f"(CASE WHEN {g} IN ('m', 'male', 'man', 'mr') THEN 'm' "
        f"WHEN {g} IN ('f', 'female', 'woman', 'mrs', 'ms') THEN 'f' ELSE {g} END)"
    )


def column_types(con: duckdb.DuckDBPyConnection, relation: str) -> dict[str, str]:
    rows = con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()
    return {row[0]: row[1] for row in rows}


def normalise_sql(
    source: str,
    types: dict[str, str],
    fields: list[Field],
    keep: list[str],
    phone_region: str | None = None,
) -> str:
    """SELECT producing the working table: ids plus normalised matching columns.

    unique_id numbers the records 0, 1, … in record_id order (integers join faster than
    the callers' ids); record_id is kept as given. Always present too: first_name,
    last_name, full_name, name_concat, name_tokens
    (NULL where the records have no name at all), one column per field, and the `keep`
    columns (strong identifiers that are not fields) as trimmed text.
    """
    has = set(types)
    cols: list[str] = [f"{quote('record_id')} AS record_id"]

    first = _name(quote("first_name")) if "first_name" in has else "NULL::VARCHAR"
    last = _name(quote("last_name")) if "last_name" in has else "NULL::VARCHAR"
    full = _name(quote("full_name")) if "full_name" in has else "NULL::VARCHAR"
    # A missing first/last name is taken from the full name's first/last word.
    first_x = f"coalesce({first}, split_part({full}, ' ', 1))"
    last_x = (
        f"coalesce({last}, CASE WHEN strpos({full}, ' ') > 0 "
        f"THEN string_split({full}, ' ')[-1] END)"
    )
    cols += [
        f"{first_x} AS first_name",
        f"{last_x} AS last_name",
        f"coalesce({full}, nullif(concat_ws(' ', {first}, {last}), '')) AS full_name",
    ]

    for f in fields:
        if f.kind == "name":
            continue
        c = quote(f.column)
        kind = f.kind
        if kind == "date":
            expr = _date(c, types.get(f.column, "VARCHAR"))
        elif kind == "email":
            expr = _email(c)
        elif kind == "phone":
            expr = _phone(f.column)
        elif kind == "postcode":
            expr = _postcode(c)
        elif kind == "id":
            expr = _text(c).replace("'[^a-z0-9@.+ ]', ' '", "'[^a-z0-9]', ''")
        elif f.column == "gender":
            expr = _gender(c)
        else:
            expr = _text(c)
        cols.append(f"{expr} AS {quote(f.column)}")
    for sid in keep:
        if sid in has:
            cols.append(f"nullif(trim(CAST({quote(sid)} AS VARCHAR)), '') AS {quote(sid)}")
    phones = [f.column for f in fields if f.kind == "phone"]
    helpers = [h for col in phones for h in _phone_helpers(col)]
    if phones:
        country = quote("country") if "country" in has else None
        helpers.append(f"({region_map_sql()})[{region_sql(country, phone_region)}] AS __ri")
        source = f"(SELECT *, {', '.join(helpers)} FROM {source})"
    inner = f"SELECT {', '.join(cols)} FROM {source}"
    derived = [
        "CAST(row_number() OVER (ORDER BY record_id) - 1 AS BIGINT) AS unique_id",
        "*",
        "CASE WHEN first_name IS NOT NULL AND last_name IS NOT NULL "
        "THEN first_name || ' ' || last_name END AS name_concat",
        "list_distinct(list_filter(string_split(concat_ws(' ', full_name, first_name, "
        "last_name), ' '), lambda t: length(t) >= 2)) AS name_tokens",
        # The first name and the formal names it may be short for (bob → robert).
        f"CASE WHEN first_name IS NOT NULL THEN list_concat([first_name], "
        f"coalesce(({sql_map()})[first_name], [])) END AS first_name_forms",
    ]
    postcodes = [f.column for f in fields if f.kind == "postcode"]
    for pc in postcodes:
        q = quote(pc)
        derived.append(
            f"CASE WHEN strpos({q}, ' ') > 0 THEN split_part({q}, ' ', 1) "
            f"WHEN length({q}) > 2 THEN substr({q}, 1, length({q}) - 1) END "
            f"AS {quote(pc + '_district')}"
        )
    for dc in [f.column for f in fields if f.kind == "date"]:
        derived.append(
            f"CAST(try_strptime({quote(dc)}, '%Y-%m-%d') AS DATE) AS {quote(dc + '_date')}"
        )
    for ph in phones:
        # The last nine digits: agree whatever the country prefix, or where it is unknown.
        derived.append(
            f"right(regexp_replace({quote(ph)}, '[^0-9]', '', 'g'), 9) AS {quote(ph + '_tail')}"
        )
    emails = [f.column for f in fields if f.kind == "email"]
    for em in emails:
        derived.append(f"split_part({quote(em)}, '@', 1) AS {quote(em + '_user')}")
    return f"SELECT {', '.join(derived)} FROM ({inner})"
