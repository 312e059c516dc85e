"""Tests for the seeded demo-data generator (onefold.demo.generator)."""

from __future__ import annotations

import csv
import ipaddress
import re
import time
import unicodedata
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from onefold.demo import DemoData, generate_demo, write_csv
from onefold.demo.generator import POS_GO_LIVE, WINDOW_DAYS

NOW = datetime(2025, 6, 1, 15, 30, tzinfo=UTC)
WINDOW_START = datetime(2025, 6, 1, tzinfo=UTC) - timedelta(days=WINDOW_DAYS)
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ALLOWED_NETS = [
    ipaddress.ip_network(n)
    for n in (
        "192.0.2.0/24",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "2001:db8::/32",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
    )
]
KNOWN_TYPES = {"identify", "track", "page", "screen"}
CALLING = {"ES": "34", "DE": "49", "FR": "33", "GB": "44", "IT": "39", "NL": "31", "US": "1"}


@pytest.fixture(scope="module")
def demo() -> DemoData:
    started = time.perf_counter()
    data = generate_demo(seed=7, customers=2000, now=NOW)
    elapsed = time.perf_counter() - started
    assert elapsed < 30, f"generation took {elapsed:.1f}s"  # a few seconds normally
    return data


@pytest.fixture(scope="module")
def small() -> DemoData:
    return generate_demo(seed=3, customers=250, now=NOW)


def all_messages(data: DemoData) -> list[tuple[str, dict]]:
    return [(source, m) for source, msgs in data.messages.items() for m in msgs]


def parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.replace("ß", "ss"))
    return "".join(ch for ch in text if not unicodedata.combining(ch)).strip().lower()


def norm_phone(value: str, country: str) -> str:
    """E.164 digits (no +) for any of the ways the generator writes a phone number."""
    value = value.strip().replace("(0)", "")
    digits = "".join(ch for ch in value if ch.isdigit())
    if value.startswith("+"):
        return digits
    if value.startswith("00"):
        return digits[2:]
    if digits.startswith("0"):
        digits = digits[1:]
    return CALLING[country] + digits


def norm_email(value: str) -> str:
    local, _, domain = value.strip().lower().partition("@")
    return local.split("+")[0].replace(".", "") + "@" + domain


# ------------------------------------------------------------------------ determinism


def test_same_seed_and_now_give_identical_output(small: DemoData) -> None:
    again = generate_demo(seed=3, customers=250, now=NOW)
    assert orjson.dumps(again) == orjson.dumps(small)  # orjson serialises dataclasses


def test_different_seed_gives_different_output() -> None:
    a = generate_demo(seed=3, customers=150, now=NOW)
    b = generate_demo(seed=4, customers=150, now=NOW)
    assert orjson.dumps(a.messages) != orjson.dumps(b.messages)
    ids_a = {m["messageId"] for _, m in all_messages(a)}
    ids_b = {m["messageId"] for _, m in all_messages(b)}
    assert not ids_a & ids_b


def test_now_only_shifts_dates() -> None:
    """Random draws do not depend on now: same ids and events, timestamps shifted."""
    a = generate_demo(seed=5, customers=150, now=NOW)
    b = generate_demo(seed=5, customers=150, now=NOW + timedelta(days=10))
    for source in a.messages:
        assert [m["messageId"] for m in a.messages[source]] == [
            m["messageId"] for m in b.messages[source]
        ]
        for ma, mb in zip(a.messages[source], b.messages[source], strict=True):
            assert parse_ts(mb["timestamp"]) - parse_ts(ma["timestamp"]) == timedelta(days=10)
            assert ma.get("event") == mb.get("event")


def test_default_now_is_today_utc() -> None:
    data = generate_demo(seed=1, customers=40)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    stamps = [parse_ts(m["timestamp"]) for _, m in all_messages(data)]
    assert stamps and max(stamps) <= today + timedelta(days=1)
    assert min(stamps) >= today - timedelta(days=WINDOW_DAYS + 2)


