"""Splink comparisons, one per field: the levels of agreement a pair can be in.

Each comparison's levels go from most to least specific; Splink learns, per level, how
often true matches (m) and non-matches (u) land there. The levels here are chosen for
profile data: a person's name is one comparison (first, last and full name together, so
that correlated name evidence is not counted twice), nicknames and initials count as a
weaker agreement, and a date with one typo or a year off still counts for something.
"""

from __future__ import annotations

from typing import Any

import splink.comparison_library as cl

from onefold.unify.matching.config import Field
from onefold.unify.matching.normalise import quote


def _level(sql: str, label: str, **extra: Any) -> dict[str, Any]:
    return {"sql_condition": sql, "label_for_charts": label, **extra}


def _lr(col: str) -> tuple[str, str]:
    return quote(col + "_l"), quote(col + "_r")


def _null(col: str) -> dict[str, Any]:
    left, right = _lr(col)
    return _level(f"{left} IS NULL OR {right} IS NULL", "missing", is_null_level=True)


def _exact(col: str, label: str = "exact", tf: bool = True) -> dict[str, Any]:
    left, right = _lr(col)
    extra: dict[str, Any] = {"tf_adjustment_column": col} if tf else {}
    return _level(f"{left} = {right}", label, **extra)


def _one_char(left: str, right: str, n: int = 1) -> str:
    """At most n characters substituted (cheap), or one inserted/deleted when lengths differ."""
    return (
        f"CASE WHEN length({left}) = length({right}) THEN hamming({left}, {right}) <= {n} "
        f"WHEN abs(length({left}) - length({right})) = 1 "
        f"THEN levenshtein({left}, {right}) <= 1 ELSE false END"
    )


def _else() -> dict[str, Any]:
    return _level("ELSE", "different")


def _names_compatible(x: str, y: str) -> str:
    """SQL: two name words that may be one name: equal, similar (Jaro-Winkler ≥ 0.88),
    one a prefix or (from three letters) a part of the other, one typo apart (a letter
    changed, added, dropped or two swapped), or two apart when both have five letters or
    more."""
    return (
        f"({x} = {y} OR jaro_winkler_similarity({x}, {y}) >= 0.88 "
        f"OR starts_with({x}, {y}) OR starts_with({y}, {x}) "
        f"OR (length({y}) >= 3 AND contains({x}, {y})) "
        f"OR (length({x}) >= 3 AND contains({y}, {x})) "
        f"OR damerau_levenshtein({x}, {y}) <= "
        f"CASE WHEN least(length({x}), length({y})) >= 5 THEN 2 ELSE 1 END)"
    )


def first_name_conflict_sql(left: str, right: str) -> str:
    """SQL: the two records' first names conflict — both given and neither compatible
    (`_names_compatible`) nor a known nickname of the other (an initial conflicts with a
    name of another initial), unless the names look swapped: one record's first name
    is compatible with the other's surname and its surname, if any, with the other's
    first name. `left` and `right` are the records' table aliases ("a", "b"), or
    "_l"/"_r" for Splink's pair columns."""

    def col(name: str, side: str) -> str:
        return quote(name + side) if side.startswith("_") else f"{side}.{quote(name)}"

    fl, fr = col("first_name", left), col("first_name", right)
    ll, lr = col("last_name", left), col("last_name", right)
    nl, nr = col("first_name_forms", left), col("first_name_forms", right)
    initials = f"(length({fl}) = 1 OR length({fr}) = 1)"
    differ = (
        f"CASE WHEN {initials} THEN left({fl}, 1) <> left({fr}, 1) "
        f"ELSE NOT {_names_compatible(fl, fr)} AND NOT list_has_any({nl}, {nr}) END"
    )
    swapped = (
        f"coalesce({_names_compatible(ll, fr)} "
        f"AND coalesce({_names_compatible(fl, lr)}, true), false) "
        f"OR coalesce({_names_compatible(lr, fl)} "
        f"AND coalesce({_names_compatible(fr, ll)}, true), false)"
    )
    return f"({fl} IS NOT NULL AND {fr} IS NOT NULL AND ({differ}) AND NOT ({swapped}))"


