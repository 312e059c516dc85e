"""Training without labels: u by counting and random sampling, m by EM, then the prior.

1. u (how often non-matches agree at each level) comes from random pairs, almost all of
   which are non-matches — except where agreement is too rare for a sample to measure:
   exact agreement on each EM session's blocking field (the full name, the date of
   birth) and on e-mails and phones is counted over all pairs (`_exact_pair_share`),
   and for e-mails and phones the share of the agreeing pairs that are different people
   is estimated from their first names (`_contact_u`).
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
from dataclasses import dataclass

import duckdb
import numpy as np
from splink import DuckDBAPI, Linker, SettingsCreator, block_on

from onefold.unify.matching.comparisons import build_comparisons, first_name_conflict_sql
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


@dataclass(frozen=True)
class _Session:
    """An EM session: its blocking rule, the comparison it blocks on and that
    comparison's level the rule amounts to (these turn the session's share of matches
    into the global prior), the columns that level compares exactly and the condition
    under which a record is not "missing" for that comparison."""

    rule: object
    comparison: str
    label: str
    columns: tuple[str, ...]
    present: str


def _em_rules(fields: list[Field]) -> list[_Session]:
    """Two EM sessions whose blocking columns differ, so every comparison gets trained."""
    kinds = {f.kind: f.column for f in reversed(fields)}
    rules: list[_Session] = []
    if "name" in kinds:
        rules.append(
            _Session(
                block_on("first_name", "last_name"),
                "name",
                "exact first and last name",
                ("first_name", "last_name"),
                "first_name IS NOT NULL OR last_name IS NOT NULL",
            )
        )
    for kind in ("date", "postcode", "email", "phone", "id", "city"):
        if kind in kinds:
            col = kinds[kind]
            rules.append(
                _Session(block_on(quote(col)), col, "exact", (col,), f"{quote(col)} IS NOT NULL")
            )
            break
    return rules


def _exact_pair_share(
    con: duckdb.DuckDBPyConnection, work: str, columns: tuple[str, ...], present: str
) -> float:
    """Of all pairs of records that both have a value (`present`), the share that agree
    exactly on every one of `columns`: counted, not sampled (random sampling of a million
    pairs sees a few dozen such pairs at most, or none)."""
    cols = ", ".join(quote(c) for c in columns)
    not_null = " AND ".join(f"{quote(c)} IS NOT NULL" for c in columns)
    same = con.execute(
        f"SELECT sum(n * (n - 1) / 2) FROM "
        f"(SELECT count(*) AS n FROM {work} WHERE {not_null} GROUP BY {cols})"
    ).fetchall()[0][0]
    n = con.execute(f"SELECT count(*) FROM {work} WHERE {present}").fetchall()[0][0]
    if not n or n < 2:
        return 0.0
    return float(same or 0) / (n * (n - 1) / 2)


def _different_people_share(
    con: duckdb.DuckDBPyConnection, work: str, column: str
) -> tuple[float, int, int]:
    """Of the pairs of records sharing a value of `column` that both have a first name,
    the share whose first names conflict (neither equal, similar, a nickname, a prefix
    nor swapped with the surname): different people sharing the value, such as a
    household's e-mail or landline. Returns (share, conflicting pairs, pairs); the share
    is (conflicts + 1) / (pairs + 20): 5% where there are no such pairs to count (records
    without first names), the share counted where there are many.
    """
    c = quote(column)
    conflict = first_name_conflict_sql("a", "b")
    pairs, conflicts = con.execute(
        f"WITH v AS (SELECT unique_id, {c} AS v, first_name, last_name, first_name_forms "
        f"FROM {work} WHERE {c} IS NOT NULL AND length(first_name) >= 2) "
        f"SELECT count(*), count(*) FILTER (WHERE {conflict}) FROM v a JOIN v b "
        f"ON a.v = b.v AND a.unique_id < b.unique_id"
    ).fetchall()[0]
    return (conflicts + 1) / (pairs + 20), int(conflicts), int(pairs)


def _contact_u(
    con: duckdb.DuckDBPyConnection, linker: Linker, work: str, fields: list[Field]
) -> dict:
    """u of exact agreement on an e-mail or phone, from the pairs that share a value.

    Of all pairs with both values present, a share s (counted exactly) agree. Among them,
    the share d whose first names conflict estimates how many are different people
    (a family e-mail, a landline). So u = s · d (strictly s · d / (1 − λ), but matches
    are a tiny share of all pairs): a pair that shares an e-mail and nothing else gets
    probability ≈ 1 − d, whatever the value's frequency (which, junk removed, mostly
    counts one person's own records). Splink's term-frequency adjustment would instead
    divide by that frequency and so let a person's own duplicates weaken the agreement,
    and random sampling sees too few agreeing pairs to estimate u at all.
    """
    by_name = {c.output_column_name: c for c in linker._settings_obj.comparisons}
    out = {}
    for f in fields:
        if f.kind not in ("email", "phone"):
            continue
        level = _level(by_name.get(f.column), "exact")
        share = _exact_pair_share(con, work, (f.column,), f"{quote(f.column)} IS NOT NULL")
        if level is None or share <= 0:
            continue
        different, conflicts, pairs = _different_people_share(con, work, f.column)
        level.u_probability = max(share * different, 1e-12)
        out[f.column] = {
            "pair_share": share,
            "named_pairs": pairs,
            "conflicting_first_names": conflicts,
            "different_people_share": round(different, 6),
        }
    return out


def _level(comparison, label: str):
    """The comparison's level with this label, or None."""
    levels = comparison.comparison_levels if comparison is not None else []
    return next((lv for lv in levels if lv.label_for_charts == label), None)


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


