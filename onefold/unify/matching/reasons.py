"""Reasons: per field, the agreement level a pair reached and the weight it added.

A pair's match weight is the prior's weight plus one weight per field (log2 of how much
more likely that level is among matches than among non-matches, adjusted for how common
the value is). The reasons JSON lists them, e.g.
`{"name": {"level": "exact first and last name", "weight": 14.2}, "birth_date": {...}}`.
"""

from __future__ import annotations

import json

from splink import Linker

from onefold.unify.matching.normalise import quote


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def reasons_sql(linker: Linker, available: set[str]) -> str:
    """A SQL expression (VARCHAR JSON) over a predictions table's gamma_/mw_ columns."""
    parts = []
    for comparison in linker._settings_obj.comparisons:
        name = comparison.output_column_name
        gamma = quote(comparison._gamma_column_name)
        whens = " ".join(
            f"WHEN {level.comparison_vector_value} THEN {_sql_string(level.label_for_charts)}"
            for level in comparison.comparison_levels
        )
        weight = quote(comparison._mw_column_name)
        tf = comparison._mw_tf_adj_column_name
        if tf in available:
            weight = f"{weight} + coalesce({quote(tf)}, 0)"
        parts.append(
            f"{_sql_string(name)}, json_object('level', CASE {gamma} {whens} END, "
            f"'weight', round({weight}, 2))"
        )
    return f"CAST(json_object({', '.join(parts)}) AS VARCHAR)"


def model_description(linker: Linker) -> dict:
    """The trained model, per field and level: m, u and the weight of agreeing there."""
    out: dict = {}
    for comparison in linker._settings_obj.comparisons:
        levels = []
        for level in comparison.comparison_levels:
            if level.is_null_level:
                continue
            levels.append(
                {
                    "level": level.label_for_charts,
                    "m": level.m_probability,
                    "u": level.u_probability,
                    "weight": round(level._log2_bayes_factor, 3),
                }
            )
        out[comparison.output_column_name] = levels
    return json.loads(json.dumps(out, default=str))