def test_rejects_empty_world() -> None:
    with pytest.raises(ValueError):
        generate_demo(customers=0, now=NOW)


# ------------------------------------------------------------------------ message invariants


def test_sources(demo: DemoData) -> None:
    names = [s.name for s in demo.sources]
    assert names == ["web-shop", "mobile-app", "pos", "email", "support", "crm"]
    assert {s.type for s in demo.sources} == {"web", "app", "pos", "email", "support", "crm"}
    assert set(demo.messages) == set(names)
    assert demo.messages["crm"] == []
    for name in names[:-1]:
        assert demo.messages[name], name


def test_every_message_is_valid(demo: DemoData) -> None:
    seen_ids: set[str] = set()
    good_ips: set[str] = set()
    for _, m in all_messages(demo):
        assert m["type"] in KNOWN_TYPES, m
        message_id = m["messageId"]
        assert isinstance(message_id, str) and 0 < len(message_id) <= 100
        assert message_id not in seen_ids
        seen_ids.add(message_id)
        user_id, anonymous_id = m.get("userId"), m.get("anonymousId")
        assert user_id or anonymous_id, m
        for value in (user_id, anonymous_id):
            assert value is None or (isinstance(value, str) and value)
        assert ISO_Z.match(m["timestamp"]), m["timestamp"]
        ts = parse_ts(m["timestamp"])
        assert WINDOW_START - timedelta(hours=12) <= ts < NOW, m["timestamp"]
        ctx = m["context"]
        assert ctx["library"]["name"] and ctx["library"]["version"]
        assert re.match(r"^[a-z]{2}-[A-Z]{2}$", ctx["locale"]), ctx["locale"]
        assert ctx["userAgent"]
        if ctx["ip"] not in good_ips:
            ip = ipaddress.ip_address(ctx["ip"])
            assert any(ip in net for net in ALLOWED_NETS), ctx["ip"]
            good_ips.add(ctx["ip"])
        if m["type"] == "track":
            assert isinstance(m["event"], str) and m["event"]
            assert isinstance(m["properties"], dict)
        elif m["type"] == "identify":
            assert isinstance(m["traits"], dict) and m["traits"]
        else:
            assert m["name"] and isinstance(m["properties"], dict)
        if m["type"] == "page":
            props = m["properties"]
            assert props["url"].startswith("https://shop.example.com/")
            assert props["path"].startswith("/") and props["title"]
            assert "referrer" in props
        assert len(orjson.dumps(m)) < 32 * 1024


def test_time_order_per_source(demo: DemoData) -> None:
    for source, msgs in demo.messages.items():
        stamps = [m["timestamp"] for m in msgs]
        assert stamps == sorted(stamps), source


def test_messages_share_no_mutable_objects(small: DemoData) -> None:
    """A consumer may mutate one message without changing another."""
    owner: dict[int, str] = {}

    def walk(value: object, message_id: str) -> None:
        if isinstance(value, dict | list):
            assert owner.setdefault(id(value), message_id) == message_id
            for child in value.values() if isinstance(value, dict) else value:
                walk(child, message_id)

    for _, m in all_messages(small):
        walk(m, m["messageId"])


def test_identify_traits(demo: DemoData) -> None:
    identifies = [
        m
        for s, m in all_messages(demo)
        if m["type"] == "identify" and s in ("web-shop", "mobile-app")
    ]
    assert identifies
    for m in identifies:
        assert "@" in m["traits"]["email"]
        assert m["anonymousId"]
    with_user = [m for m in identifies if m.get("userId")]
    assert all(m["traits"].get("firstName") and m["traits"].get("lastName") for m in with_user)
    addresses = [m["traits"]["address"] for m in with_user if "address" in m["traits"]]
    assert addresses
    for address in addresses:
        assert {"street", "city", "postalCode", "country"} <= set(address)
    phones = [m["traits"]["phone"] for m in with_user if "phone" in m["traits"]]
    assert any(p.startswith("+") for p in phones) and any(not p.startswith("+") for p in phones)
    assert any("birthday" in m["traits"] for m in with_user)
    assert any("birthday" not in m["traits"] for m in with_user)


