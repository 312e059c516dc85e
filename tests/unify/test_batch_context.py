"""A batch's shared ``context`` reaches identity and traits (the message's own fields win),
and every way of building the graph — micro-batches, the fast rebuild, the replay, Spark —
gives the same profiles for merge calls and batch-level context."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from onefold.runtime import Onefold
from onefold.settings import Settings
from onefold.store.spark import java_available
from tests.server import Server
from tests.unify.http import get_profile, identity_keys, post
from tests.unify.test_stitch import SNAPSHOT, _snapshot


def test_a_batch_level_email_links_theprofile(server: Server, source):
    run = source["name"]
    email = f"{run}@example.com"
    post(server, source, "/v1/identify", {
        "type": "identify", "userId": f"{run}-u", "traits": {"email": email},
        "timestamp": "2026-01-01T00:00:00Z",
    })  # fmt: skip
    # the batch's only email is in its shared context; the messages carry none
    post(server, source, "/v1/batch", {
        "context": {"traits": {"email": f" {email.upper()}", "plan": "gold"}},
        "batch": [
            {"type": "track", "anonymousId": f"{run}-a", "event": "Product Viewed",
             "timestamp": "2026-01-02T00:00:00Z"},
            {"type": "identify", "anonymousId": f"{run}-a",
             "context": {"traits": {"firstName": "Ana", "plan": None}},
             "timestamp": "2026-01-03T00:00:00Z"},
        ],
    })  # fmt: skip
    server.flush()
    with server.admin as admin:
        profile = get_profile(admin, f"anonymous_id:{run}-a")
        assert profile["profile_id"] == get_profile(admin, f"user_id:{run}-u")["profile_id"]
        assert identity_keys(profile) == {
            ("user_id", f"{run}-u"), ("email", email), ("anonymous_id", f"{run}-a"),
        }  # fmt: skip
        assert not profile["merges"], "the device joined the profile directly, by email"
        # traits: the message's context.traits over the batch's, trait by trait; a null in
        # the message does not hide the batch's value
        traits = {name: trait["value"] for name, trait in profile["traits"].items()}
        assert traits == {"email": f" {email.upper()}", "firstName": "Ana", "plan": "gold"}
        events = admin.get(f"/api/v1/timeline/user_id:{run}-u").json()["events"]
        assert len(events) == 3


def test_the_message_context_wins_over_the_batch(server: Server, source):
    run = source["name"]
    shared, own = f"shared.{run}@example.com", f"own.{run}@example.com"
    post(server, source, "/v1/batch", {
        "context": {"locale": "es-ES", "traits": {"email": shared}},
        "batch": [
            # its own email wins: it is not linked by the batch's
            {"type": "identify", "anonymousId": f"{run}-1",
             "context": {"traits": {"email": own}}},
            # its phone is read in the batch's region; the batch's email links it ...
            {"type": "identify", "anonymousId": f"{run}-2", "traits": {"phone": "699 000 417"}},
            # ... and this one, whose own locale names its region
            {"type": "identify", "anonymousId": f"{run}-3", "context": {"locale": "en-GB"},
             "traits": {"phone": "020 7946 0123"}},
        ],
    })  # fmt: skip
    server.flush()
    with server.admin as admin:
        one = get_profile(admin, f"anonymous_id:{run}-1")
        assert identity_keys(one) == {("anonymous_id", f"{run}-1"), ("email", own)}
        two = get_profile(admin, f"anonymous_id:{run}-2")
        assert identity_keys(two) == {
            ("anonymous_id", f"{run}-2"), ("anonymous_id", f"{run}-3"), ("email", shared),
            ("phone", "+34699000417"), ("phone", "+442079460123"),
        }  # fmt: skip
        assert one["profile_id"] != two["profile_id"]


# ------------------------------------------------------------------ every path agrees


def _inputs(run: str) -> list[tuple[str, dict]]:
    """Merge calls and batch-level context making every rule fire."""
    return [
        ("/v1/identify", {"type": "identify", "userId": f"{run}-u1",
                          "traits": {"email": f"u1.{run}@example.com"}}),
        ("/v1/identify", {"type": "identify", "anonymousId": f"{run}-a1",
                          "traits": {"phone": "+14155550101"}}),
        ("/v1/identify", {"type": "identify", "userId": f"{run}-u2",
                          "traits": {"email": f"u2.{run}@example.com"}}),
        # joins u1 and a1: a recorded merge
        ("/v1/merge", {"type": "merge", "messageId": "m-join", "anonymousId": f"{run}-m",
                       "mergeProperties": [{"type": "email", "value": f"U1.{run}@example.com"},
                                           {"type": "mobile", "value": "(415) 555-0101"},
                                           {"type": "shoe_size", "value": "42"}]}),
        # refused: two user ids (merge protection), junk values (blocked), a fifth phone
        ("/v1/merge", {"type": "merge", "messageId": "m-protected", "userId": f"{run}-u1",
                       "mergeProperties": [{"type": "userId", "value": f"{run}-u2"}]}),
        ("/v1/merge", {"type": "merge", "messageId": "m-blocked", "anonymousId": f"{run}-x",
                       "mergeProperties": [{"type": "email", "value": "test@example.com"},
                                           {"type": "user_id", "value": "null"}]}),
        ("/v1/merge", {"type": "merge", "messageId": "m-limit", "userId": f"{run}-u3",
                       "mergeProperties": [{"type": "phone", "value": f"+1212555018{i}"}
                                           for i in range(4)]}),
        # batch-level context: an email, a locale, traits; the message's own fields win
        ("/v1/batch", {
            "context": {"locale": "es-ES", "traits": {"email": f"u2.{run}@example.com",
                                                      "plan": "gold", "tier": None}},
            "batch": [
                {"type": "page", "anonymousId": f"{run}-b1"},
                {"type": "identify", "anonymousId": f"{run}-b2",
                 "context": {"traits": {"firstName": "Bea", "plan": None, "tier": "2"}}},
                {"type": "identify", "anonymousId": f"{run}-b3",
                 "context": {"traits": {"email": f"b3.{run}@example.com"}},
                 "traits": {"phone": "612 000 111"}},
                {"type": "merge", "anonymousId": f"{run}-b4",
                 "mergeProperties": [{"type": "phone", "value": "612 000 111"}]},
            ],
        }),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def landed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A data directory the real server filled through its tracking API and resolved in
    micro-batches, then stopped."""
    server = Server(tmp_path_factory.mktemp("batch-context") / "data").start()
    try:
        source = server.create_source("web", "web")
        for path, body in _inputs("e"):
            post(server, source, path, body)
        server.flush()
    finally:
        server.stop()
    return server.data_dir


