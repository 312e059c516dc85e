"""match_records on generated multi-source customer records: junk values found by
frequency, e-mail and phone variants, households kept apart, better than exact stitching."""

from __future__ import annotations

import json

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from onefold.demo.customer_records import (
    exact_stitch_baseline,
    generate_customer_records,
    pairwise_scores,
)
from onefold.unify.matching import MatchConfig, match_records
from tests.unify.matching.conftest import FAST

TRUTH = ["person_id", "household_id", "junk", "variant", "source", "crm_id"]


@pytest.fixture(scope="module")
def customers() -> pa.Table:
    return generate_customer_records(3000, seed=7)  # about 6,600 records


@pytest.fixture(scope="module")
def customer_result(customers):
    return match_records(duckdb.connect(), customers.drop_columns(TRUTH), MatchConfig(**FAST))


def _cluster_of(result) -> dict[str, str]:
    return dict(
        zip(
            result.clusters["record_id"].to_pylist(),
            result.clusters["cluster_id"].to_pylist(),
            strict=True,
        )
    )


def test_beats_exact_email_or_phone_stitching(customers, customer_result):
    truth = customers.select(["record_id", "person_id"])
    ours = pairwise_scores(customer_result.clusters, truth)
    baseline = pairwise_scores(exact_stitch_baseline(customers, max_records_per_value=20), truth)
    assert ours["f1"] >= baseline["f1"] + 0.1
    assert ours["precision"] >= 0.93 and ours["recall"] >= baseline["recall"]


def test_junk_values_are_found_by_frequency_and_get_no_weight(customers, customer_result):
    junk = customer_result.stats["junk_values"]["values"]
    assert "none@none.com" in junk["email"]
    # The shops' own numbers are on no list: found because many people share them.
    assert {"+34915550100", "+49305550100"} <= set(junk["phone"])
    assert "test test" in junk["name"]
    # Genuine values are not junk: none of them is held by more than one household.
    genuine = customers.filter(pc.invert(customers["junk"]))
    emails = {e.strip().lower() for e in genuine["email"].drop_null().to_pylist()}
    assert not emails & set(junk["email"])
    # A pair sharing only a junk e-mail gets nothing for it.
    con = duckdb.connect()
    con.register("r", customers)
    con.register("p", customer_result.pairs)
    con.register("c", customer_result.clusters)
    rows = con.execute(
        "SELECT p.reasons FROM p JOIN r a ON a.record_id = p.record_id_l "
        "JOIN r b ON b.record_id = p.record_id_r "
        "WHERE lower(trim(a.email)) = 'none@none.com' AND lower(trim(b.email)) = 'none@none.com'"
    ).fetchall()
    for (reasons,) in rows:
        email = json.loads(reasons)["email"]
        assert email == {"level": "missing (or a junk value)", "weight": 0.0}
    # And it chains no one together: no cluster holds two of its people.
    people, mixed = con.execute(
        "SELECT count(DISTINCT person_id), (SELECT count(*) FROM (SELECT c.cluster_id "
        "FROM r JOIN c USING (record_id) WHERE lower(trim(r.email)) = 'none@none.com' "
        "GROUP BY 1 HAVING count(DISTINCT r.person_id) > 1)) "
        "FROM r WHERE lower(trim(email)) = 'none@none.com'"
    ).fetchall()[0]
    assert people >= 6 and mixed == 0


def test_email_and_phone_variants_match(customers, customer_result):
    """Records of one person whose e-mails differ only by case, dots at gmail.example
    or a +tag, or whose phones differ only in how they are written, end up together."""
    cluster_of = _cluster_of(customer_result)
    rows = customers.filter(pc.invert(customers["junk"])).to_pylist()
    by_person: dict[int, list[dict]] = {}
    for row in rows:
        by_person.setdefault(row["person_id"], []).append(row)
    variants = together = 0
    for records in by_person.values():
        for i, a in enumerate(records):
            for b in records[i + 1 :]:
                if not a["email"] or not b["email"] or a["email"] == b["email"]:
                    continue
                la, lb = a["email"].strip().lower(), b["email"].strip().lower()
                same = la.split("+")[0].replace(".", "") == lb.split("+")[0].replace(".", "")
                if same and la.split("@")[1] == lb.split("@")[1]:
                    variants += 1
                    together += cluster_of[a["record_id"]] == cluster_of[b["record_id"]]
    assert variants >= 50 and together >= 0.97 * variants
    # Phones written in different styles normalise to one E.164 number.
    pairs = customer_result.pairs
    phone_levels = [json.loads(r)["phone"]["level"] for r in pairs["reasons"].to_pylist()]
    assert phone_levels.count("exact") > 500


def test_households_are_not_merged(customers, customer_result):
    """Members of a household share the address, mostly the surname, often a landline or
    a family e-mail: the first-name guard keeps them apart however high the model
    scores them."""
    assert customer_result.stats["guards"]["first_name"]["active"]
    cluster_of = _cluster_of(customer_result)
    rows = customers.filter(pc.invert(customers["junk"])).to_pylist()
    by_household: dict[int, list[dict]] = {}
    for row in rows:
        if row["first_name"] and len(row["first_name"].strip(". ")) > 1:
            by_household.setdefault(row["household_id"], []).append(row)
    pairs = together = 0
    for members in by_household.values():
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                if a["person_id"] == b["person_id"]:
                    continue
                if a["first_name"][0].lower() == b["first_name"][0].lower():
                    continue  # clearly different first names only
                pairs += 1
                together += cluster_of[a["record_id"]] == cluster_of[b["record_id"]]
    assert pairs >= 1000 and together <= 0.005 * pairs
    # Some of them score above the auto-merge threshold: the guard, not the model, holds.
    vetoed = customer_result.pairs.filter(
        pc.equal(customer_result.pairs["vetoed_by"], "first_name")
    )
    assert vetoed.num_rows > 0
    assert set(vetoed["decision"].to_pylist()) == {"review"}
    assert pc.max(vetoed["match_probability"]).as_py() >= 0.95


def test_guard_is_off_where_first_names_are_unreliable(febrl_result):
    # FEBRL's errors replace whole first names: conflicting names are no sign of a
    # household there, and the model's m says so.
    guard = febrl_result.stats["guards"]["first_name"]
    assert guard["active"] is False and guard["m"] >= 0.02
    assert febrl_result.stats["vetoed_pairs"] == 0