def date_conflict_sql(column: str, left: str, right: str) -> str:
    """SQL: the two records' dates (normalised column `column`) conflict — both given and
    in none of the date comparison's agreeing levels (not a typo or two, not day and
    month swapped, not within a year, not the same day and month). `left` and `right`
    are table aliases."""
    a, b = f"{left}.{quote(column)}", f"{right}.{quote(column)}"
    da, db = f"{left}.{quote(column + '_date')}", f"{right}.{quote(column + '_date')}"
    return (
        f"({a} IS NOT NULL AND {b} IS NOT NULL "
        f"AND NOT (length({a}) = length({b}) AND hamming({a}, {b}) <= 2) "
        f"AND NOT (substr({a}, 1, 4) = substr({b}, 1, 4) "
        f"AND substr({a}, 6, 2) = substr({b}, 9, 2) AND substr({a}, 9, 2) = substr({b}, 6, 2)) "
        f"AND coalesce(abs(date_diff('day', {da}, {db})) > 366, true) "
        f"AND NOT (substr({a}, 6, 5) = substr({b}, 6, 5) "
        f"AND coalesce(abs(date_diff('day', {da}, {db})) <= 3660, false)))"
    )


def name_comparison() -> cl.CustomComparison:
    fl, fr = _lr("first_name")
    ll, lr = _lr("last_name")
    tl, tr = _lr("name_tokens")
    ful, fur = _lr("full_name")
    nl, nr = _lr("first_name_forms")
    levels = [
        _level(
            f"({fl} IS NULL AND {ll} IS NULL) OR ({fr} IS NULL AND {lr} IS NULL)",
            "missing",
            is_null_level=True,
        ),
        _exact("name_concat", "exact first and last name"),
        _level(f"{fl} = {lr} AND {ll} = {fr}", "first and last name swapped"),
        _level(
            f"{ll} = {lr} AND (jaro_winkler_similarity({fl}, {fr}) >= 0.92 "
            f"OR starts_with({fl}, {fr}) OR starts_with({fr}, {fl}) "
            f"OR (length({fr}) >= 3 AND contains({fl}, {fr})) "
            f"OR (length({fl}) >= 3 AND contains({fr}, {fl})) "
            f"OR list_has_any({nl}, {nr}))",
            "same last name, similar first name, nickname or initial",
        ),
        _level(
            f"(jaro_winkler_similarity({fl}, {fr}) >= 0.88 OR list_has_any({nl}, {nr})) "
            f"AND jaro_winkler_similarity({ll}, {lr}) >= 0.88",
            "similar first (or nick) and last name",
        ),
        _level(
            f"({ll} IS NULL OR {lr} IS NULL) AND jaro_winkler_similarity({ful}, {fur}) >= 0.9",
            "one name only, similar",
        ),
        _level(
            f"{ll} = {lr} AND ({fl} IS NULL OR {fr} IS NULL)",
            "same last name, a first name missing",
            tf_adjustment_column="last_name",
        ),
        _exact("last_name", "same last name, other first name"),
        _exact("first_name", "same first name only"),
        _level(f"len(list_intersect({tl}, {tr})) >= 2", "two name words in common"),
        _level(
            f"len(list_intersect({tl}, {tr})) >= 1 OR jaro_winkler_similarity({ll}, {lr}) >= 0.92",
            "one name word in common or similar last name",
        ),
        _else(),
    ]
    return cl.CustomComparison(levels, output_column_name="name")


