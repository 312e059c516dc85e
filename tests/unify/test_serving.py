"""The serving store answers every lookup exactly as the warehouse would, whatever changed
the graph, and catches up after a failure or the loss of its file."""

from __future__ import annotations

import logging
import shutil
import sqlite3
import threading
import time
from datetime import datetime
from pathlib import Path

import orjson
import pytest

from onefold.runtime import Onefold
from onefold.settings import Settings
from onefold.store import compaction, serving
from onefold.store.serving import PROFILE_NAMESPACE, ServingStore
from onefold.unify import graph, publish
from onefold.unify.profiles import profile_views_json
from tests.unify.households import load_households, open_paused, send


@pytest.fixture
def onefold(tmp_path: Path):
    instance = load_households(tmp_path, limit=700)
    yield instance
    instance.close()


def assert_served_as_stored(instance: Onefold) -> None:
    """Every identifier and profile id finds its live profile in the serving store, every
    live profile's view is the one the warehouse gives now, and the store holds nothing
    else: what was published change by change equals a fresh build."""
    con = instance.warehouse.cursor()
    serving = instance.serving
    assert publish.pending(con) == 0
    identifiers = con.execute("SELECT namespace, value, profile_id FROM identifiers").fetchall()
    for namespace, value, profile_id in identifiers:
        assert serving.find(namespace, value) == profile_id, (namespace, value)
    profiles = con.execute(
        "SELECT profile_id, coalesce(merged_into, profile_id) FROM identity_profiles"
    ).fetchall()
    for profile_id, live in profiles:
        assert serving.find(PROFILE_NAMESPACE, profile_id) == live
    live_ids = sorted({live for _, live in profiles})
    for profile_id, view in profile_views_json(con, live_ids).items():
        served = serving.view(profile_id)
        assert served is not None, profile_id
        assert orjson.loads(served) == orjson.loads(view), profile_id
    absorbed = sum(profile_id != live for profile_id, live in profiles)
    assert serving.counts() == {
        "keys": len(identifiers) + absorbed,
        "views": len(live_ids),
    }


def _owner(instance: Onefold, namespace: str, value: str) -> str | None:
    return instance.serving.find(namespace, value)


def test_micro_batches_publish_every_change(onefold):
    con = onefold.warehouse.cursor()
    merged = con.execute(
        "SELECT count(*) FROM identity_profiles WHERE merged_into IS NOT NULL"
    ).fetchone()[0]
    assert merged > 0  # the workload does merge profiles
    assert _owner(onefold, "anonymous_id", "walk-in-1") == _owner(
        onefold, "anonymous_id", "walk-in-2"
    )
    assert_served_as_stored(onefold)
    view = orjson.loads(onefold.serving.view(_owner(onefold, "anonymous_id", "walk-in-2")))
    assert view["traits"]["firstName"]["value"] == "Eve"
    assert {"namespace": "email", "value": "shop@example.com"}.items() <= next(
        i for i in view["identities"] if i["namespace"] == "email"
    ).items()


def test_overrides_rebuilds_and_recomputes_are_published(onefold):
    onefold.identity.add_override("block", ("email", "shop@example.com"), None, "shop address")
    assert _owner(onefold, "anonymous_id", "walk-in-1") != _owner(
        onefold, "anonymous_id", "walk-in-2"
    )
    assert _owner(onefold, "email", "shop@example.com") is None
    assert_served_as_stored(onefold)
    onefold.identity.add_override(
        "never_link", ("anonymous_id", "family-pc"), ("user_id", "parent-1"), "shared computer"
    )
    assert_served_as_stored(onefold)
    onefold.identity.rebuild_fast()
    assert_served_as_stored(onefold)
    onefold.identity.rebuild()
    assert_served_as_stored(onefold)
    onefold.identity.clock = lambda: datetime(2027, 6, 1)  # time windows move on
    onefold.identity.recompute_traits()
    assert_served_as_stored(onefold)


def _unhashed(instance: Onefold) -> int:
    return (
        instance.warehouse.cursor()
        .execute(
            "SELECT count(*) FROM identifiers "
            "WHERE profile_hash IS DISTINCT FROM md5_number(profile_id)"
        )
        .fetchall()[0][0]
    )


