"""Training without labels: the prior, then u by random sampling, then m by EM.

1. u (how often non-matches agree at each level) comes from random pairs, almost all of
   which are non-matches.
2. m (how often matches agree at each level) comes from expectation maximisation, twice:
   once on pairs sharing a name (which trains every other field) and once on pairs
   sharing another attribute (which trains the name).
3. The prior (how likely two random records are the same person) comes from the EM
   sessions themselves (see `_prior_and_u_correction`): nothing has to be guessed,
   unlike Splink's deterministic-rules estimate, which divides by a recall the user
   must supply. Then u is corrected for the matches hidden among the random pairs.
   Without any EM session the prior comes from EM over the candidate pairs instead.
"""

from __future__ import annotations

import logging
import math

import duckdb
import numpy as np
from splink import DuckDBAPI, Linker, SettingsCreator, block_on

from onefold.unify.matching.comparisons import build_comparisons
from onefold.unify.matching.config import Field, MatchConfig
from onefold.unify.matching.normalise import quote

log = logging.getLogger(__name__)


def make_linker(db_api: DuckDBAPI, work: str, fields: list[Field], prior: float) -> Linker:
    settings = SettingsCreator(
        link_type="dedupe_only",
        comparisons=build_comparisons(fields),
        probability_two_random_records_match=prior,
        retain_matching_columns=True,
        retain_intermediate_calculation_columns=True,
        max_iterations=25,
        em_convergence=0.0001,
    )
    return Linker(db_api.register(work), settings)


def _em_rules(fields: list[Field]) -> list[tuple[object, str, str]]:
    """Two EM sessions whose blocking columns differ, so every comparison gets trained.

    Each: (blocking rule, the comparison it blocks on, that comparison's level that the
    blocking rule amounts to) — the last two turn the session's share of matches into the
    global prior.
    """
    kinds = {f.kind: f.column for f in reversed(fields)}
    rules: list[tuple[object, str, str]] = []
    if "name" in kinds:
        rules.append((block_on("first_name", "last_name"), "name", "exact first and last name"))
    for kind in ("date", "postcode", "email", "phone", "id", "city"):
        if kind in kinds:
            rules.append((block_on(quote(kinds[kind])), kinds[kind], "exact"))
            break
    return rules


# EM can drive m of a level it never saw among matches to ~0, which would make that level
# an absolute veto (a weight of -30 for a date with one typo): no level is that certain.
M_FLOOR = 1e-4


def _floor_m(linker: Linker, floor: float) -> None:
    for c in linker._settings_obj.comparisons:
        for level in c.comparison_levels:
            if not level.is_null_level and level.m_probability is not None:
                level.m_probability = max(level.m_probability, floor)


def _round(x: float, digits: int = 9) -> float:
    return float(f"{x:.{digits}g}")


def _round_parameters(linker: Linker) -> None:
    """Round m, u and the prior to 9 significant digits.

    DuckDB sums in parallel, so EM's sums differ between runs in their last bits; rounded,
    the same input gives the same probabilities, bit for bit, and so the same merges.
    """
    settings = linker._settings_obj
    settings._probability_two_random_records_match = _round(
        settings._probability_two_random_records_match
    )
    for c in settings.comparisons:
        for level in c.comparison_levels:
            if level.is_null_level:
                continue
            if level.m_probability is not None:
                level.m_probability = _round(level.m_probability)
            if level.u_probability is not None:
                level.u_probability = _round(level.u_probability)


def _geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def _prior_and_u_correction(linker: Linker, sessions: list) -> list[float]:
    """The prior from the EM sessions; then u corrected for the matches among random pairs.

    A session blocked on exact agreement on one field estimates λ_b, the share of matches
    among pairs that agree there. Random sampling measured how often any two records
    agree there (u_raw) and EM how often matches do (m). Matches that agree make up
    λ_b · u_raw of all pairs and a share m of all matches, so the prior is
    λ = λ_b · u_raw / m. Each session gives one estimate; their geometric mean is used.

    Random pairs are not all non-matches either: what sampling measured is
    λ·m + (1 − λ)·u, so u = (u_raw − λ·m) / (1 − λ). Where duplicates are dense (1,000
    records with 500 duplicates) this matters; on large data sets λ is tiny and nothing
    changes.
    """
    by_name = {c.output_column_name: c for c in linker._settings_obj.comparisons}
    priors: list[float] = []
    for session, comparison, label in sessions:
        lam_b = session.core_model_settings.probability_two_random_records_match
        c = by_name.get(comparison)
        level = next(
            (lv for lv in (c.comparison_levels if c else []) if lv.label_for_charts == label),
            None,
        )
        if level is None or not 0 < lam_b <= 1:
            continue
        m, u_raw = level.m_probability, level.u_probability
        if m and u_raw and 0 < m <= 1:
            priors.append(min(max(lam_b * u_raw / m, 1e-12), 0.5))
    if not priors:
        return []
    lam = _geomean(priors)
    for c in linker._settings_obj.comparisons:
        for level in c.comparison_levels:
            if level.is_null_level:
                continue
            m, u_raw = level.m_probability, level.u_probability
            if m is None or u_raw is None:
                continue
            level.u_probability = max((u_raw - lam * m) / (1 - lam), u_raw * 0.01, 1e-12)
    return priors


