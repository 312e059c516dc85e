"""The fast full rebuild (onefold.unify.stitch) derives exactly what replaying every event
through the resolver does: identifiers, profiles, merges, refusals, event attributions,
blocked values, traits and computed traits."""

from __future__ import annotations

import random
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from onefold.collect.ingest import prepare
from onefold.collect.messages import Envelope, now_utc
from onefold.demo.generator import generate_demo
from onefold.runtime import Onefold
from onefold.settings import Settings
from onefold.unify import membership, overrides, stitch
from onefold.unify.computed import ComputedTrait
from onefold.unify.identifiers import group_messages
from onefold.unify.resolver import Resolver
from onefold.unify.rules import IdentityRules, NamespaceRule
from tests.unify.landing import send_demo

AS_OF = datetime(2026, 6, 1)
SNAPSHOT = {
    "identifiers": "SELECT namespace, value, profile_id, first_seq, source_id FROM identifiers",
    "profiles": "SELECT profile_id, anchor_namespace, anchor_value, anchor_seq, merged_into "
    "FROM identity_profiles",
    "merges": "SELECT seq, message_id, surviving_id, absorbed_id, namespace, value "
    "FROM identity_merges WHERE method = 'deterministic' ORDER BY seq, rowid",
    "refusals": "SELECT seq, message_id, namespace, value, profile_id, other_profile_id, rule, "
    "detail FROM identity_refusals",
    "events": "SELECT seq, namespace, value FROM event_identity",
    "blocked": "SELECT namespace, value, occurrences, last_seq FROM identity_blocked",
    "traits": "SELECT profile_id, trait, value, seq FROM profile_traits",
    "computed": "SELECT profile_id, name, value FROM computed_traits",
    "cursor": "SELECT seq FROM consumer_cursors WHERE consumer = 'identity'",
}
COMPUTED = [
    ComputedTrait(name="orders", function="count", event="Order Completed"),
    ComputedTrait(name="last_seen", function="last_seen"),
]


def _snapshot(onefold: Onefold) -> dict[str, object]:
    con = onefold.warehouse.cursor()
    result: dict[str, object] = {}
    for name, sql in SNAPSHOT.items():
        rows = con.execute(sql).fetchall()
        result[name] = rows if name == "merges" else sorted(rows, key=repr)
    return result


def _adversarial() -> list[dict]:
    """Messages that make every rule fire, and a few that just merge."""
    return [
        # a shared computer: two accounts meet on one anonymous id (merge protection)
        {"type": "identify", "anonymousId": "family-pc", "traits": {"email": "home@example.com"}},
        {"type": "identify", "userId": "parent-1", "anonymousId": "family-pc"},
        {"type": "identify", "userId": "teen-1", "anonymousId": "family-pc",
         "traits": {"email": "home@example.com"}},
        # a shop assistant types the shop's address for walk-in customers
        {"type": "identify", "anonymousId": "walk-in-1", "traits": {"email": "shop@example.com"}},
        {"type": "identify", "anonymousId": "walk-in-2",
         "traits": {"email": "shop@example.com", "firstName": "Eve"}},
        # one person, six e-mail addresses (limit 5)
        *[{"type": "identify", "userId": "collector", "traits": {"email": f"c{i}@example.com"}}
          for i in range(6)],
        # blocked values never link
        {"type": "identify", "userId": "null", "anonymousId": "junk-1"},
        {"type": "identify", "anonymousId": "junk-2", "traits": {"email": "test@example.com"}},
        {"type": "identify", "anonymousId": "junk-3", "traits": {"email": "TEST@example.com"}},
        # never linked by an override (below)
        {"type": "identify", "anonymousId": "kiosk-7"},
        {"type": "identify", "anonymousId": "kiosk-7", "userId": "kiosk-user"},
        # three devices, joined late: recorded merges in a clean component
        {"type": "page", "anonymousId": "tab-a"},
        {"type": "page", "anonymousId": "tab-b"},
        {"type": "page", "anonymousId": "tab-c"},
        {"type": "identify", "anonymousId": "tab-b", "traits": {"email": "tabs@example.com"}},
        {"type": "identify", "anonymousId": "tab-c", "userId": "tabs-user",
         "traits": {"email": "tabs@example.com", "phone": "+34 612 345 678"}},
        {"type": "identify", "anonymousId": "tab-a", "userId": "tabs-user"},
        {"type": "alias", "previousId": "tab-d", "userId": "tabs-user"},
        # the same phone written two ways in one message
        {"type": "identify", "anonymousId": "phone-1",
         "traits": {"phone": "+34612000111"}, "context": {"traits": {"phone": "612 000 111"},
                                                          "locale": "es-ES"}},
    ]  # fmt: skip


@pytest.fixture(scope="module")
def onefold(tmp_path_factory: pytest.TempPathFactory):
    path: Path = tmp_path_factory.mktemp("stitch")
    demo = generate_demo(seed=5, customers=120, now=AS_OF)
    instance = Onefold(Settings(data_dir=path, admin_token="t", unify_interval_ms=10**9))
    instance.identity.clock = lambda: AS_OF
    instance.identity.computed_traits = COMPUTED
    send_demo(instance, demo)
    web = instance.sources.list()[0]
    envelope = Envelope(web.id, "r", "t", now_utc())
    instance.log.append_blocking(prepare(_adversarial(), envelope).data)
    instance.log.rotate()
    instance.loader.load_now()
    with instance.warehouse.transaction() as con:
        con.execute(
            "INSERT INTO identity_overrides VALUES ('o1', 'never_link', 'anonymous_id', "
            "'kiosk-7', 'user_id', 'kiosk-user', 'kiosk', now()::TIMESTAMP, NULL)"
        )
        con.execute(
            "INSERT INTO identity_overrides VALUES ('o2', 'block', 'email', "
            "'shop@example.com', NULL, NULL, 'the shop', now()::TIMESTAMP, NULL)"
        )
    yield instance
    instance.close()


