"""match_records end to end on FEBRL 1: quality, calibration, reasons, determinism."""

from __future__ import annotations

import json
import math

import duckdb
import pyarrow as pa
import pytest

from onefold.unify.matching import MatchConfig, match_records
from tests.unify.matching.conftest import FAST, FEBRL_FIELDS, true_pairs


def _merged_pairs(result) -> set[tuple[str, str]]:
    rows = result.pairs.filter(pa.compute.equal(result.pairs["decision"], "merge"))
    return set(zip(rows["record_id_l"].to_pylist(), rows["record_id_r"].to_pylist(), strict=True))


def _f1(predicted: set, truth: set) -> float:
    tp = len(predicted & truth)
    p = tp / len(predicted) if predicted else 0.0
    r = tp / len(truth) if truth else 0.0
    return 2 * p * r / (p + r) if p + r else 0.0


def test_febrl1_pairs_and_clusters_are_found(febrl_records, febrl_result):
    truth = true_pairs(febrl_records)
    assert _f1(_merged_pairs(febrl_result), truth) >= 0.99
    clusters = dict(
        zip(
            febrl_result.clusters["record_id"].to_pylist(),
            febrl_result.clusters["cluster_id"].to_pylist(),
            strict=True,
        )
    )
    assert len(clusters) == febrl_records.num_rows
    implied = {(a, b) for a in clusters for b in clusters if a < b and clusters[a] == clusters[b]}
    assert _f1(implied, truth) >= 0.99
    # The cluster id is the smallest record id in the cluster.
    for rid, cid in clusters.items():
        assert cid <= rid and clusters[cid] == cid


def test_probabilities_are_calibrated_without_labels(febrl_records, febrl_result):
    truth = true_pairs(febrl_records)
    pairs = febrl_result.pairs
    ids = zip(pairs["record_id_l"].to_pylist(), pairs["record_id_r"].to_pylist(), strict=True)
    probs = pairs["match_probability"].to_pylist()
    is_true = [(a, b) in truth for a, b in ids]
    high = [t for t, p in zip(is_true, probs, strict=True) if p >= 0.95]
    assert high and sum(high) / len(high) >= 0.95
    # Expected matches (the sum of probabilities) is close to the real count.
    assert abs(sum(probs) - sum(is_true)) <= 0.05 * sum(is_true)
    # The prior, estimated without labels, is within a factor of two of the truth.
    n = febrl_records.num_rows
    real_prior = len(truth) / (n * (n - 1) / 2)
    assert 0.5 <= febrl_result.stats["prior"] / real_prior <= 2.0


def test_every_pair_has_reasons_per_field(febrl_result):
    pairs = febrl_result.pairs
    assert pairs.num_rows > 0
    fields = {"name", "birth_date", "address", "soc_sec_id", "state"}
    prior = febrl_result.stats["prior"]
    prior_weight = math.log2(prior / (1 - prior))
    for reasons, weight in zip(
        pairs["reasons"].to_pylist()[:200], pairs["match_weight"].to_pylist()[:200], strict=True
    ):
        parsed = json.loads(reasons)
        assert set(parsed) == fields
        for field in parsed.values():
            assert isinstance(field["level"], str) and field["level"]
            assert isinstance(field["weight"], int | float)
        # The per-field weights add up to the pair's weight (rounding aside).
        total = prior_weight + sum(f["weight"] for f in parsed.values())
        assert total == pytest.approx(weight, abs=0.05 * len(parsed))


def test_decisions_follow_thresholds(febrl_result):
    pairs = febrl_result.pairs
    config = MatchConfig()
    assert min(pairs["match_probability"].to_pylist()) >= config.review_low
    assert set(pairs["decision"].to_pylist()) <= {"merge", "review"}
    assert pairs.schema.names == [
        "record_id_l",
        "record_id_r",
        "match_probability",
        "match_weight",
        "decision",
        "vetoed_by",
        "reasons",
    ]


def test_same_input_same_output(febrl_records, febrl_result):
    again = match_records(
        duckdb.connect(), febrl_records, MatchConfig(extra_fields=FEBRL_FIELDS, **FAST)
    )
    assert again.clusters.equals(febrl_result.clusters)
    assert again.pairs.select(["record_id_l", "record_id_r", "decision"]).equals(
        febrl_result.pairs.select(["record_id_l", "record_id_r", "decision"])
    )
    assert again.pairs["match_probability"].to_pylist() == pytest.approx(
        febrl_result.pairs["match_probability"].to_pylist(), abs=1e-9
    )


def test_labels_calibrate(febrl_records):
    truth = true_pairs(febrl_records)
    ids = febrl_records["record_id"].to_pylist()
    positives = sorted(truth)[:100]
    negatives = [
        (ids[i], ids[i + 1]) for i in range(0, 200, 2) if (ids[i], ids[i + 1]) not in truth
    ]
    labels = pa.table(
        {
            "record_id_l": [a for a, _ in positives + negatives],
            "record_id_r": [b for _, b in positives + negatives],
            "is_match": [True] * len(positives) + [False] * len(negatives),
        }
    )
    con = duckdb.connect()
    result = match_records(
        con, febrl_records, MatchConfig(extra_fields=FEBRL_FIELDS, **FAST), labels=labels
    )
    assert result.stats["labels_used"] == len(positives) + len(negatives)
    cal = result.stats["calibration"]
    assert math.isfinite(cal["a"]) and cal["a"] > 0 and math.isfinite(cal["b"])
    assert _f1(_merged_pairs(result), truth) >= 0.99
    # Nothing is left behind on the caller's connection.
    left = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE table_name LIKE '__onefold_match%' "
        "OR table_name LIKE '__splink%'"
    ).fetchall()
    assert left == []


def test_bad_input_is_refused():
    con = duckdb.connect()
    with pytest.raises(ValueError, match="record_id"):
        match_records(con, pa.table({"first_name": ["a"]}))
    with pytest.raises(ValueError, match="unique"):
        match_records(con, pa.table({"record_id": ["1", "1"], "first_name": ["a", "b"]}))