def _open(data_dir: Path) -> Onefold:
    return Onefold(Settings(data_dir=data_dir, admin_token="t", unify_interval_ms=10**9))


def _identity_snapshot(onefold: Onefold) -> dict[str, object]:
    # computed traits may hold times relative to now: they are checked by test_stitch
    snapshot = _snapshot(onefold)
    del snapshot["computed"]
    return snapshot


def test_the_fast_rebuild_and_the_replay_equal_the_micro_batches(landed):
    onefold = _open(landed)
    try:
        streamed = _identity_snapshot(onefold)
        # the inputs fired every rule and reached traits through the batch
        assert {row[6] for row in streamed["refusals"]} == {"merge_protection", "limit"}
        assert {row[1] for row in streamed["merges"]} >= {"m-join"}
        assert {row[:2] for row in streamed["blocked"]} == {
            ("email", "test@example.com"), ("user_id", "null"),
        }  # fmt: skip
        assert {row[1] for row in streamed["traits"]} == {"email", "phone", "plan", "firstName",
                                                          "tier"}  # fmt: skip
        onefold.identity.rebuild_fast()
        fast = _identity_snapshot(onefold)
        onefold.identity.rebuild()
        replayed = _identity_snapshot(onefold)
        for name in SNAPSHOT:
            if name in streamed:
                assert fast[name] == streamed[name], name
                assert replayed[name] == streamed[name], name
    finally:
        onefold.close()


@pytest.mark.slow
@pytest.mark.spark
def test_spark_builds_the_same_graph(landed):
    if not java_available():
        pytest.skip("no Java runtime: Spark needs Java 17 or later (JAVA_HOME or java on PATH)")
    from onefold.store.spark import SparkEngine
    from onefold.unify import overrides
    from onefold.unify.spark_stitch import stitch

    onefold = _open(landed)
    engine = SparkEngine.local()
    try:
        con = onefold.warehouse.cursor()
        started = time.monotonic()
        engine.load_duckdb(con, ["events"])
        blocked, never = overrides.active(con)
        stitched = stitch(engine, onefold.settings.identity, blocked, never)
        print(f"spark stitch {time.monotonic() - started:.1f}s")
        tables = {
            "identifiers": (stitched.identifiers,
                            ["namespace", "value", "profile_id", "first_seq", "source_id"]),
            "identity_profiles": (stitched.identity_profiles,
                                  ["profile_id", "anchor_namespace", "anchor_value",
                                   "anchor_seq", "merged_into"]),
            "identity_merges": (stitched.identity_merges,
                                ["seq", "message_id", "surviving_id", "absorbed_id",
                                 "namespace", "value"]),
            "identity_refusals": (stitched.identity_refusals,
                                  ["seq", "message_id", "namespace", "value", "profile_id",
                                   "other_profile_id", "rule", "detail"]),
            "event_identity": (stitched.event_identity, ["seq", "namespace", "value"]),
            "identity_blocked": (stitched.identity_blocked,
                                 ["namespace", "value", "occurrences", "last_seq"]),
        }  # fmt: skip
        for table, (frame, columns) in tables.items():
            expected = Counter(con.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall())
            assert expected, table
            actual = Counter(tuple(r[c] for c in columns) for r in frame.toArrow().to_pylist())
            assert actual == expected, table
    finally:
        engine.stop()
        onefold.close()
