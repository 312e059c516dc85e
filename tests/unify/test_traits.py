"""Profile traits: latest wins across identities, source priority, nulls, and incremental
refresh equal to a full recompute."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from onefold.collect.ingest import prepare
from onefold.collect.messages import Envelope, now_utc
from onefold.demo.generator import generate_demo
from onefold.runtime import Onefold
from onefold.settings import Settings
from onefold.unify.profiles import Lookup, find_profile, profile_view
from onefold.unify.traits import TraitRules
from tests.unify.landing import land_demo


def _open(path: Path, traits: TraitRules | None = None) -> Onefold:
    return Onefold(Settings(data_dir=path, admin_token="t", unify_interval_ms=10**9,
                            traits=traits or TraitRules()))  # fmt: skip


def _send(onefold: Onefold, source: str, messages: list[dict]) -> None:
    found = [s for s in onefold.sources.list() if s.name == source]
    created = found[0] if found else onefold.sources.create(source, "other")
    envelope = Envelope(created.id, "r", "test", now_utc())
    onefold.log.append_blocking(prepare(messages, envelope).data)
    onefold.flush()


def _traits(onefold: Onefold, namespace: str, value: str) -> dict:
    con = onefold.warehouse.cursor()
    profile = find_profile(con, Lookup(namespace, value))
    return {k: v["value"] for k, v in profile_view(con, profile)["traits"].items()}


def test_latest_value_wins_across_identities_and_nulls_are_ignored(tmp_path):
    onefold = _open(tmp_path)
    _send(onefold, "web", [
        {"type": "identify", "anonymousId": "a1", "traits": {"firstName": "Jo", "plan": "free"},
         "timestamp": "2026-01-01T00:00:00Z"},
        {"type": "identify", "userId": "u1", "anonymousId": "a2",
         "context": {"traits": {"firstName": "Joanna", "plan": None}},
         "timestamp": "2026-01-03T00:00:00Z"},
        # arrives last but happened first: does not win
        {"type": "identify", "userId": "u1", "traits": {"firstName": "J."},
         "timestamp": "2026-01-02T00:00:00Z"},
        {"type": "track", "userId": "u1", "event": "E", "traits": {"firstName": "ignored"}},
    ])  # fmt: skip
    assert _traits(onefold, "user_id", "u1") == {"firstName": "Joanna"}
    _send(onefold, "web", [{"type": "identify", "userId": "u1", "anonymousId": "a1"}])
    merged = _traits(onefold, "user_id", "u1")
    assert merged["plan"] == "free", "a null does not clear by default"
    assert merged["firstName"] == "Joanna"
    onefold.close()


def test_source_priority_and_null_clears(tmp_path):
    rules = TraitRules(source_priority=["crm"], null_clears=True)
    onefold = _open(tmp_path, rules)
    _send(onefold, "crm", [{"type": "identify", "userId": "u1",
                            "traits": {"lastName": "García", "tier": "gold"},
                            "timestamp": "2026-01-01T00:00:00Z"}])  # fmt: skip
    _send(onefold, "web", [{"type": "identify", "userId": "u1",
                            "traits": {"lastName": "garcia", "tier": None, "city": "Madrid"},
                            "timestamp": "2026-02-01T00:00:00Z"}])  # fmt: skip
    traits = _traits(onefold, "user_id", "u1")
    assert traits["lastName"] == "García", "the CRM beats a later web form"
    assert traits["city"] == "Madrid"
    assert traits["tier"] == "gold", "the CRM's value ranks above the web's null"
    _send(onefold, "crm", [{"type": "identify", "userId": "u1", "traits": {"tier": None},
                            "timestamp": "2026-03-01T00:00:00Z"}])  # fmt: skip
    assert "tier" not in _traits(onefold, "user_id", "u1")
    onefold.close()


def test_incremental_traits_equal_a_full_recompute(tmp_path):
    demo = generate_demo(seed=5, customers=120, now=datetime(2026, 6, 1))
    onefold = _open(tmp_path, TraitRules(source_priority=["crm", "support"]))
    land_demo(onefold, demo)
    onefold.identity.process_all(limit=613)
    con = onefold.warehouse.cursor()
    query = "SELECT profile_id, trait, value, source_id, seq FROM profile_traits"
    incremental = set(con.execute(query).fetchall())
    assert len(incremental) > 100
    onefold.identity.recompute_traits()
    assert set(con.execute(query).fetchall()) == incremental
    onefold.close()


def test_a_merge_without_identify_calls_joins_the_traits_of_both_profiles(tmp_path):
    """Traits are recomputed only for the profiles a batch's trait observations reach and
    for those its merges change: a batch of track calls that merges two profiles gives the
    survivor the traits of both, and leaves no rows of the absorbed profile."""
    onefold = _open(tmp_path)
    _send(onefold, "web", [
        {"type": "identify", "anonymousId": "a-1", "traits": {"firstName": "Ann"},
         "timestamp": "2026-05-01T10:00:00Z"},
        {"type": "identify", "userId": "u-1", "traits": {"lastName": "Lee", "plan": "pro"},
         "timestamp": "2026-05-01T10:01:00Z"},
        {"type": "identify", "userId": "u-2", "traits": {"firstName": "Bo"},
         "timestamp": "2026-05-01T10:02:00Z"},
    ])  # fmt: skip
    con = onefold.warehouse.cursor()
    before = con.execute(
        "SELECT profile_id, trait, value FROM profile_traits WHERE profile_id = ?",
        [find_profile(con, Lookup("user_id", "u-2"))],
    ).fetchall()
    _send(onefold, "web", [
        {"type": "track", "event": "Product Viewed", "anonymousId": "a-1", "userId": "u-1",
         "timestamp": "2026-05-01T11:00:00Z"},
        {"type": "track", "event": "Product Viewed", "userId": "u-2",
         "timestamp": "2026-05-01T11:01:00Z"},
    ])  # fmt: skip
    assert find_profile(con, Lookup("anonymous_id", "a-1")) == find_profile(
        con, Lookup("user_id", "u-1")
    )
    assert _traits(onefold, "user_id", "u-1") == {
        "firstName": "Ann", "lastName": "Lee", "plan": "pro"
    }  # fmt: skip
    dead = con.execute(
        "SELECT count(*) FROM profile_traits t JOIN identity_profiles p USING (profile_id) "
        "WHERE p.merged_into IS NOT NULL"
    ).fetchone()[0]
    assert dead == 0
    after = con.execute(
        "SELECT profile_id, trait, value FROM profile_traits WHERE profile_id = ?",
        [find_profile(con, Lookup("user_id", "u-2"))],
    ).fetchall()
    assert after == before
    query = "SELECT profile_id, trait, value, source_id, seq FROM profile_traits ORDER BY ALL"
    incremental = con.execute(query).fetchall()
    onefold.identity.recompute_traits()
    assert con.execute(query).fetchall() == incremental
    onefold.close()