def test_identifiers_keep_their_profiles_hash_through_merges_unmerges_and_rebuilds(onefold):
    """Views find a profile's identifiers by its hash: every writer of identifiers keeps
    it (micro-batches that merge, the replay of an override, both rebuilds)."""
    assert _unhashed(onefold) == 0
    onefold.identity.add_override(
        "never_link", ("anonymous_id", "family-pc"), ("user_id", "parent-1"), "shared computer"
    )
    assert _unhashed(onefold) == 0
    onefold.identity.rebuild_fast()
    assert _unhashed(onefold) == 0
    onefold.identity.rebuild()
    assert _unhashed(onefold) == 0
    assert_served_as_stored(onefold)


def test_new_events_reach_the_served_profile(onefold):
    web = onefold.sources.list()[0].name
    send(onefold, web, [
        {"type": "identify", "anonymousId": "walk-in-1", "traits": {"email": "eve@example.org"}},
        {"type": "identify", "userId": "eve-42", "traits": {"email": "eve@example.org",
                                                            "lastName": "Moreau"}},
    ])  # fmt: skip
    onefold.flush()
    profile_id = _owner(onefold, "user_id", "eve-42")
    assert profile_id == _owner(onefold, "anonymous_id", "walk-in-2")
    view = orjson.loads(onefold.serving.view(profile_id))
    assert view["traits"]["lastName"]["value"] == "Moreau"
    assert_served_as_stored(onefold)


def _orders(user_ids: list[str], revenue: float = 10.0) -> list[dict]:
    """An order of each user, placed before the households' clock (computed traits count
    the events up to it)."""
    return [
        {"type": "track", "event": "Order Completed", "userId": user_id,
         "timestamp": "2026-05-20T10:00:00Z",
         "properties": {"order_id": f"o-{user_id}-{revenue}", "revenue": revenue}}
        for user_id in user_ids
    ]  # fmt: skip


def _known_users(instance: Onefold, count: int) -> list[str]:
    return [row[0] for row in instance.warehouse.cursor().execute(
        "SELECT value FROM identifiers WHERE namespace = 'user_id' ORDER BY value LIMIT ?",
        [count],
    ).fetchall()]  # fmt: skip


def test_events_that_change_only_computed_traits_set_them_in_the_stored_views(onefold, monkeypatch):
    """Orders of known customers change nothing but their computed traits: the batch marks
    them with their computed traits and the publish sets that part of each stored view,
    without building the views in the warehouse; the views equal the warehouse's, and the
    latest of two batches' marks wins."""
    users = _known_users(onefold, 12)
    assert len(users) == 12
    web = onefold.sources.list()[0].name
    built: list[str] = []
    views_and_keys = publish.profile_views_and_keys

    def recording(con, profile_ids, **kwargs):
        built.extend(profile_ids)
        return views_and_keys(con, profile_ids, **kwargs)

    monkeypatch.setattr(publish, "profile_views_and_keys", recording)
    con = onefold.warehouse.cursor()
    for revenue in (10.0, 25.0):  # two batches, one publish
        send(onefold, web, _orders(users, revenue=revenue))
        onefold.log.rotate()
        onefold.loader.load_now()
        assert onefold.identity.process() == len(users)
    marks = con.execute(
        "SELECT count(*), count(computed_traits), count(DISTINCT profile_id) FROM serving_dirty"
    ).fetchall()
    assert marks == [(2 * len(users), 2 * len(users), len(users))]
    assert onefold.identity.publish() == len(users)
    assert built == []
    assert_served_as_stored(onefold)
    view = orjson.loads(onefold.serving.view(_owner(onefold, "user_id", users[0])))
    stored = orjson.loads(con.execute(
        "SELECT traits FROM profile_computed_traits WHERE profile_id = ?",
        [_owner(onefold, "user_id", users[0])],
    ).fetchall()[0][0])  # fmt: skip
    assert view["computed_traits"] == stored
    assert stored["orders"] >= 2 and stored["revenue"] >= 35.0  # both batches' orders


def _renames_and_orders(user_ids: list[str], plan: str) -> list[dict]:
    """An identify call with a new trait and an order for each user: whole views."""
    return [
        {"type": "identify", "userId": user_id, "traits": {"plan": plan},
         "timestamp": "2026-05-20T10:00:00Z"}
        for user_id in user_ids
    ] + _orders(user_ids, revenue=40.0)  # fmt: skip