def date_comparison(col: str) -> cl.CustomComparison:
    left, right = _lr(col)
    dl, dr = _lr(col + "_date")
    levels = [
        _null(col),
        _exact(col, "exact", tf=False),
        _level(
            f"length({left}) = length({right}) AND hamming({left}, {right}) <= 1",
            "one character different",
        ),
        _level(
            f"substr({left}, 1, 4) = substr({right}, 1, 4) "
            f"AND substr({left}, 6, 2) = substr({right}, 9, 2) "
            f"AND substr({left}, 9, 2) = substr({right}, 6, 2)",
            "day and month swapped",
        ),
        _level(f"abs(date_diff('day', {dl}, {dr})) <= 31", "within a month"),
        _level(f"abs(date_diff('day', {dl}, {dr})) <= 366", "within a year"),
        _level(
            f"length({left}) = length({right}) AND hamming({left}, {right}) <= 2",
            "two characters different",
        ),
        _level(
            f"substr({left}, 6, 5) = substr({right}, 6, 5) "
            f"AND abs(date_diff('day', {dl}, {dr})) <= 3660",
            "same day and month, years apart",
        ),
        _else(),
    ]
    return cl.CustomComparison(levels, output_column_name=col)


def postcode_comparison(col: str) -> cl.CustomComparison:
    left, right = _lr(col)
    dl, dr = _lr(col + "_district")
    levels = [
        _null(col),
        _exact(col),
        _level(_one_char(left, right), "one character different"),
        _level(f"{dl} = {dr}", "same district"),
        _else(),
    ]
    return cl.CustomComparison(levels, output_column_name=col)


def _null_or_junk(col: str) -> dict[str, Any]:
    left, right = _lr(col)
    return _level(
        f"{left} IS NULL OR {right} IS NULL", "missing (or a junk value)", is_null_level=True
    )


def email_comparison(col: str) -> cl.CustomComparison:
    """Exact agreement is not adjusted for how common the address is: junk addresses are
    removed before (junk.py), and any other address belongs to one person or household,
    so its frequency mostly counts that person's own records. Its weight comes from the
    share of matches among pairs sharing an address (training.py)."""
    left, right = _lr(col)
    ul, ur = _lr(col + "_user")
    levels = [
        _null_or_junk(col),
        _exact(col, tf=False),
        _level(f"{ul} = {ur}", "same user name, other domain"),
        _level(f"jaro_winkler_similarity({ul}, {ur}) >= 0.88", "similar user name"),
        _else(),
    ]
    return cl.CustomComparison(levels, output_column_name=col)


def phone_comparison(col: str) -> cl.CustomComparison:
    """E.164 equal; the last nine digits equal (one number's country unknown, or another
    prefix); one digit different or two swapped. Not frequency-adjusted, like e-mail."""
    left, right = _lr(col)
    tl, tr = _lr(col + "_tail")
    levels = [
        _null_or_junk(col),
        _exact(col, tf=False),
        _level(f"{tl} = {tr}", "same last nine digits"),
        _level(
            f"length({tl}) = length({tr}) AND damerau_levenshtein({tl}, {tr}) <= 1",
            "one digit different or two swapped",
        ),
        _else(),
    ]
    return cl.CustomComparison(levels, output_column_name=col)


def text_comparison(col: str, threshold: float = 0.9) -> cl.CustomComparison:
    """Streets and cities: exact, then similar spelling."""
    left, right = _lr(col)
    levels = [
        _null(col),
        _exact(col),
        _level(f"jaro_winkler_similarity({left}, {right}) >= {threshold}", "similar"),
        _else(),
    ]
    return cl.CustomComparison(levels, output_column_name=col)


def id_comparison(col: str) -> cl.CustomComparison:
    left, right = _lr(col)
    levels = [
        _null(col),
        _exact(col, tf=False),
        _level(_one_char(left, right), "one character different"),
        _level(_one_char(left, right, 2), "two characters different"),
        _else(),
    ]
    return cl.CustomComparison(levels, output_column_name=col)