def _prior_and_u_correction(
    linker: Linker,
    sessions: list,
    skip: set[tuple[str, str]] | None = None,
    u_floor: float = 1e-12,
) -> list[float]:
    """The prior from the EM sessions; then u corrected for the matches among random pairs.

    A session blocked on exact agreement on one field estimates λ_b, the share of matches
    among pairs that agree there. Counting measured how often any two records agree
    there (u_raw, set on the level before) and EM how often matches do (m). Matches that
    agree make up λ_b · u_raw of all pairs and a share m of all matches, so the prior is
    λ = λ_b · u_raw / m. Each session gives one estimate; their geometric mean is used.

    Random pairs are not all non-matches either: what sampling measured is
    λ·m + (1 − λ)·u, so u = (u_raw − λ·m) / (1 − λ). Where duplicates are dense (1,000
    records with 500 duplicates) this matters; on large data sets λ is tiny and nothing
    changes. For a session's own level the session says it directly: a share 1 − λ_b of
    the agreeing pairs are non-matches, so u = u_raw · (1 − λ_b) / (1 − λ) (the
    subtraction would rely on λ, estimated over all pairs, holding for those with a value
    too). A level that sampling saw a handful of times or not at all has a noisy u_raw:
    no u goes below `u_floor` (one in the number of sampled pairs), so that the
    subtraction cannot turn a level nobody measured into near-certain proof.
    """
    by_name = {c.output_column_name: c for c in linker._settings_obj.comparisons}
    priors: list[float] = []
    session_share: dict[int, float] = {}
    for session, comparison, label in sessions:
        lam_b = session.core_model_settings.probability_two_random_records_match
        level = _level(by_name.get(comparison), label)
        if level is None or not 0 < lam_b <= 1:
            continue
        m, u_raw = level.m_probability, level.u_probability
        if m and u_raw and 0 < m <= 1:
            priors.append(min(max(lam_b * u_raw / m, 1e-12), 0.5))
            session_share[id(level)] = lam_b
    if not priors:
        return []
    lam = _geomean(priors)
    for c in linker._settings_obj.comparisons:
        for level in c.comparison_levels:
            if level.is_null_level:
                continue
            m, u_raw = level.m_probability, level.u_probability
            key = (c.output_column_name, level.label_for_charts)
            if m is None or u_raw is None or key in (skip or ()):
                continue
            if id(level) in session_share:
                u = u_raw * (1 - session_share[id(level)]) / (1 - lam)
                level.u_probability = max(u, u_raw * 0.01, 1e-12)
            else:
                u = (u_raw - lam * m) / (1 - lam)
                level.u_probability = max(u, u_raw * 0.01, min(u_floor, u_raw))
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
    work: str | None = None,
) -> dict:
    """Estimate the model's parameters in place; returns what was estimated."""
    stats: dict = {}
    con = db_api._con
    by_name = {c.output_column_name: c for c in linker._settings_obj.comparisons}
    u_pairs = min(config.u_sample_pairs, max(n_records * (n_records - 1) / 2, 1))
    linker.training.estimate_u_using_random_sampling(max_pairs=u_pairs, seed=config.seed)
    specs = _em_rules(fields)
    exact_u: set[tuple[str, str]] = set()  # levels whose u is already that of non-matches
    if work is not None:
        # Counted rather than sampled, and fixed, so that EM sees them too: the share of
        # pairs agreeing on each session's blocking level, and e-mail and phone agreement.
        for spec in specs:
            level = _level(by_name.get(spec.comparison), spec.label)
            share = _exact_pair_share(con, work, spec.columns, spec.present)
            if level is not None and share > 0:
                level.u_probability = share
                level._fix_u_probability = True
        stats["contact_u"] = _contact_u(con, linker, work, fields)
        for column in stats["contact_u"]:
            level = _level(by_name.get(column), "exact")
            level._fix_u_probability = True
            exact_u.add((column, "exact"))
    sessions = []
    for spec in specs:
        try:
            session = linker.training.estimate_parameters_using_expectation_maximisation(
                spec.rule,
                estimate_without_term_frequencies=True,
                max_pairs=config.em_max_pairs,
            )
            sessions.append((session, spec.comparison, spec.label))
        except Exception as exc:  # a session can fail on data that has no such pairs
            log.warning("EM session on %s skipped: %s", spec.rule, exc)
    stats["em_sessions"] = len(sessions)
    _floor_m(linker, M_FLOOR)
    priors = _prior_and_u_correction(linker, sessions, exact_u, 1.0 / u_pairs)
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