def test_whole_views_of_a_batch_take_the_computed_traits_its_marks_carry(onefold, monkeypatch):
    """A micro-batch that gives profiles whole views marks them with the computed traits
    it gave them: the publish builds the views with those, not reading them back, and the
    views equal the warehouse's."""
    users = _known_users(onefold, 6)
    given: list[dict | None] = []
    views_and_keys = publish.profile_views_and_keys

    def recording(con, profile_ids, computed=None):
        given.append(computed)
        return views_and_keys(con, profile_ids, computed=computed)

    monkeypatch.setattr(publish, "profile_views_and_keys", recording)
    send(onefold, onefold.sources.list()[0].name, _renames_and_orders(users, "silver"))
    onefold.log.rotate()
    onefold.loader.load_now()
    assert onefold.identity.process() == 2 * len(users)
    con = onefold.warehouse.cursor()
    marks = con.execute(
        "SELECT count(*) FILTER (whole AND computed_traits IS NOT NULL), count(*) "
        "FROM serving_dirty"
    ).fetchall()
    assert marks == [(len(users), len(users))]
    assert onefold.identity.publish() == len(users)
    owners = {_owner(onefold, "user_id", user) for user in users}
    assert len(given) == 1 and set(given[0]) == owners
    for profile_id, traits in given[0].items():
        stored = con.execute(
            "SELECT CAST(traits AS VARCHAR) FROM profile_computed_traits WHERE profile_id = ?",
            [profile_id],
        ).fetchall()
        assert traits == stored[0][0] and orjson.loads(traits)["revenue"] >= 40.0
    assert_served_as_stored(onefold)


def test_a_whole_mark_without_computed_traits_reads_them_from_the_warehouse(onefold):
    """A mark without computed traits (an override, an unmerge) may follow a batch's mark
    that carries them, after the stored ones changed: the publish reads the stored ones."""
    (user,) = _known_users(onefold, 1)
    send(onefold, onefold.sources.list()[0].name, _renames_and_orders([user], "bronze"))
    onefold.log.rotate()
    onefold.loader.load_now()
    assert onefold.identity.process() == 2
    profile_id = _owner(onefold, "user_id", user)
    with onefold.warehouse.transaction() as con:
        con.execute(
            "UPDATE profile_computed_traits SET traits = '{\"orders\":99}' WHERE profile_id = ?",
            [profile_id],
        )
        publish.mark_dirty(con, [profile_id])
    onefold.identity.publish()
    assert orjson.loads(onefold.serving.view(profile_id))["computed_traits"] == {"orders": 99}
    assert_served_as_stored(onefold)


def test_group_calls_and_identify_calls_of_served_profiles_give_them_whole_views(onefold):
    """A group call or an identify call changes a served profile's accounts or traits
    without any new identifier: the profile is given its whole view, not only its
    computed traits."""
    member, renamed = _known_users(onefold, 2)
    send(onefold, onefold.sources.list()[0].name, [
        {"type": "group", "userId": member, "groupId": "acme-gmbh",
         "traits": {"name": "Acme"}, "timestamp": "2026-05-20T10:00:00Z"},
        {"type": "identify", "userId": renamed, "traits": {"plan": "gold-tier"},
         "timestamp": "2026-05-20T10:00:00Z"},
    ])  # fmt: skip
    onefold.flush()
    assert (
        "acme-gmbh"
        in orjson.loads(onefold.serving.view(_owner(onefold, "user_id", member)))["accounts"]
    )
    traits = orjson.loads(onefold.serving.view(_owner(onefold, "user_id", renamed)))["traits"]
    assert traits["plan"]["value"] == "gold-tier"
    assert_served_as_stored(onefold)