def test_several_countries_languages_and_currencies(demo: DemoData) -> None:
    messages = [m for _, m in all_messages(demo)]
    countries = {
        m["traits"]["address"]["country"]
        for m in messages
        if m["type"] == "identify" and "address" in m["traits"]
    }
    assert {"ES", "DE", "FR", "GB", "IT", "NL", "US"} <= countries
    locales = {m["context"]["locale"] for m in messages}
    assert {"es-ES", "de-DE", "fr-FR", "en-GB", "it-IT", "nl-NL", "en-US"} <= locales
    currencies = {
        m["properties"]["currency"] for m in messages if m.get("event") == "Order Completed"
    }
    assert currencies == {"EUR", "GBP", "USD"}
    zones = {m["context"]["timezone"] for m in messages}
    assert {"Europe/Madrid", "Europe/London", "America/New_York"} <= zones


# ------------------------------------------------------------------------ identity


def test_anonymous_browsing_is_later_identified(demo: DemoData) -> None:
    first_seen_without_user: set[str] = set()
    started: set[str] = set()
    linked_later = 0
    for source in ("web-shop", "mobile-app"):
        for m in demo.messages[source]:
            anon = m.get("anonymousId")
            if anon and anon not in started:
                started.add(anon)
                if not m.get("userId"):
                    first_seen_without_user.add(anon)
            if m["type"] == "identify" and m.get("userId") and anon in first_seen_without_user:
                linked_later += 1
                first_seen_without_user.discard(anon)
    assert linked_later > 200


def test_user_ids_appear_only_after_their_identify(demo: DemoData) -> None:
    """A userId shows up first in an identify, on the web or app, before other sources."""
    first: dict[str, dict] = {}
    for source in ("web-shop", "mobile-app", "email", "support"):
        for m in demo.messages[source]:
            user_id = m.get("userId")
            if user_id and (user_id not in first or m["timestamp"] < first[user_id]["timestamp"]):
                first[user_id] = m
    assert len(first) > 1000
    for m in first.values():
        assert m["type"] == "identify" and m.get("anonymousId"), m


def test_some_people_never_identify(demo: DemoData) -> None:
    user_anons = {
        m.get("anonymousId")
        for s, m in all_messages(demo)
        if s in ("web-shop", "mobile-app") and m.get("userId")
    }
    anonymous_people = [p for p in demo.people if p["kind"] == "anonymous"]
    assert len(anonymous_people) > 50
    for p in anonymous_people:
        assert not set(p["anonymous_ids"]) & user_anons


def test_people_use_several_devices(demo: DemoData) -> None:
    devices_of_user: dict[str, set[str]] = defaultdict(set)
    agents: dict[str, str] = {}
    for source in ("web-shop", "mobile-app"):
        for m in demo.messages[source]:
            if "anonymousId" not in m:
                continue  # server-side refunds
            agents[m["anonymousId"]] = m["context"]["userAgent"]
            if m.get("userId"):
                devices_of_user[m["userId"]].add(m["anonymousId"])
    multi = [anons for anons in devices_of_user.values() if len(anons) > 1]
    assert len(multi) > 100
    assert any(len({agents[a] for a in anons}) > 1 for anons in multi)
    app = [m for m in demo.messages["mobile-app"] if m.get("userId")]
    assert app and all({"device", "os", "app"} <= set(m["context"]) for m in app)