def exact_comparison(col: str) -> cl.CustomComparison:
    return cl.CustomComparison([_null(col), _exact(col), _else()], output_column_name=col)


def address_comparison(
    street: str | None, postcode: str | None, city: str | None
) -> cl.CustomComparison:
    """Street, postcode and city as one comparison.

    They describe one fact (where the person lives): compared separately, two members of
    a household would get three large weights for it (street, postcode and city each
    "rare"), more than enough to outweigh their different first names.
    """
    present = [c for c in (street, postcode, city) if c is not None]
    null = " AND ".join(f"({_lr(c)[0]} IS NULL OR {_lr(c)[1]} IS NULL)" for c in present)
    levels: list[dict[str, Any]] = [_level(null, "missing", is_null_level=True)]
    s_eq = s_sim = p_eq = p_near = c_eq = c_sim = None
    if street:
        sl, sr = _lr(street)
        s_eq = f"{sl} = {sr}"
        s_sim = f"jaro_winkler_similarity({sl}, {sr}) >= 0.9"
    if postcode:
        pl, pr = _lr(postcode)
        dl, dr = _lr(postcode + "_district")
        p_eq = f"{pl} = {pr}"
        p_near = f"({_one_char(pl, pr)} OR {dl} = {dr})"
    if city:
        cl_, cr = _lr(city)
        c_eq = f"{cl_} = {cr}"
        c_sim = f"jaro_winkler_similarity({cl_}, {cr}) >= 0.9"
    if s_eq and p_eq:
        levels.append(
            _level(f"{s_eq} AND {p_eq}", "same street and postcode", tf_adjustment_column=street)
        )
    if s_eq and (p_near or c_eq):
        near = " OR ".join(x for x in (p_near, c_eq) if x)
        levels.append(_level(f"{s_eq} AND ({near})", "same street, postcode or city close"))
    if s_sim and (p_eq or c_eq):
        place = " OR ".join(x for x in (p_eq, c_eq) if x)
        levels.append(_level(f"{s_sim} AND ({place})", "similar street, same postcode or city"))
    if s_eq:
        levels.append(_level(s_eq, "same street only", tf_adjustment_column=street))
    if p_eq and c_eq:
        levels.append(
            _level(f"{p_eq} AND {c_eq}", "same postcode and city", tf_adjustment_column=postcode)
        )
    if p_eq:
        levels.append(_level(p_eq, "same postcode", tf_adjustment_column=postcode))
    if p_near:
        levels.append(_level(p_near, "similar postcode or same district"))
    if c_eq:
        levels.append(_level(c_eq, "same city", tf_adjustment_column=city))
    if c_sim:
        levels.append(_level(c_sim, "similar city"))
    levels.append(_else())
    return cl.CustomComparison(levels, output_column_name="address")


def build_comparisons(fields: list[Field]) -> list[cl.CustomComparison]:
    """One comparison per field, except that the first street, postcode and city fields
    form one "address" comparison."""
    address = {
        kind: next((f.column for f in fields if f.kind == kind), None)
        for kind in ("street", "postcode", "city")
    }
    out = []
    address_done = False
    for f in fields:
        if f.kind in address and address[f.kind] == f.column:
            if not address_done:
                out.append(
                    address_comparison(address["street"], address["postcode"], address["city"])
                )
                address_done = True
        elif f.kind == "name":
            out.append(name_comparison())
        elif f.kind == "date":
            out.append(date_comparison(f.column))
        elif f.kind == "postcode":
            out.append(postcode_comparison(f.column))
        elif f.kind == "email":
            out.append(email_comparison(f.column))
        elif f.kind == "phone":
            out.append(phone_comparison(f.column))
        elif f.kind in ("street", "city"):
            out.append(text_comparison(f.column))
        elif f.kind == "id":
            out.append(id_comparison(f.column))
        else:
            out.append(exact_comparison(f.column))
    return out
