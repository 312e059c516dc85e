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


def email_comparison(col: str) -> cl.CustomComparison:
    left, right = _lr(col)
    ul, ur = _lr(col + "_user")
    levels = [
        _null(col),
        _exact(col),
        _level(f"{ul} = {ur}", "same user name, other domain"),
        _level(f"jaro_winkler_similarity({ul}, {ur}) >= 0.88", "similar user name"),
        _else(),
    ]
    return cl.CustomComparison(levels, output_column_name=col)


def phone_comparison(col: str) -> cl.CustomComparison:
    left, right = _lr(col)
    levels = [
        _null(col),
        _exact(col),
        _level(_one_char(left, right), "one digit different"),
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