def test_ground_truth_matches_messages(demo: DemoData) -> None:
    anon_owner: dict[str, set[str]] = defaultdict(set)
    for p in demo.people:
        for anon in p["anonymous_ids"]:
            anon_owner[anon].add(p["person_id"])
    seen = {
        m["anonymousId"]
        for s, m in all_messages(demo)
        if s in ("web-shop", "mobile-app") and "anonymousId" in m
    }
    assert seen == set(anon_owner)
    shared = {a for a, owners in anon_owner.items() if len(owners) > 1}
    assert shared  # household computers
    assert all(len(anon_owner[a]) == 2 for a in shared)
    user_of = {p["user_id"]: p for p in demo.people if p["user_id"]}
    for s, m in all_messages(demo):
        if s in ("web-shop", "mobile-app") and m.get("userId") and m["type"] == "identify":
            person = user_of[m["userId"]]
            assert m["anonymousId"] in person["anonymous_ids"]
            assert m["traits"]["email"] in person["emails"]


# ------------------------------------------------------------------------ commerce


def test_funnel_events_present(demo: DemoData) -> None:
    events = {m.get("event") for m in demo.messages["web-shop"]}
    for event in (
        "Products Searched",
        "Product List Viewed",
        "Product Viewed",
        "Product Added",
        "Cart Viewed",
        "Checkout Started",
        "Order Completed",
        "Order Refunded",
        "Signed Up",
    ):
        assert event in events, event
    app_events = {m.get("event") for m in demo.messages["mobile-app"]}
    assert {"Application Installed", "Application Opened", "Order Completed"} <= app_events


def test_orders_reference_catalogue(demo: DemoData) -> None:
    catalog = {row["product_id"]: row for row in demo.catalog}
    assert len(catalog) >= 100
    assert len({row["category"] for row in demo.catalog}) >= 8
    for row in demo.catalog:
        for cur in ("eur", "gbp", "usd"):
            assert row[f"price_{cur}"] > row[f"cost_{cur}"] > 0
    orders = [m for _, m in all_messages(demo) if m.get("event") == "Order Completed"]
    assert len(orders) > 1000
    order_ids = [m["properties"]["order_id"] for m in orders]
    assert len(order_ids) == len(set(order_ids))
    for m in orders:
        props = m["properties"]
        cur = props["currency"].lower()
        assert props["products"] and props["revenue"] > 0
        subtotal = 0.0
        for line in props["products"]:
            product = catalog[line["product_id"]]
            assert line["sku"] == product["sku"] and line["name"] == product["name"]
            assert line["category"] == product["category"] and line["brand"]
            assert line["price"] == product[f"price_{cur}"]
            assert line["cost"] == product[f"cost_{cur}"]
            assert line["price"] > line["cost"] > 0 and line["quantity"] >= 1
            subtotal += line["price"] * line["quantity"]
        assert props["revenue"] <= round(subtotal, 2) + 0.01
        assert props["total"] >= props["revenue"] - 0.01 or props.get("discount")


def test_refunds_refer_to_earlier_orders(demo: DemoData) -> None:
    # order id -> (time, product ids, currency, userId); till sales before the POS
    # go-live are only in pos_rows, and their refunds may come later as messages.
    orders: dict[str, tuple[str, set[str], str, str | None]] = {}
    for row in demo.pos_rows:
        if row["event"] == "Order Completed":
            assert row["order_id"] == row["receipt_id"]
            orders[row["order_id"]] = (
                row["timestamp"],
                set(row["product_ids"].split("|")),
                row["currency"],
                row["loyalty_card"] or None,
            )
    for _, m in all_messages(demo):
        if m.get("event") == "Order Completed":
            props = m["properties"]
            orders[props["order_id"]] = (
                m["timestamp"],
                {line["product_id"] for line in props["products"]},
                props["currency"],
                m.get("userId"),
            )
    refunds = [m for _, m in all_messages(demo) if m.get("event") == "Order Refunded"]
    assert len(refunds) > 50
    assert any(r["properties"]["order_id"].startswith("ST-") for r in refunds)  # in store too
    for refund in refunds:
        props = refund["properties"]
        placed_at, ordered, currency, user_id = orders[props["order_id"]]
        assert placed_at < refund["timestamp"]
        assert {line["product_id"] for line in props["products"]} <= ordered
        assert props["reason"] and props["currency"] == currency
        assert refund.get("userId") == user_id
    row_refunds = [row for row in demo.pos_rows if row["event"] == "Order Refunded"]
    assert row_refunds
    for row in row_refunds:
        placed_at, ordered, _, _ = orders[row["order_id"]]
        assert placed_at < row["timestamp"] and row["receipt_id"] != row["order_id"]
        assert set(row["product_ids"].split("|")) <= ordered and row["reason"]