def _unhashed(onefold) -> int:
    """Attributions whose identifier hash is missing or wrong (micro-batches find events by
    it, see membership.events_of_identifiers)."""
    return (
        onefold.warehouse.cursor()
        .execute(
            "SELECT count(*) FROM event_identity "
            f"WHERE identifier_hash IS DISTINCT FROM {membership.IDENTIFIER_HASH}"
        )
        .fetchall()[0][0]
    )


def test_fast_rebuild_equals_the_replay(onefold):
    replayed = onefold.identity.rebuild()
    assert _unhashed(onefold) == 0
    expected = _snapshot(onefold)
    assert len(expected["merges"]) > 10 and len(expected["refusals"]) >= 4
    rules = {row[6] for row in expected["refusals"]}
    assert {"merge_protection", "limit", "never_link"} <= rules
    assert expected["blocked"] and expected["computed"] and expected["traits"]
    assert onefold.identity.rebuild_fast() == replayed
    assert _unhashed(onefold) == 0
    got = _snapshot(onefold)
    for name in SNAPSHOT:
        assert got[name] == expected[name], name
    # and after the fast rebuild, new events continue incrementally
    assert onefold.identity.process_all() == 0


def test_clean_components_skip_the_resolver(onefold):
    con = onefold.warehouse.cursor()
    blocked, never = overrides.active(con)
    result = stitch.stitch_all(con, onefold.settings.identity, never, blocked)
    stats = result.stats
    assert stats["dirty_messages"] < stats["messages"] / 2
    assert stats["clean_merges"] > 0
    assert 0 < stats["dirty_components"] < stats["components"]


def _random_case(seed: int) -> tuple[list[tuple], IdentityRules]:
    rnd = random.Random(seed)
    namespaces = dict(IdentityRules().namespaces)
    if seed % 2:  # tight limits, so that they fire
        namespaces["email"] = NamespaceRule(priority=20, normalise="email", limit=2)
        namespaces["anonymous_id"] = NamespaceRule(priority=90, limit=4)
    rules = IdentityRules(namespaces=namespaces)
    people = rnd.randint(1, 30)
    universe = {
        "user_id": [f"u{i}" for i in range(people)] + ["null"],
        "email": [f"e{i}@x.com" for i in range(people)] + ["test@example.com"],
        "phone": [f"+3460000{i:04d}" for i in range(people // 2 + 1)],
        "anonymous_id": [f"a{i}" for i in range(people * 5)],
    }
    rows = set()
    for i in range(rnd.choice([5, 40, 150])):
        seq = i * 3 + rnd.randint(0, 1)
        for _ in range(rnd.choice([1, 2, 2, 3, 4])):
            namespace = rnd.choice(list(universe))
            value = rnd.choice(universe[namespace])
            rows.add((seq, f"m{seq}", f"s{seq % 3}", None, namespace, value))
    return sorted(rows, key=lambda row: row[0]), rules


def _clashing_hashes(code: np.ndarray, value: pa.Array) -> np.ndarray:
    """Two different identifiers share a hash whenever their lengths agree mod 3."""
    return np.asarray(pc.binary_length(value), np.uint64) % 3


def _prefix_clashing_hashes(code: np.ndarray, value: pa.Array) -> np.ndarray:
    """Distinct hashes, all under one prefix (the sort packs the row number below it)."""
    numbers = np.asarray(pc.dictionary_encode(value).indices, np.uint64)
    return numbers * 8 + code.astype(np.uint64)


def _rows(table: pa.Table) -> list[tuple]:
    return list(zip(*[column.to_pylist() for column in table.columns], strict=True))


@pytest.mark.parametrize("seed", range(60))
def test_random_histories_equal_the_resolver(seed, monkeypatch):
    if seed % 4 == 1:  # hash clashes galore: identifiers must still be told apart exactly
        monkeypatch.setattr(stitch, "_hashes", _clashing_hashes)
    if seed % 4 == 2:  # many identifiers under one hash prefix
        monkeypatch.setattr(stitch, "_hashes", _prefix_clashing_hashes)
    rows, rules = _random_case(seed)
    never = [(("anonymous_id", "a1"), ("user_id", "u1"))] if seed % 3 == 0 else []
    blocked = frozenset({("email", "e3@x.com")}) if seed % 5 == 0 else frozenset()
    extracted = group_messages(rows, rules, blocked)
    resolver = Resolver(rules, never)
    resolver.resolve(extracted.messages)
    expected = stitch._changes_tables(resolver, resolver.changes)
    shuffled = rows[:]
    random.Random(seed).shuffle(shuffled)
    table = pa.table({
        "seq": pa.array([r[0] for r in shuffled], pa.int64()),
        "message_id": [r[1] for r in shuffled], "source_id": [r[2] for r in shuffled],
        "namespace": [r[4] for r in shuffled], "value": [r[5] for r in shuffled],
    })  # fmt: skip
    got = stitch.stitch(table, rules, never, blocked)
    for name in ("identifiers", "profiles", "refusals", "attributions"):
        assert sorted(_rows(getattr(got, name)), key=repr) == sorted(
            _rows(getattr(expected, name)), key=repr
        ), name
    assert _rows(got.merges) == _rows(expected.merges)
    assert sorted(_rows(got.blocked)) == sorted(
        (k[0], k[1], count, last) for k, (count, last) in extracted.blocked.items()
    )