def test_a_failed_write_of_computed_traits_is_retried_and_loses_nothing(onefold, monkeypatch):
    users = _known_users(onefold, 4)
    store = onefold.serving
    original = store.set_computed_traits

    def failing(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(store, "set_computed_traits", failing)
    send(onefold, onefold.sources.list()[0].name, _orders(users, revenue=77.0))
    onefold.log.rotate()
    onefold.loader.load_now()
    with pytest.raises(OSError):
        onefold.identity.process_all()
    con = onefold.warehouse.cursor()
    assert publish.pending(con) == len(users)  # the marks wait
    monkeypatch.setattr(store, "set_computed_traits", original)
    assert onefold.identity.publish() == len(users)
    assert_served_as_stored(onefold)


def test_a_profile_marked_for_its_computed_traits_but_not_served_gets_its_whole_view(onefold):
    users = _known_users(onefold, 3)
    gone = _owner(onefold, "user_id", users[0])
    store = sqlite3.connect(onefold.serving.path)
    store.execute("DELETE FROM profile_views WHERE profile_id = ?", (gone,))
    store.commit()
    store.close()
    send(onefold, onefold.sources.list()[0].name, _orders(users))
    onefold.flush()
    assert onefold.serving.view(gone) is not None
    assert_served_as_stored(onefold)


def test_without_computed_traits_events_that_change_nothing_else_mark_nothing(tmp_path):
    instance = Onefold(Settings(data_dir=tmp_path / "data", admin_token="t",
                                unify_interval_ms=10**9, computed_traits=[]))  # fmt: skip
    try:
        web = instance.sources.create("web", "web").name
        send(instance, web, [
            {"type": "identify", "userId": f"u-{i}", "traits": {"firstName": f"N{i}"}}
            for i in range(5)
        ])  # fmt: skip
        instance.flush()
        send(instance, web, _orders([f"u-{i}" for i in range(5)]))
        instance.log.rotate()
        instance.loader.load_now()
        con = instance.warehouse.cursor()
        assert instance.identity.process() == 5
        assert publish.pending(con) == 0
        assert_served_as_stored(instance)
    finally:
        instance.close()


def test_a_failed_publish_is_retried_and_loses_nothing(onefold, monkeypatch):
    store = onefold.serving
    original = store.replace

    def failing(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(store, "replace", failing)
    web = onefold.sources.list()[0].name
    send(onefold, web, [{"type": "identify", "userId": "late-1", "anonymousId": "walk-in-1"}])
    onefold.log.rotate()
    onefold.loader.load_now()
    with pytest.raises(OSError):
        onefold.identity.process_all()
    con = onefold.warehouse.cursor()
    assert con.execute("SELECT count(*) FROM identifiers WHERE value = 'late-1'").fetchone()[0]
    assert publish.pending(con) > 0  # the graph moved on; the marks wait
    assert _owner(onefold, "user_id", "late-1") is None
    monkeypatch.setattr(store, "replace", original)
    onefold.identity.publish()
    assert _owner(onefold, "user_id", "late-1") == _owner(onefold, "anonymous_id", "walk-in-2")
    assert_served_as_stored(onefold)


def test_publishing_in_small_chunks_gives_the_same_store(onefold):
    con = onefold.warehouse.cursor()
    every = [row[0] for row in con.execute("SELECT profile_id FROM identity_profiles").fetchall()]
    publish.mark_dirty(con, every)
    assert publish.publish(onefold.warehouse, onefold.serving, chunk=7) == len(every) > 7
    assert_served_as_stored(onefold)


def test_a_lost_serving_file_is_rebuilt_on_start(onefold):
    data_dir = onefold.settings.data_dir
    expected = {
        key: onefold.serving.find(*key)
        for key in [("anonymous_id", "walk-in-1"), ("user_id", "teen-1")]
    }
    onefold.close()
    shutil.rmtree(data_dir / "serving")
    reopened = open_paused(data_dir)
    try:
        reopened.identity.publish()
        assert {key: reopened.serving.find(*key) for key in expected} == expected
        assert_served_as_stored(reopened)
    finally:
        reopened.close()
    onefold.close = lambda: None  # closed above


def test_a_store_of_an_older_layout_is_rebuilt_on_start(onefold):
    """A store written by an earlier Onefold (views without their keys, a key for every
    live profile id) is dropped and rebuilt from the warehouse, not misread."""
    data_dir = onefold.settings.data_dir
    onefold.close()
    shutil.rmtree(data_dir / "serving")
    (data_dir / "serving").mkdir()
    old = sqlite3.connect(data_dir / "serving" / "serving.3.sqlite")
    old.executescript(
        """
        CREATE TABLE profile_keys (namespace TEXT, value TEXT, profile_id TEXT,
                                   PRIMARY KEY (namespace, value)) WITHOUT ROWID;
        CREATE TABLE profile_views (profile_id TEXT PRIMARY KEY, view BLOB NOT NULL);
        INSERT INTO profile_keys VALUES ('anonymous_id', 'walk-in-1', 'pr_stale');
        """
    )
    old.close()
    reopened = open_paused(data_dir)
    try:
        assert reopened.serving.created
        reopened.identity.publish()
        assert reopened.serving.find("anonymous_id", "walk-in-1") not in (None, "pr_stale")
        assert_served_as_stored(reopened)
    finally:
        reopened.close()
    onefold.close = lambda: None  # closed above


def _wait_for(check, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_the_worker_publishes_beside_resolving_and_reports_a_failed_publish(tmp_path, monkeypatch):
    """As deployed: the worker's resolving thread goes on while its publishing thread
    fails; the failure is reported, and once publishing works again the profile shows."""
    settings = Settings(
        data_dir=tmp_path, admin_token="t", unify_interval_ms=20, publish_interval_ms=20
    )
    instance = Onefold(settings)
    try:
        instance.sources.create("web", "web")
        store = instance.serving
        original = store.replace

        def failing(*args, **kwargs):
            raise OSError("disk full")

        monkeypatch.setattr(store, "replace", failing)
        send(instance, "web", [{"type": "identify", "userId": "u-1", "anonymousId": "a-1"}])
        instance.log.rotate()
        instance.loader.load_now()
        _wait_for(lambda: instance.unify.last_error is not None)
        assert "disk full" in instance.unify.last_error
        assert instance.unify.resolve_error is None  # resolving went on
        con = instance.warehouse.cursor()
        assert con.execute("SELECT count(*) FROM identifiers WHERE value = 'u-1'").fetchone()[0]
        assert store.find("user_id", "u-1") is None
        monkeypatch.setattr(store, "replace", original)
        _wait_for(lambda: store.find("user_id", "u-1") is not None)
        _wait_for(lambda: instance.unify.last_error is None)
        assert store.find("anonymous_id", "a-1") == store.find("user_id", "u-1")
    finally:
        instance.close()


def test_the_store_is_checkpointed_beside_publishing_and_keeps_every_view(tmp_path):
    """Publishing never copies the WAL back itself; a thread of the store's own does,
    while lookups go on, and everything written is in the file after a reopen."""
    store = ServingStore(tmp_path / "serving", checkpoint_interval=0.05)
    views = {}
    for round_ in range(20):
        profiles = []
        for n in range(200):
            profile_id = f"pr_{n:04d}"
            view = orjson.dumps({"profile_id": profile_id, "round": round_, "pad": "x" * 500})
            keys = orjson.dumps([["user_id", f"u{n}"], ["email", f"{n}-{round_ % 3}@example.com"]])
            profiles.append((profile_id, view, keys))
            views[profile_id] = view
        store.replace([p[0] for p in profiles], profiles)
        assert store.view("pr_0007") == views["pr_0007"]
    writer_checkpoints = store._connection().execute("PRAGMA wal_autocheckpoint").fetchone()
    assert writer_checkpoints == (0,)
    _wait_for(lambda: store.unchecked_writes == 0)
    # The database file alone, without its WAL, holds the last round.
    alone = tmp_path / "alone.sqlite"
    shutil.copy(store.path, alone)
    copy = sqlite3.connect(alone)
    assert dict(copy.execute("SELECT profile_id, view FROM profile_views")) == views
    copy.close()
    store.close()

    reopened = ServingStore(tmp_path / "serving")
    try:
        assert not reopened.created
        assert reopened.counts() == {"keys": 400, "views": 200}
        assert all(reopened.view(profile_id) == view for profile_id, view in views.items())
        assert reopened.find("email", "13-1@example.com") == "pr_0013"  # round 19: 19 % 3
    finally:
        reopened.close()


def test_the_worker_publishes_what_one_round_cannot_take(tmp_path, monkeypatch):
    """More profiles changed than a publish round takes: the publisher goes round again
    by itself, without waiting for the next micro-batch, until every one is served."""
    monkeypatch.setattr(graph, "PUBLISH_CHUNK", 2)
    settings = Settings(
        data_dir=tmp_path, admin_token="t", unify_interval_ms=20, publish_interval_ms=20
    )
    instance = Onefold(settings)
    try:
        instance.sources.create("web", "web")
        users = [f"u-{n}" for n in range(7)]
        send(instance, "web", [{"type": "identify", "userId": user} for user in users])
        instance.log.rotate()
        instance.loader.load_now()
        _wait_for(lambda: all(instance.serving.find("user_id", user) for user in users))
        # the marks are cleared in the warehouse right after the views are written
        _wait_for(lambda: publish.pending(instance.warehouse.cursor()) == 0)
        assert instance.unify.last_error is None
    finally:
        instance.close()


def test_the_store_keeps_any_text_byte_for_byte(tmp_path, monkeypatch):
    """Views, keys and profile ids travel to SQLite inside JSON parameters, a few rows per
    statement; whatever characters they hold (quotes, backslashes, control characters,
    non-ASCII, text that looks like a number) come back as the same bytes, keys that move
    between profiles follow them, a profile no longer live is gone with its keys, and a
    rebuild stores the same."""
    monkeypatch.setattr(serving, "ROWS_PER_STATEMENT", 2)
    store = ServingStore(tmp_path / "serving")
    awkward = ['qu"ote', "back\\slash", "tab\tnew\nline", "Zoë 😀", "00123", "1e5", "\u2028"]
    try:
        first = []
        for n, text in enumerate(awkward):
            profile_id = f"pr_{text}_{n}"
            view = orjson.dumps({"profile_id": profile_id, "name": text, "n": 1.5e300})
            keys = orjson.dumps([["email", f"{text}@example.com"], ["custom", text]])
            first.append((profile_id, view, keys))
        store.replace([], first)
        for profile_id, view, keys in first:
            assert store.view(profile_id) == view
            for namespace, value in orjson.loads(keys):
                assert store.find(namespace, value) == profile_id
        stored = store._connection().execute("SELECT typeof(view), typeof(keys) FROM profile_views")
        assert set(stored) == {("blob", "blob")}

        # The first profile absorbs the second: the second's keys move, its view goes.
        (a, _, keys_a), (b, _, keys_b) = first[0], first[1]
        merged_keys = orjson.dumps(orjson.loads(keys_a) + orjson.loads(keys_b) + [["profile", b]])
        merged_view = orjson.dumps({"profile_id": a, "merged": [awkward[0], awkward[1]]})
        store.replace([a, b], [(a, merged_view, merged_keys)])
        assert store.view(a) == merged_view and store.view(b) is None
        assert store.find("custom", awkward[1]) == a
        assert store.find("profile", b) == a
        # The third's keys shrink: the dropped one no longer finds anything.
        c, _, keys_c = first[2]
        kept = orjson.dumps(orjson.loads(keys_c)[:1])
        store.replace([c], [(c, b"{}", kept)])
        assert store.find("custom", awkward[2]) is None
        assert store.find("email", f"{awkward[2]}@example.com") == c
        assert store.counts() == {"keys": 2 * len(awkward), "views": len(awkward) - 1}

        live = [(a, merged_view, merged_keys), (c, b"{}", kept), *first[3:]]
        store.rebuild([live])
        assert store.counts() == {"keys": 2 * len(awkward), "views": len(awkward) - 1}
        for profile_id, view, keys in live:
            assert store.view(profile_id) == view
            for namespace, value in orjson.loads(keys):
                assert store.find(namespace, value) == profile_id
    finally:
        store.close()


def test_setting_computed_traits_keeps_the_rest_of_the_view_byte_for_byte(tmp_path, monkeypatch):
    """A view whose computed traits are set alone is the view built whole with them: the
    same bytes, whatever characters either part holds, with the parts in their order; a
    profile without a view is reported, not created."""
    monkeypatch.setattr(serving, "ROWS_PER_STATEMENT", 3)
    store = ServingStore(tmp_path / "serving")
    awkward = ['qu"ote', "back\\slash", "tab\tnew\nline", "Zoë 😀", "00123", "1e5", "\u2028",
               "</script>"]  # fmt: skip
    try:
        views = {}
        for n, text in enumerate(awkward):
            views[f"pr_{n}"] = {"profile_id": f"pr_{n}", "traits": {"name": {"value": text}},
                                "computed_traits": {"orders": 1}, "accounts": [text]}  # fmt: skip
        store.replace([], [(p, orjson.dumps(v), b"[]") for p, v in views.items()])
        computed = {
            p: {"favourite": text, "revenue": 12.5, "big": 1.5e300, "id": 12345678901234567}
            for p, text in zip(views, awkward, strict=True)
        }
        parts = [(p, orjson.dumps(c).decode()) for p, c in computed.items()]
        assert store.set_computed_traits([*parts, ("pr_missing", "{}")]) == ["pr_missing"]
        for profile_id, view in views.items():
            assert store.view(profile_id) == orjson.dumps(
                {**view, "computed_traits": computed[profile_id]}
            )
        assert store.view("pr_missing") is None
    finally:
        store.close()


def test_a_failed_checkpoint_is_logged_and_the_next_write_asks_again(tmp_path, monkeypatch, caplog):
    """The checkpoint thread survives an SQLite error: it logs it, leaves the writes
    counted as not yet in the file, and checkpoints them after the next write."""
    store = ServingStore(tmp_path / "serving", checkpoint_interval=0.05)
    real = store._connection
    failures = []

    class Failing:
        def __init__(self, con):
            self.con = con

        def execute(self, sql, *args):
            if sql.startswith("PRAGMA wal_checkpoint") and not failures:
                failures.append(sql)
                raise sqlite3.OperationalError("disk I/O error")
            return self.con.execute(sql, *args)

    def connection():
        con = real()
        if threading.current_thread().name == "onefold-serving-checkpoint":
            return Failing(con)
        return con

    monkeypatch.setattr(store, "_connection", connection)
    try:
        view = orjson.dumps({"profile_id": "pr_1"})
        with caplog.at_level("ERROR", logger="onefold.serving"):
            store.replace([], [("pr_1", view, b'[["user_id","u1"]]')])
            _wait_for(lambda: failures)
            time.sleep(0.2)  # rounds the thread would run if it went on by itself
        assert "checkpointing the serving store failed" in caplog.text
        assert store.unchecked_writes == 1
        assert store.view("pr_1") == view  # lookups are not affected

        store.replace([], [("pr_2", view, b'[["user_id","u2"]]')])
        _wait_for(lambda: store.unchecked_writes == 0)
        alone = tmp_path / "alone.sqlite"
        shutil.copy(store.path, alone)
        copy = sqlite3.connect(alone)
        assert copy.execute("SELECT count(*) FROM profile_views").fetchone() == (2,)
        copy.close()
    finally:
        store.close()


def test_rewriting_dead_rows_beside_the_running_publisher(tmp_path, monkeypatch, caplog):
    """As deployed, with the per-profile tables rewritten after nearly every micro-batch
    while the publishing thread reads them in its own, slow, transactions: the rewrites
    and the publishes overlap, no round fails, and what is served equals what the
    warehouse gives."""
    spans: dict[str, list[tuple[float, float]]] = {"publish": [], "rewrite": []}

    def timed(kind, function):
        def run(*args, **kwargs):
            started = time.monotonic()
            try:
                return function(*args, **kwargs)
            finally:
                spans[kind].append((started, time.monotonic()))

        return run

    views = publish.profile_views_and_keys

    def slow_views(*args, **kwargs):
        time.sleep(0.05)  # a publish transaction stays open while batches go on
        return views(*args, **kwargs)

    monkeypatch.setattr(publish, "profile_views_and_keys", slow_views)
    monkeypatch.setattr(graph.publish, "publish", timed("publish", graph.publish.publish))
    monkeypatch.setattr(compaction, "compact", timed("rewrite", compaction.compact))
    settings = Settings(  # batches back to back: a rewrite after each
        data_dir=tmp_path, admin_token="t", unify_interval_ms=10, publish_interval_ms=10,
        unify_min_cycle_ms=0,
    )  # fmt: skip
    instance = Onefold(settings)
    try:
        instance.identity.compact_min_dead = 1
        instance.sources.create("web", "web")
        users = [f"u-{n}" for n in range(40)]
        for round_ in range(12):
            send(instance, "web", [
                {"type": "identify", "userId": user, "traits": {"plan": f"p{round_}"}}
                for user in users
            ] + [
                {"type": "track", "userId": user, "event": "Order Completed",
                 "properties": {"revenue": round_}}
                for user in users[round_ % 3 :: 3]
            ])  # fmt: skip
            instance.log.rotate()
            instance.loader.load_now()
            time.sleep(0.03)
        instance.flush()
        _wait_for(lambda: publish.pending(instance.warehouse.cursor()) == 0)
        assert instance.unify.last_error is None
        failures = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert failures == []  # not even a round that failed and was retried
        assert len(instance.identity.compactions.last()) >= 4
        overlapping = [
            (a, b) for a, b in spans["rewrite"] if any(c < b and a < d for c, d in spans["publish"])
        ]
        assert overlapping
        assert_served_as_stored(instance)
        view = orjson.loads(instance.serving.view(instance.serving.find("user_id", "u-0")))
        assert view["traits"]["plan"]["value"] == "p11"
    finally:
        instance.close()