def prior_from_candidates(
    con: duckdb.DuckDBPyConnection,
    linker: Linker,
    db_api: DuckDBAPI,
    candidates: str,
    n_candidates: int,
    n_records: int,
    sample_pairs: int,
    seed: int,
) -> tuple[float, float]:
    """EM for the prior alone, over (a sample of) the candidate pairs.

    With m and u fixed, the share π of candidate pairs that match is the fixed point of
    π = mean(posterior of each pair given π). Scaled by candidates / all pairs, it is the
    global prior (a slight under-estimate: blocking misses some true pairs).
    Returns (global prior, π).
    """
    modulus = max(1, math.ceil(n_candidates / max(sample_pairs, 1)))
    sample = candidates + "_prior_sample"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {sample} AS SELECT * FROM {candidates} "
        f"WHERE hash(join_key_l, join_key_r, {int(seed)}) % {modulus} = 0"
    )
    linker.table_management.register_blocked_pairs_for_predict(db_api.register(sample))
    scored = linker.inference.predict(warning_mode="never")
    weights = con.execute(f"SELECT match_weight FROM {scored.physical_name}").fetchnumpy()
    scored.drop_table_from_database_and_remove_from_cache()
    con.execute(f"DROP TABLE {sample}")
    w = np.asarray(weights["match_weight"], dtype=np.float64)
    if len(w) == 0:
        return linker._settings_obj._probability_two_random_records_match, 0.0
    prior0 = linker._settings_obj._probability_two_random_records_match
    # Evidence alone, in natural-log odds.
    evidence = (w - math.log2(prior0 / (1 - prior0))) * math.log(2)
    pi = 0.5
    for _ in range(500):
        logit = np.clip(evidence + math.log(pi / (1 - pi)), -700, 700)
        new = float(np.mean(1.0 / (1.0 + np.exp(-logit))))
        new = min(max(new, 1e-9), 1 - 1e-9)
        if abs(new - pi) < 1e-9:
            pi = new
            break
        pi = new
    all_pairs = n_records * (n_records - 1) / 2
    prior = min(max(pi * n_candidates / all_pairs, 1e-12), 0.5)
    return prior, pi


def train(
    linker: Linker,
    db_api: DuckDBAPI,
    fields: list[Field],
    config: MatchConfig,
    n_records: int,
    candidates: str,
    n_candidates: int,
) -> dict:
    """Estimate the model's parameters in place; returns what was estimated."""
    stats: dict = {}
    con = db_api._con
    max_possible = n_records * (n_records - 1) / 2
    linker.training.estimate_u_using_random_sampling(
        max_pairs=min(config.u_sample_pairs, max(max_possible, 1)), seed=config.seed
    )
    sessions = []
    for rule, comparison, label in _em_rules(fields):
        try:
            session = linker.training.estimate_parameters_using_expectation_maximisation(
                rule,
                estimate_without_term_frequencies=True,
                max_pairs=config.em_max_pairs,
            )
            sessions.append((session, comparison, label))
        except Exception as exc:  # a session can fail on data that has no such pairs
            log.warning("EM session on %s skipped: %s", rule, exc)
    stats["em_sessions"] = len(sessions)
    _floor_m(linker, M_FLOOR)
    priors = _prior_and_u_correction(linker, sessions)
    stats["session_priors"] = priors
    if priors:
        linker._settings_obj._probability_two_random_records_match = _geomean(priors)
        stats["prior_from"] = "em_sessions"
    elif n_candidates:
        prior, share = prior_from_candidates(
            con,
            linker,
            db_api,
            candidates,
            n_candidates,
            n_records,
            config.prior_sample_pairs,
            config.seed,
        )
        linker._settings_obj._probability_two_random_records_match = prior
        stats["prior_from"] = "candidates"
        stats["candidate_match_share"] = round(share, 6)
    _round_parameters(linker)
    stats["prior"] = linker._settings_obj._probability_two_random_records_match
    return stats
