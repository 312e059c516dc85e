"""Prediction: score candidate pairs with the trained model, apply vetoes, keep reasons."""

from __future__ import annotations

import math

import duckdb
from splink import DuckDBAPI, Linker

from onefold.unify.matching.calibration import Calibration
from onefold.unify.matching.normalise import column_types, quote
from onefold.unify.matching.reasons import reasons_sql


def veto_sql(strong: list[str], guards: list[tuple[str, str]] | None = None) -> str:
    """The first strong identifier on which both records (a, b) have a value and differ,
    else the first guard (name, condition over a and b) whose condition holds."""
    cases = [
        f"WHEN a.{quote(s)} IS NOT NULL AND b.{quote(s)} IS NOT NULL "
        f"AND a.{quote(s)} <> b.{quote(s)} THEN '{s}'"
        for s in strong
    ]
    cases += [f"WHEN {cond} THEN '{name}'" for name, cond in guards or []]
    if not cases:
        return "CAST(NULL AS VARCHAR)"
    return f"CASE {' '.join(cases)} END"


def score_labelled(
    con: duckdb.DuckDBPyConnection,
    linker: Linker,
    db_api: DuckDBAPI,
    labels: str,
) -> list[tuple[float, float]]:
    """(match weight, label) of each labelled pair (table `labels`: l, r, y; l < r)."""
    pairs = labels + "_pairs"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {pairs} AS "
        f"SELECT 'labels' AS match_key, l AS join_key_l, r AS join_key_r FROM {labels}"
    )
    linker.table_management.register_blocked_pairs_for_predict(db_api.register(pairs))
    scored = linker.inference.predict(warning_mode="never")
    rows = con.execute(
        f"SELECT s.match_weight, x.y FROM {scored.physical_name} s JOIN {labels} x "
        f"ON s.unique_id_l = x.l AND s.unique_id_r = x.r"
    ).fetchall()
    scored.drop_table_from_database_and_remove_from_cache()
    con.execute(f"DROP TABLE {pairs}")
    return [(float(w), float(y)) for w, y in rows]


def score_candidates(
    con: duckdb.DuckDBPyConnection,
    linker: Linker,
    db_api: DuckDBAPI,
    candidates: str,
    work: str,
    strong: list[str],
    calibration: Calibration,
    review_low: float,
    out: str,
    guards: list[tuple[str, str]] | None = None,
) -> None:
    """Create `out`: unique_id_l, unique_id_r, match_probability, match_weight, vetoed_by,
    reasons — for every candidate pair whose (calibrated) probability is ≥ review_low."""
    linker.table_management.register_blocked_pairs_for_predict(db_api.register(candidates))
    logit_low = math.log(review_low / (1 - review_low)) if review_low < 1 else 700.0
    weight_low = (logit_low - calibration.b) / (calibration.a * math.log(2))
    predictions = linker.inference.predict(
        threshold_match_weight=weight_low - 1e-9, warning_mode="never"
    )
    pred = predictions.physical_name
    identity = (calibration.a, calibration.b) == (1.0, 0.0)
    prob = "p.match_probability" if identity else calibration.sql("p.match_weight")
    needs_join = bool(strong) or bool(guards)
    joins = (
        f"JOIN {work} a ON a.unique_id = p.unique_id_l JOIN {work} b ON b.unique_id = p.unique_id_r"
        if needs_join
        else ""
    )
    con.execute(
        f"CREATE TEMP TABLE {out} AS SELECT * FROM ("
        f"SELECT p.unique_id_l, p.unique_id_r, {prob} AS match_probability, "
        f"p.match_weight, {veto_sql(strong, guards)} AS vetoed_by, "
        f"{reasons_sql(linker, set(column_types(con, pred)))} AS reasons "
        f"FROM {pred} p {joins}) WHERE match_probability >= {review_low!r}"
    )
    predictions.drop_table_from_database_and_remove_from_cache()
