"""The lookup benchmark builds its warehouse in SQL, beside the migrations: a schema change
that it misses must fail here, not the next time someone runs the benchmark."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_the_lookup_benchmark_runs_small_and_answers_like_the_warehouse(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))  # it imports its sibling bench/ingest.py
    spec = importlib.util.spec_from_file_location("bench_identity", BENCH / "identity.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    result = bench.bench_lookup(profiles=500, lookups=200, workdir=tmp_path, threads=2)
    assert result["warehouse"]["identity_profiles"] == 550  # 10% more, absorbed
    assert result["warehouse"]["computed_traits"] == 1000  # two for each live profile
    assert result["publish_all"]["views"] == 500
    assert result["same_answers"] is True
    assert result["serving_store"]["lookups"] == 200