def test_pos_messages_and_rows(demo: DemoData) -> None:
    go_live = WINDOW_START + timedelta(milliseconds=POS_GO_LIVE)
    pos = demo.messages["pos"]
    assert all(parse_ts(m["timestamp"]) >= go_live for m in pos)
    by_card = [m for m in pos if m["type"] == "track" and m.get("userId")]
    by_phone = [m for m in pos if m["type"] == "track" and not m.get("userId")]
    assert by_card and by_phone
    assert all(m["context"]["traits"]["phone"] for m in by_phone)
    assert all(m["anonymousId"].startswith("pos-") for m in by_phone)
    cards = {p["loyalty_card"]: p for p in demo.people if p["loyalty_card"]}
    assert all(m["userId"] in cards for m in by_card)

    rows = demo.pos_rows
    assert len(rows) > 500
    assert len({row["receipt_id"] for row in rows}) == len(rows)  # one row per receipt
    catalog = {row["product_id"] for row in demo.catalog}
    stamps = [row["timestamp"] for row in rows]
    assert stamps == sorted(stamps)
    for row in rows:
        assert list(row) == list(rows[0])
        assert all(isinstance(value, str) for value in row.values())
        assert parse_ts(row["timestamp"]) < go_live
        # Exactly one identifier column is set, as an events import needs.
        assert bool(row["loyalty_card"]) != bool(row["anonymous_id"])
        assert bool(row["anonymous_id"]) == bool(row["customer_phone"])
        products = row["product_ids"].split("|")
        assert set(products) <= catalog
        assert len(products) == len(row["skus"].split("|")) == len(row["quantities"].split("|"))
        assert int(row["item_count"]) == sum(int(q) for q in row["quantities"].split("|"))
        assert float(row["revenue"]) > float(row["cost"]) > 0
    phones = {(p["country"], p["phone"]) for p in demo.people}
    for row in rows:
        if row["customer_phone"]:
            e164 = "+" + norm_phone(row["customer_phone"], row["country"])
            assert (row["country"], e164) in phones
        else:
            assert row["loyalty_card"] in cards


def test_email_and_support(demo: DemoData) -> None:
    email = demo.messages["email"]
    events = {m["event"] for m in email}
    assert {"Email Delivered", "Email Opened", "Email Link Clicked", "Unsubscribed"} <= events
    for m in email:
        props = m["properties"]
        assert props["campaign_id"] and props["campaign_name"] and props["email_id"]
        assert "@" in m["context"]["traits"]["email"]
    assert any(m.get("userId") for m in email) and any(not m.get("userId") for m in email)
    # Clicks bring people to the shop with campaign context.
    landed = [m for m in demo.messages["web-shop"] if m["context"].get("campaign")]
    assert landed and all(m["context"]["campaign"]["medium"] == "email" for m in landed)

    support = demo.messages["support"]
    events = {m["event"] for m in support if m["type"] == "track"}
    assert {"Ticket Created", "Chat Started"} <= events
    assert all(
        m["properties"]["topic"]
        for m in support
        if m["type"] == "track" and m["event"] in ("Ticket Created", "Chat Started")
    )
    assert any(m.get("userId") for m in support) and any(not m.get("userId") for m in support)


# ------------------------------------------------------------------------ CRM


