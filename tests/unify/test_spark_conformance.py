"""Stitching and computed traits on PySpark (local mode) give what DuckDB gives.

One demo warehouse is resolved on DuckDB, micro-batch by micro-batch, with links made
between the batches (an always-link, an accepted probabilistic match, and a link the rules
refuse), then built again on Spark from the same raw events and the active links, with the
same SQL (transpiled) and the same resolver.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import orjson
import pytest

from onefold.collect.ingest import prepare
from onefold.collect.messages import Envelope, now_utc
from onefold.demo.generator import generate_demo
from onefold.runtime import Onefold
from onefold.settings import Settings, default_computed_traits
from onefold.store.spark import java_available
from onefold.unify import links
from onefold.unify.computed import ComputedTrait
from tests.unify.landing import send_demo

pytestmark = [pytest.mark.slow, pytest.mark.spark]

AS_OF = datetime(2026, 6, 1)

# Every function beyond the defaults, so each one's SQL is checked on both engines.
EXTRA_TRAITS = [
    ComputedTrait(name="first_category", function="first", event="Product Viewed",
                  property="properties.category"),
    # Most orders have no coupon: first/last must skip the nulls on both engines.
    ComputedTrait(name="first_coupon", function="first", event="Order Completed",
                  property="properties.coupon"),
    ComputedTrait(name="last_coupon", function="last", event="Order Completed",
                  property="properties.coupon"),
    ComputedTrait(name="categories", function="distinct_count", event="Product Viewed",
                  property="properties.category"),
    ComputedTrait(name="biggest_order", function="max", event="Order Completed",
                  property="properties.revenue"),
    ComputedTrait(name="smallest_order", function="min", event="Order Completed",
                  property="properties.revenue"),
    ComputedTrait(name="usd_revenue", function="sum", event="Order Completed",
                  property="properties.revenue", where={"properties.currency": "USD"}),
    ComputedTrait(name="views_30d", function="count", event="Product Viewed", window_days=30),
]  # fmt: skip


# Beyond the demo: blocked values, phone numbers written differently (and a locale that
# says where), a trimmed and lower-cased email, one that is no email, a namespace limit.
EDGE_CASES = [
    {"type": "identify", "userId": "edge-1", "context": {"locale": "en-US"},
     "traits": {"email": "test@example.com", "phone": "(415) 555-0100"}},
    {"type": "identify", "anonymousId": "edge-anon",
     "traits": {"email": "  Edge@Example.COM ", "phone": "+1 415 555 0100"}},
    {"type": "track", "anonymousId": "edge-anon", "event": "Order Completed",
     "properties": {"revenue": 12.5, "currency": "USD", "email": "not an@email"}},
    {"type": "track", "userId": "null", "anonymousId": "edge-anon-2", "event": "Page Seen"},
    *[{"type": "identify", "userId": "edge-2", "context": {"locale": "en-GB"},
       "traits": {"phone": f"020 7946 000{i}"}} for i in range(5)],
]  # fmt: skip


def _started_engine():
    from onefold.store.spark import SparkEngine

    started = time.monotonic()
    engine = SparkEngine.local()
    engine.session.sql("SELECT 1").collect()  # the first query sets up the SQL session
    print(f"spark session: {time.monotonic() - started:.1f}s", flush=True)
    return engine


@pytest.fixture(scope="module")
def engine():
    """A local Spark session, started in the background: the JVM boots while the DuckDB
    side resolves the demo. Skipped only without Java; without PySpark (a dev dependency)
    the test fails."""
    if not java_available():
        pytest.skip("no Java runtime: Spark needs Java 17 or later (JAVA_HOME or java on PATH)")
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(_started_engine)
    yield future
    future.result().stop()
    pool.shutdown()


def _customers(con) -> list[tuple[str, str | None]]:
    """(user id, an email of the same profile or None) of the live profiles holding a
    user id, oldest first."""
    return con.execute(
        """
        SELECT u.value, min(e.value) FROM identifiers u
        LEFT JOIN identifiers e ON e.profile_id = u.profile_id AND e.namespace = 'email'
        WHERE u.namespace = 'user_id' GROUP BY u.value, u.first_seq ORDER BY u.first_seq
        """
    ).fetchall()


def _visitors(con) -> list[str]:
    """The anchors of live profiles with nothing but anonymous ids, oldest first."""
    return [value for (value,) in con.execute(
        """
        SELECT p.anchor_value FROM identity_profiles p JOIN identifiers i USING (profile_id)
        GROUP BY p.anchor_value, p.anchor_seq HAVING bool_and(i.namespace = 'anonymous_id')
        ORDER BY p.anchor_seq
        """
    ).fetchall()]  # fmt: skip


def _always_links(onefold: Onefold) -> dict[str, str]:
    """A visitor linked to a customer by hand, and two customers' user ids linked: merge
    protection refuses that one."""
    con = onefold.warehouse.cursor()
    customers, visitors = _customers(con), _visitors(con)
    graph = onefold.identity
    manual = graph.always_link(("anonymous_id", visitors[0]), ("user_id", customers[0][0]),
                               "same person at the till")  # fmt: skip
    refused = graph.always_link(("user_id", customers[1][0]), ("user_id", customers[2][0]),
                                "a typo")  # fmt: skip
    return {"manual": manual["id"], "refused": refused["id"]}


def _accepted_match(onefold: Onefold) -> str:
    """A probabilistic link between a visitor and a customer's email, accepted from the
    review queue (as the matcher would queue it, without running the matcher)."""
    con = onefold.warehouse.cursor()
    visitor = ("anonymous_id", _visitors(con)[1])
    email = ("email", next(email for _, email in _customers(con)[3:] if email))
    with onefold.warehouse.transaction() as tx:
        link_id = links.record(tx, "probabilistic", visitor, email, "review", probability=0.87,
                               reasons={"device": "same", "ip": "close"})  # fmt: skip
    assert link_id
    onefold.identity.decide_link(link_id, "accept", "looks right")
    return link_id


@pytest.fixture(scope="module")
def duckdb_side(engine, tmp_path_factory):
    """The demo resolved on DuckDB, as the graph tables and computed traits it wrote, with
    links made live between micro-batches (so they sit among the events)."""
    started = time.monotonic()
    traits = default_computed_traits() + EXTRA_TRAITS
    path: Path = tmp_path_factory.mktemp("spark-conformance")
    demo = generate_demo(seed=9, customers=80, now=AS_OF)
    onefold = Onefold(Settings(data_dir=path, admin_token="t", unify_interval_ms=10**9,
                               computed_traits=traits))  # fmt: skip
    onefold.identity.clock = lambda: AS_OF
    send_demo(onefold, demo)
    edge = onefold.sources.create("edge-cases", "web")
    for day, message in enumerate(EDGE_CASES, 1):
        message.setdefault("timestamp", f"2026-05-{day:02d}T10:00:00Z")
    envelope = Envelope(edge.id, "r", "test", now_utc())
    onefold.log.append_blocking(prepare(EDGE_CASES, envelope).data)
    onefold.log.rotate()
    onefold.loader.load_now()
    for _ in range(3):
        onefold.identity.process(limit=541)
    made = _always_links(onefold)
    for _ in range(3):
        onefold.identity.process(limit=541)
    made["probabilistic"] = _accepted_match(onefold)
    onefold.identity.process_all(limit=541)
    onefold.identity.recompute_traits()
    print(f"duckdb side: {time.monotonic() - started:.1f}s", flush=True)
    yield onefold, traits, made
    onefold.close()


def _rows(con, query: str) -> Counter:
    return Counter(con.execute(query).fetchall())


def _spark_rows(frame, columns: list[str]) -> Counter:
    return Counter(tuple(row[c] for c in columns) for row in frame.toArrow().to_pylist())


def _value(text: str | None):
    if text is None:
        return None
    value = orjson.loads(text)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def test_stitching_and_computed_traits_conform(duckdb_side, engine):
    from onefold.unify import overrides
    from onefold.unify.spark_stitch import computed_rows, stitch

    onefold, traits, made = duckdb_side
    con = onefold.warehouse.cursor()
    engine = engine.result()
    started = time.monotonic()
    engine.load_duckdb(con, ["events"])
    blocked, never = overrides.active(con)
    stitched = stitch(engine, onefold.settings.identity, blocked, never, links.active(con))
    assert stitched.links == 3
    stitched.register(engine)
    stitch_seconds = time.monotonic() - started
    spark_traits = computed_rows(engine, traits, AS_OF)
    print(f"spark stitch {stitch_seconds:.1f}s ({stitched.iterations} rounds); "
          f"traits {time.monotonic() - started:.1f}s")  # fmt: skip

    # The same profiles: every identifier owned by the same profile id.
    columns = ["namespace", "value", "profile_id", "first_seq", "source_id"]
    identifiers = _rows(con, f"SELECT {', '.join(columns)} FROM identifiers")
    assert len({row[2] for row in identifiers}) > 40
    owner = {(row[0], row[1]): row[2] for row in identifiers}
    edge = owner[("user_id", "edge-1")]
    assert owner[("phone", "+14155550100")] == owner[("email", "edge@example.com")] == edge
    assert owner[("anonymous_id", "edge-anon")] == edge
    assert len([key for key in owner if owner[key] == owner[("user_id", "edge-2")]]) == 4
    assert _spark_rows(stitched.identifiers, columns) == identifiers

    columns = ["profile_id", "anchor_namespace", "anchor_value", "anchor_seq", "merged_into"]
    assert _spark_rows(stitched.identity_profiles, columns) == _rows(
        con, f"SELECT {', '.join(columns)} FROM identity_profiles"
    )

    # The same merges and refusals, with the same rules and reasons; links' merges with
    # their method, probability and reasons, at their link's position.
    columns = ["seq", "message_id", "surviving_id", "absorbed_id", "namespace", "value",
               "method", "probability", "reasons"]  # fmt: skip
    merges = _rows(con, f"SELECT {', '.join(columns)} FROM identity_merges")
    by_link = {row[1]: row for row in merges if row[1].startswith(links.PREFIX)}
    manual, match = (by_link[links.PREFIX + made[kind]] for kind in ("manual", "probabilistic"))
    assert manual[6:] == ("manual", None, None)
    assert match[6:] == ("probabilistic", 0.87, '{"device":"same","ip":"close"}')
    assert 0 < manual[0] < match[0] < max(row[0] for row in merges)
    assert _spark_rows(stitched.identity_merges, columns) == merges
    columns = ["seq", "message_id", "namespace", "value", "profile_id", "other_profile_id",
               "rule", "detail"]  # fmt: skip
    refusals = _rows(con, f"SELECT {', '.join(columns)} FROM identity_refusals")
    assert {row[6] for row in refusals} == {"merge_protection", "limit"}
    assert [row[6] for row in refusals if row[1] == links.PREFIX + made["refused"]] == [
        "merge_protection"
    ]
    assert _spark_rows(stitched.identity_refusals, columns) == refusals

    # Every event reaches its profile through the same identifier; blocked values agree.
    columns = ["seq", "namespace", "value"]
    assert _spark_rows(stitched.event_identity, columns) == _rows(
        con, "SELECT seq, namespace, value FROM event_identity"
    )
    columns = ["namespace", "value", "occurrences", "last_seq"]
    blocked_rows = _rows(con, f"SELECT {', '.join(columns)} FROM identity_blocked")
    assert {row[:2] for row in blocked_rows} == {("email", "test@example.com"), ("user_id", "null")}
    assert _spark_rows(stitched.identity_blocked, columns) == blocked_rows

    # The same computed trait values, compared as JSON values (floats with a tolerance).
    expected = {
        (profile_id, name): _value(value)
        for profile_id, name, value in con.execute(
            "SELECT profile_id, name, value FROM computed_traits"
        ).fetchall()
    }
    actual = {(profile_id, name): _value(value) for profile_id, name, value in spark_traits}
    assert actual.keys() == expected.keys()
    differing = {key: (expected[key], actual[key]) for key in expected
                 if not _same(expected[key], actual[key])}  # fmt: skip
    assert not differing
    orders = [v for (_, name), v in expected.items() if name == "orders" and v]
    assert len(orders) > 10
    for name in ("favourite_category", "days_since_last_order", "first_category",
                 "first_coupon", "last_coupon", "average_order_value"):  # fmt: skip
        assert any(v is not None for (_, n), v in expected.items() if n == name), name
