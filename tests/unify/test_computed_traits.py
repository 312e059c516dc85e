"""Computed traits declared as data: their values, windows, and incremental = full."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from onefold.collect.ingest import prepare
from onefold.collect.messages import Envelope, now_utc
from onefold.demo.generator import generate_demo
from onefold.runtime import Onefold
from onefold.settings import Settings, default_computed_traits
from onefold.unify import computed
from onefold.unify.computed import ComputedTrait, computed_sql
from onefold.unify.profiles import Lookup, find_profile, profile_view
from tests.unify.landing import land_demo

AS_OF = datetime(2026, 6, 1)


def _open(path: Path, traits: list[ComputedTrait]) -> Onefold:
    onefold = Onefold(Settings(data_dir=path, admin_token="t", unify_interval_ms=10**9,
                               computed_traits=traits))  # fmt: skip
    onefold.identity.clock = lambda: AS_OF
    return onefold


def _order(day: str, revenue: float, currency: str = "EUR", **extra) -> dict:
    return {"type": "track", "userId": "ana", "event": "Order Completed",
            "timestamp": f"2026-{day}T12:00:00Z",
            "properties": {"revenue": revenue, "currency": currency, **extra}}  # fmt: skip


def test_values_of_every_function(tmp_path):
    traits = [
        ComputedTrait(name="orders", function="count", event="Order Completed"),
        ComputedTrait(name="orders_90d", function="count", event="Order Completed",
                      window_days=90),
        ComputedTrait(name="eur_revenue", function="sum", event="Order Completed",
                      property="properties.revenue", where={"properties.currency": "EUR"}),
        ComputedTrait(name="biggest", function="max", event="Order Completed",
                      property="properties.revenue"),
        ComputedTrait(name="smallest", function="min", event="Order Completed",
                      property="properties.revenue"),
        ComputedTrait(name="aov", function="avg", event="Order Completed",
                      property="properties.revenue"),
        ComputedTrait(name="first_coupon", function="first", event="Order Completed",
                      property="properties.coupon"),
        ComputedTrait(name="last_coupon", function="last", event="Order Completed",
                      property="properties.coupon"),
        ComputedTrait(name="favourite", function="most_frequent", event="Product Viewed",
                      property="properties.category"),
        ComputedTrait(name="categories", function="distinct_count", event="Product Viewed",
                      property="properties.category"),
        ComputedTrait(name="first_seen", function="first_seen"),
        ComputedTrait(name="last_seen", function="last_seen"),
        ComputedTrait(name="days_since_order", function="days_since_last",
                      event="Order Completed"),
        ComputedTrait(name="future_proof", function="count", event="Never Happens"),
        # the event's own columns, filtered on as JSON paths are
        ComputedTrait(name="identifies", function="count", type="identify"),
        ComputedTrait(name="as_ana", function="count", where={"user_id": "ana"}),
        ComputedTrait(name="from_dev", function="count", where={"anonymous_id": "dev"}),
    ]  # fmt: skip
    onefold = _open(tmp_path, traits)
    source = onefold.sources.create("web", "web")
    views = [
        {
            "type": "track",
            "userId": "ana",
            "event": "Product Viewed",
            "timestamp": f"2026-05-0{i}T00:00:00Z",
            "properties": {"category": c},
        }
        for i, c in enumerate(["boots", "tents", "boots", "socks", "tents", "boots"], 1)
    ]
    messages = [
        {"type": "identify", "anonymousId": "dev", "userId": "ana",
         "timestamp": "2025-12-01T00:00:00Z"},
        _order("01-10", 100, coupon="WELCOME"), _order("04-01", 50.5, coupon="SPRING"),
        _order("05-20", 20, "GBP", coupon="MAY"), *views,
        _order("07-01", 999),  # after as_of: not counted
    ]  # fmt: skip
    onefold.log.append_blocking(prepare(messages, Envelope(source.id, "r", "t", now_utc())).data)
    onefold.flush()
    con = onefold.warehouse.cursor()
    values = profile_view(con, find_profile(con, Lookup("user_id", "ana")))["computed_traits"]
    assert values == {
        "orders": 3, "orders_90d": 2, "eur_revenue": 150.5, "biggest": 100.0,
        "smallest": 20.0, "aov": pytest.approx(170.5 / 3), "first_coupon": "WELCOME",
        "last_coupon": "MAY", "favourite": "boots", "categories": 3,
        "first_seen": "2025-12-01 00:00:00", "last_seen": "2026-05-20 12:00:00",
        "days_since_order": 12, "future_proof": 0, "identifies": 1, "as_ana": 10,
        "from_dev": 1,
    }  # fmt: skip
    onefold.close()


def test_incremental_equals_full_recompute_on_the_demo(tmp_path):
    demo = generate_demo(seed=9, customers=120, now=AS_OF)
    onefold = _open(tmp_path, default_computed_traits())
    land_demo(onefold, demo)
    onefold.identity.process_all(limit=541)
    con = onefold.warehouse.cursor()
    query = "SELECT profile_id, name, value FROM computed_traits"
    incremental = set(con.execute(query).fetchall())
    assert {name for _, name, _ in incremental} == {t.name for t in default_computed_traits()}
    orders = [v for _, name, v in incremental if name == "orders" and v != "0"]
    assert len(orders) > 20
    onefold.identity.recompute_traits()
    assert set(con.execute(query).fetchall()) == incremental
    onefold.close()


def test_a_filter_on_an_empty_name_or_type_is_still_applied_in_micro_batches(tmp_path):
    """An empty event name or type is a filter like any other: the facts keep the column
    it reads even when no other definition reads it."""
    traits = [
        ComputedTrait(name="unnamed", function="count", event=""),
        ComputedTrait(name="untyped", function="count", type=""),
    ]
    onefold = _open(tmp_path, traits)
    land_demo(onefold, generate_demo(seed=4, customers=20, now=AS_OF))
    onefold.identity.process_all(limit=97)
    con = onefold.warehouse.cursor()
    query = "SELECT profile_id, name, value FROM computed_traits"
    incremental = set(con.execute(query).fetchall())
    assert {value for _, _, value in incremental} == {"0"}
    assert (
        len(incremental)
        == 2
        * con.execute(
            "SELECT count(*) FROM identity_profiles WHERE merged_into IS NULL"
        ).fetchall()[0][0]
    )
    onefold.identity.recompute_traits()
    assert set(con.execute(query).fetchall()) == incremental
    onefold.close()


def test_definitions_are_validated_and_values_quoted():
    with pytest.raises(ValidationError):
        ComputedTrait(name="x; drop table events", function="count")
    with pytest.raises(ValidationError):
        ComputedTrait(name="total", function="sum", event="Order Completed")
    with pytest.raises(ValidationError):
        ComputedTrait(name="t", function="count", where={"properties.a') or 1=1 --": "x"})
    sneaky = ComputedTrait(name="t", function="count", event="x' OR '1'='1")
    sql = computed_sql([sneaky])
    assert "'x'' OR ''1''=''1'" in sql
    assert "GET_JSON_OBJECT" in computed_sql(
        [ComputedTrait(name="r", function="sum", property="properties.revenue")], "spark"
    )


def _facts_are_the_events(onefold: Onefold) -> None:
    """The facts table has the columns the definitions read, and exactly the stored events
    up to its last one, each once, with the values read from the raw message."""
    con = onefold.warehouse.cursor()
    columns = [
        row[0] for row in con.execute(
            f"SELECT column_name FROM information_schema.columns "
            f"WHERE table_name = '{computed.FACTS}' ORDER BY ordinal_position"
        ).fetchall()
    ]  # fmt: skip
    assert columns == computed.fact_columns(onefold.identity.computed_traits)
    held = con.execute(f"SELECT * FROM {computed.FACTS} ORDER BY seq").fetchall()
    extracted = "".join(
        f", raw ->> '$.{column[4:]}'" for column in columns if column.startswith("raw.")
    )
    plain = ", ".join(column for column in columns if not column.startswith("raw."))
    last = max(row[columns.index("seq")] for row in held)
    expected = con.execute(
        f"SELECT {plain}{extracted} FROM events WHERE seq <= ? ORDER BY seq", [last]
    ).fetchall()
    assert held == expected


def test_micro_batches_read_facts_that_follow_the_events_and_the_definitions(
    tmp_path, monkeypatch, caplog
):
    demo = generate_demo(seed=4, customers=80, now=AS_OF)
    onefold = _open(tmp_path, default_computed_traits())
    land_demo(onefold, demo)
    for _ in range(2):
        assert onefold.identity.process(limit=300) == 300
    _facts_are_the_events(onefold)
    # After a restart (closing resolves the rest) the facts are checked, not made again,
    # and go on from where they were.
    onefold.close()
    onefold = _open(tmp_path, default_computed_traits())
    source = onefold.sources.list()[0]

    def land_orders(count: int) -> None:
        orders = [_order("05-30", 10 + i) for i in range(count)]
        envelope = Envelope(source.id, "r", "t", now_utc())
        onefold.log.append_blocking(prepare(orders, envelope).data)
        onefold.log.rotate()
        onefold.loader.load_now()

    land_orders(20)
    with caplog.at_level(logging.INFO, logger="onefold.unify"):
        assert onefold.identity.process(limit=300) == 20
    assert "made the computed traits' facts" not in caplog.text
    _facts_are_the_events(onefold)
    # Another trait reading another path: the facts are made again with its column. The
    # first batch to do so fails after making them, and is rolled back with them.
    currency = ComputedTrait(
        name="usual_currency", function="most_frequent", event="Order Completed",
        property="properties.currency",
    )  # fmt: skip
    onefold.identity.computed_traits = [*default_computed_traits(), currency]
    refresh = computed.refresh

    def failing(*args, **kwargs):
        monkeypatch.setattr(computed, "refresh", refresh)
        raise RuntimeError("the batch fails after making the facts")

    monkeypatch.setattr(computed, "refresh", failing)
    land_orders(30)
    with pytest.raises(RuntimeError):
        onefold.identity.process(limit=300)
    onefold.identity.process_all(limit=300)
    _facts_are_the_events(onefold)
    # A rebuild resolves every event again; the facts are not added twice.
    onefold.identity.rebuild()
    _facts_are_the_events(onefold)
    con = onefold.warehouse.cursor()
    query = "SELECT profile_id, name, value FROM computed_traits"
    incremental = set(con.execute(query).fetchall())
    assert any(name == "usual_currency" for _, name, _ in incremental)
    onefold.identity.recompute_traits()
    assert set(con.execute(query).fetchall()) == incremental
    onefold.close()