def test_crm_rows_shape(demo: DemoData) -> None:
    rows = demo.crm_rows
    assert len(rows) > 1000
    header = list(rows[0])
    for row in rows:
        assert list(row) == header
        assert all(isinstance(value, str) for value in row.values())
    assert len({row["crm_id"] for row in rows}) == len(rows)
    crm_only = [p for p in demo.people if p["kind"] == "crm_only"]
    assert crm_only and all(p["crm_records"] for p in crm_only)
    assert all(not p["crm_records"] for p in demo.people if p["kind"] == "anonymous")


def test_crm_spelling_variants(demo: DemoData) -> None:
    rows = {row["crm_id"]: row for row in demo.crm_rows}
    counts: dict[str, int] = defaultdict(int)
    for p in demo.people:
        for record in p["crm_records"]:
            row, variants = rows[record["crm_id"]], set(record["variants"])
            names = {row["first_name"].strip(), row["last_name"].strip()}
            if "nickname" in variants:
                assert row["first_name"].strip().lower() != p["first_name"].lower()
                counts["nickname"] += p["user_id"] is not None
            if "swapped_names" in variants and not variants & {
                "nickname",
                "initial",
                "typo_last_name",
            }:
                assert fold(row["first_name"]) in fold(p["last_name"]) or fold(
                    row["last_name"]
                ) == fold(p["first_name"])
                counts["swapped"] += 1
            if "no_accents" in variants:
                assert any(
                    not n.isascii()
                    for n in (
                        p["first_name"],
                        p["last_name"],
                        p["address"]["city"],
                        p["address"]["street"],
                    )
                )
                counts["no_accents"] += 1
            if variants & {"upper_name", "lower_name"} and not variants & {
                "nickname",
                "initial",
                "typo_last_name",
                "no_accents",
                "de_translit",
                "first_surname_only",
            }:
                # casefold: "Gieß".upper() is "GIESS"
                assert {n.casefold() for n in names} == {
                    p["first_name"].casefold(),
                    p["last_name"].casefold(),
                }
                counts["case"] += 1
            if (
                row["email"]
                and variants & {"email_case", "email_no_dots", "email_plus_tag"}
                and "email_other" not in variants
            ):
                assert norm_email(row["email"]) in {norm_email(e) for e in p["emails"]}
                if len(p["emails"]) == 1:  # a changed address may equal a variant of the old
                    assert row["email"] != p["emails"][0]
                counts["email"] += 1
            if row["phone"]:
                e164 = "+" + norm_phone(row["phone"], p["country"])
                assert e164 == p["phone"], (row["phone"], p["phone"])
                counts["phone_national"] += not row["phone"].startswith(("+", "00"))
                counts["phone_intl"] += row["phone"].startswith(("+", "00"))
    for kind in (
        "nickname",
        "swapped",
        "no_accents",
        "case",
        "email",
        "phone_national",
        "phone_intl",
    ):
        assert counts[kind] >= 10, (kind, dict(counts))


def test_crm_links_to_identified_people(demo: DemoData) -> None:
    identified = [p for p in demo.people if p["identified_online"] and p["crm_records"]]
    assert len(identified) > 500
    rows = {row["crm_id"]: row for row in demo.crm_rows}
    numbered = [
        p for p in identified if any(rows[r["crm_id"]]["customer_number"] for r in p["crm_records"])
    ]
    # Some rows carry the web customer number; many must be matched by name/email/phone.
    assert 0.3 < len(numbered) / len(identified) < 0.8
    assert sum(len(p["crm_records"]) > 1 for p in demo.people) > 10  # CRM duplicates


# ------------------------------------------------------------------------ CSV


def test_write_csv_round_trip(tmp_path: Path, demo: DemoData) -> None:
    for name, rows in (("crm.csv", demo.crm_rows), ("pos.csv", demo.pos_rows)):
        path = tmp_path / "out" / name
        write_csv(rows, path)
        with path.open(encoding="utf-8", newline="") as handle:
            assert list(csv.DictReader(handle)) == rows
    empty = tmp_path / "empty.csv"
    write_csv([], empty)
    assert empty.read_text(encoding="utf-8").strip() == ""
