"""The identity graph over a real warehouse: micro-batches, exactly once, restarts."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import orjson
import pyarrow as pa
import pytest

from onefold.demo.generator import generate_demo
from onefold.runtime import Onefold
from onefold.settings import Settings
from onefold.store import compaction
from onefold.unify import computed, graph, membership, publish, traits
from onefold.unify.identifiers import extraction_sql, group_messages
from tests.unify.landing import land_demo


@pytest.fixture(scope="module")
def demo():
    return generate_demo(seed=3, customers=150, now=datetime(2026, 6, 1))


def _open(path: Path, **overrides) -> Onefold:
    # a huge interval keeps the background worker out of the way: tests drive it
    return Onefold(Settings(data_dir=path, admin_token="t", unify_interval_ms=10**9, **overrides))


def _graph(onefold: Onefold) -> set[tuple]:
    rows = (
        onefold.warehouse.cursor()
        .execute("SELECT namespace, value, profile_id FROM identifiers")
        .fetchall()
    )
    return set(rows)


# 300 identifiers: the owners are kept in memory at first, then dropped once the graph
# outgrows the limit, and read from the warehouse after that.
@pytest.mark.parametrize(
    "owner_index_limit", [1_000_000, 300, 0], ids=["owners-in-memory", "outgrown", "read"]
)
def test_micro_batches_give_the_same_graph_as_one_batch(
    tmp_path, demo, monkeypatch, owner_index_limit
):
    whole = _open(tmp_path / "whole")
    land_demo(whole, demo)
    read = whole.identity.process(limit=10**9)
    assert read == sum(len(m) for m in demo.messages.values())
    # The micro-batches move the identifiers of the profiles they absorb one at a time.
    monkeypatch.setattr(graph, "INDEXED_MOVES", 1)
    moved = []
    write_changes = graph.write_changes

    def counting(con, resolver, changes, *args):
        moved.append(sum(m.absorbed_id not in changes.born for m in changes.merges))
        return write_changes(con, resolver, changes, *args)

    monkeypatch.setattr(graph, "write_changes", counting)
    small = _open(tmp_path / "small", owner_index_limit=owner_index_limit)
    land_demo(small, demo)
    assert small.identity.process_all(limit=997) == read
    assert max(moved) > graph.INDEXED_MOVES
    assert (small.identity._owners is not None) == (owner_index_limit == 1_000_000)
    assert _graph(whole) == _graph(small)
    # every profile, absorbed ones included, points at the same live profile: merges
    # across micro-batches move what an absorbed profile had absorbed before
    profiles = "SELECT profile_id, merged_into, anchor_value FROM identity_profiles"
    assert set(whole.warehouse.cursor().execute(profiles).fetchall()) == set(
        small.warehouse.cursor().execute(profiles).fetchall()
    )
    for table in ("identity_merges", "identity_refusals", "event_identity"):
        query = f"SELECT count(*) FROM {table}"
        assert (
            whole.warehouse.cursor().execute(query).fetchone()
            == small.warehouse.cursor().execute(query).fetchone()
        ), table
    whole.close()
    small.close()


def test_a_batch_recomputes_exactly_the_profiles_it_touched(tmp_path, demo, monkeypatch):
    """The touched profiles and their events come from the resolver's state, not from the
    warehouse: each batch's must be what the warehouse says after the batch's writes. The
    computed traits of every touched profile are recomputed; the traits only of those its
    trait observations reach and of those its merges changed."""
    onefold = _open(tmp_path / "d")
    land_demo(onefold, demo)
    limit = 997
    checked: dict[str, list[int]] = {"traits": [], "computed": []}

    def batch_range(con) -> tuple[int, int]:
        after = con.execute(
            "SELECT coalesce(max(seq), -1) FROM consumer_cursors WHERE consumer = 'identity'"
        ).fetchone()[0]
        upto = con.execute(
            "SELECT max(seq) FROM (SELECT seq FROM events WHERE seq > ? ORDER BY seq LIMIT ?)",
            [after, limit],
        ).fetchone()[0]
        return after, upto

    def check(kind: str, con, profiles: list[str], members) -> None:
        after, upto = batch_range(con)
        observed_only = (
            "AND ei.seq IN (SELECT seq FROM trait_observations)" if kind == "traits" else ""
        )
        expected = con.execute(
            f"""
            SELECT DISTINCT i.profile_id FROM event_identity ei
            JOIN identifiers i ON i.namespace = ei.namespace AND i.value = ei.value
            WHERE ei.seq > $after AND ei.seq <= $upto {observed_only}
            UNION SELECT surviving_id FROM identity_merges WHERE seq > $after AND seq <= $upto
            UNION SELECT absorbed_id FROM identity_merges WHERE seq > $after AND seq <= $upto
            """,
            {"after": after, "upto": upto},
        ).fetchall()
        assert profiles == sorted(row[0] for row in expected), kind
        con.register("expected_profiles", pa.table({"profile_id": pa.array(profiles, pa.string())}))
        expected_members = con.execute(
            f"SELECT * FROM ({membership.members_sql('expected_profiles')}) ORDER BY ALL"
        ).fetchall()
        con.unregister("expected_profiles")
        assert sorted(zip(*members.to_pydict().values(), strict=True)) == expected_members, kind
        checked[kind].append(len(profiles))

    refresh_traits, refresh_computed = traits.refresh, computed.refresh

    def checking_traits(con, rules, profiles, members=None):
        check("traits", con, profiles, members)
        return refresh_traits(con, rules, profiles, members)

    def checking_computed(con, definitions, as_of, profiles, members=None, **kwargs):
        check("computed", con, profiles, members)
        return refresh_computed(con, definitions, as_of, profiles, members, **kwargs)

    monkeypatch.setattr(traits, "refresh", checking_traits)
    monkeypatch.setattr(computed, "refresh", checking_computed)
    onefold.identity.process_all(limit=limit)
    assert len(checked["computed"]) > 5 and sum(checked["computed"]) > 150
    # the demo's identifies reach fewer profiles than its events do
    assert 50 < sum(checked["traits"]) < sum(checked["computed"])


def test_every_identifier_of_a_message_is_linked_or_its_refusal_recorded(tmp_path, demo):
    onefold = _open(tmp_path)
    land_demo(onefold, demo)
    onefold.identity.process_all()
    con = onefold.warehouse.cursor()
    extracted = con.execute(
        extraction_sql(onefold.settings.identity), {"after": -1, "upto": 2**62}
    ).fetchall()
    grouped = group_messages(extracted, onefold.settings.identity)
    owners = {
        (ns, v): p
        for ns, v, p in con.execute(
            "SELECT namespace, value, profile_id FROM identifiers"
        ).fetchall()
    }
    attributed = {
        seq: owners[(ns, v)]
        for seq, ns, v in con.execute("SELECT seq, namespace, value FROM event_identity").fetchall()
    }
    refused = {
        (seq, ns, v) for seq, ns, v in con.execute(
            "SELECT seq, namespace, value FROM identity_refusals"
        ).fetchall()
    }  # fmt: skip
    linked_users = set()
    for message in grouped.messages:
        profile = attributed[message.seq]
        for key in message.identifiers:
            assert owners[key] == profile or (message.seq, *key) in refused, (message, key)
        users = [v for ns, v in message.identifiers if ns == "user_id"]
        anonymous = [v for ns, v in message.identifiers if ns == "anonymous_id"]
        if users and anonymous and owners[("anonymous_id", anonymous[0])] == profile:
            linked_users.add(users[0])
    assert len(linked_users) > 20, "anonymous visitors became known customers"
    assert con.execute("SELECT count(*) FROM identity_merges").fetchone()[0] > 0
    profiles = con.execute(
        "SELECT count(*) FROM identity_profiles WHERE merged_into IS NULL"
    ).fetchone()[0]
    assert profiles == len(set(owners.values()))
    onefold.close()


def test_each_event_is_resolved_once_across_restarts(tmp_path, demo):
    onefold = _open(tmp_path)
    land_demo(onefold, demo)
    onefold.identity.process(limit=500)
    onefold.close()
    onefold = _open(tmp_path)
    onefold.identity.process_all(limit=700)
    con = onefold.warehouse.cursor()
    events, attributed, distinct = con.execute(
        """
        SELECT (SELECT count(*) FROM events), count(*), count(DISTINCT seq) FROM event_identity
        """
    ).fetchone()
    assert attributed == distinct
    assert attributed == events
    onefold.close()


def _owners_in_warehouse(onefold: Onefold) -> tuple[dict, dict]:
    con = onefold.warehouse.cursor()
    rows = con.execute("SELECT namespace, value, profile_id FROM identifiers").fetchall()
    owner = {(namespace, value): profile_id for namespace, value, profile_id in rows}
    profiles = {
        profile_id: ((namespace, value), seq, {})
        for profile_id, namespace, value, seq in con.execute(
            "SELECT profile_id, anchor_namespace, anchor_value, anchor_seq "
            "FROM identity_profiles WHERE merged_into IS NULL"
        ).fetchall()
    }
    for (namespace, value), profile_id in owner.items():
        profiles[profile_id][2].setdefault(namespace, set()).add(value)
    return owner, profiles


def _assert_owners_follow_the_warehouse(onefold: Onefold) -> None:
    index = onefold.identity._owners
    assert index is not None
    owner, profiles = _owners_in_warehouse(onefold)
    assert index.owner == owner
    held = {}
    for profile_id, (anchor, seq, keys) in index.profiles.items():
        held[profile_id] = (anchor, seq, {})
        for namespace, value in keys:
            held[profile_id][2].setdefault(namespace, set()).add(value)
    assert held == profiles


def test_the_owners_in_memory_follow_the_warehouse(tmp_path, demo):
    """After every micro-batch, and across an override and a link (which drop them, to be
    loaded again), the owners kept in memory are the warehouse's."""
    onefold = _open(tmp_path)
    land_demo(onefold, demo)
    graph_ = onefold.identity
    batches = 0
    while graph_.process(limit=400):
        batches += 1
        _assert_owners_follow_the_warehouse(onefold)
        if batches == 3:
            graph_.add_override("never_link", ("email", "none@none.com"), ("phone", "+0"), "x")
            assert graph_._owners is None
        if batches == 5:
            con = onefold.warehouse.cursor()
            ((a, b),) = con.execute(
                "SELECT a.namespace || ':' || a.value, b.namespace || ':' || b.value "
                "FROM identifiers a, identifiers b WHERE a.profile_id < b.profile_id "
                "AND a.namespace = 'user_id' AND b.namespace = 'anonymous_id' LIMIT 1"
            ).fetchall()
            graph_.always_link(tuple(a.split(":", 1)), tuple(b.split(":", 1)), "same person")
            assert graph_._owners is None
    assert batches > 5
    onefold.close()


def test_a_failed_micro_batch_drops_the_owners_and_its_retry_gives_the_same_graph(
    tmp_path, demo, monkeypatch
):
    """A micro-batch that fails after resolving (its transaction rolled back) leaves no
    trace: the owners in memory are dropped, loaded again for the retry, follow the
    warehouse after it, and the graph is the one a single batch gives."""
    whole = _open(tmp_path / "whole")
    land_demo(whole, demo)
    whole.identity.process(limit=10**9)
    onefold = _open(tmp_path / "failing")
    land_demo(onefold, demo)
    graph_ = onefold.identity
    assert graph_.process(limit=400) and graph_._owners is not None
    write_blocked, failures = graph.write_blocked, []

    def failing_once(con, extracted):
        if not failures:
            failures.append(extracted)
            raise OSError("disk full")
        return write_blocked(con, extracted)

    monkeypatch.setattr(graph, "write_blocked", failing_once)
    with pytest.raises(OSError, match="disk full"):
        graph_.process(limit=400)
    assert graph_._owners is None
    while graph_.process(limit=400):
        _assert_owners_follow_the_warehouse(onefold)
    assert failures and _graph(onefold) == _graph(whole)
    whole.close()
    onefold.close()


def _per_profile_rows(onefold: Onefold) -> dict[str, list[tuple]]:
    con = onefold.warehouse.cursor()
    return {  # source ids differ between data directories: their names do not
        "profile_traits": con.execute(
            "SELECT t.* EXCLUDE (source_id), s.name FROM profile_traits t "
            "JOIN sources s ON s.id = t.source_id ORDER BY ALL"
        ).fetchall(),
        "profile_computed_traits": con.execute(
            "SELECT * FROM profile_computed_traits ORDER BY ALL"
        ).fetchall(),
    }


def _timeless(view: bytes) -> dict:
    """A view without the moments this run happened at (merges and refusals record when
    they were made, and when their message arrived)."""
    parsed = orjson.loads(view)
    for key in ("merges", "refused_links"):
        for entry in parsed[key]:
            entry.pop("created_at"), entry.pop("message_received_at", None)
    return parsed


def test_dead_rows_are_rewritten_away_between_micro_batches(tmp_path, demo):
    """While a reader holds a transaction open (as the publisher and the API do), the
    per-profile tables that micro-batches replace rows of never carry more dead rows than
    live ones past the threshold; the values and views are those of a run that never
    rewrites them, and the reader goes on reading its snapshot."""
    as_of = datetime(2026, 6, 1, 12)
    runs = {}
    for name, min_dead in (("kept", 10**9), ("rewritten", 20)):
        onefold = _open(tmp_path / name)
        onefold.identity.clock = lambda: as_of
        onefold.identity.compact_min_dead = min_dead
        land_demo(onefold, demo)
        reader = onefold.warehouse._con.cursor()  # another thread's, in effect
        reader.execute("BEGIN")
        snapshot = reader.execute("SELECT count(*) FROM profile_traits").fetchall()
        most_dead = 0
        while onefold.identity.process(limit=197):
            con = onefold.warehouse.cursor()
            for table in graph.COMPACTED:
                stored, live = compaction.rows(con, table)
                most_dead = max(most_dead, stored - live)
                assert not compaction.worth_compacting(stored, live, min_dead), table
        assert reader.execute("SELECT count(*) FROM profile_traits").fetchall() == snapshot
        reader.execute("COMMIT")
        onefold.identity.publish()
        live = [row[0] for row in onefold.warehouse.cursor().execute(
            "SELECT profile_id FROM identity_profiles WHERE merged_into IS NULL"
        ).fetchall()]  # fmt: skip
        views = {profile_id: _timeless(onefold.serving.view(profile_id)) for profile_id in live}
        runs[name] = (
            _per_profile_rows(onefold),
            views,
            onefold.identity.compactions.last(),
            most_dead,
        )
        onefold.close()
    (kept, kept_views, none, piled), (rewritten, rewritten_views, rewrites, most) = runs.values()
    assert piled > 1.5 * most  # without rewriting, the dead rows pile up
    assert none == [] and len(rewrites) >= 4
    assert all(round_["count"] >= 20 for round_ in rewrites)  # the dead rows each dropped
    assert set(kept) == set(graph.COMPACTED)
    assert rewritten == kept and all(rows for rows in kept.values())
    assert rewritten_views == kept_views


def test_a_failed_rewrite_leaves_the_batch_committed(tmp_path, demo, monkeypatch, caplog):
    onefold = _open(tmp_path)
    onefold.identity.compact_min_dead = 1
    land_demo(onefold, demo)
    assert onefold.identity.process(limit=300) == 300
    for _ in range(2):  # every row replaced twice: twice as many dead rows as live
        onefold.identity.recompute_traits()

    def failing(con, table):
        con.execute(f"DROP TABLE {table}")  # half done: rolled back with the transaction
        raise OSError("disk full")

    monkeypatch.setattr(compaction, "compact", failing)
    assert onefold.identity.process(limit=300) == 300
    assert "rewriting profile_traits failed" in caplog.text
    con = onefold.warehouse.cursor()
    assert con.execute("SELECT count(*) FROM event_identity").fetchall()[0][0] >= 600
    for table in graph.COMPACTED:
        assert con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0] > 0
    assert onefold.identity.compactions.last() == []
    onefold.close()


def test_what_unify_has_yet_to_do_is_counted(tmp_path, demo):
    """The status's backlog: events stored but not resolved, and profiles changed but not
    published (every live profile while the whole store is to be rebuilt)."""
    onefold = _open(tmp_path)
    land_demo(onefold, demo)
    total = sum(len(m) for m in demo.messages.values())
    identity, con = onefold.identity, onefold.warehouse.cursor()
    assert identity.cursor.pending() == total
    assert publish.pending(con) == 0
    assert identity.process(limit=500) == 500
    assert identity.cursor.pending() == total - 500
    marked = con.execute("SELECT count(DISTINCT profile_id) FROM serving_dirty").fetchall()
    assert publish.pending(con) == marked[0][0] > 0
    identity.publish()
    assert publish.pending(con) == 0
    identity.process(limit=10**9)
    assert identity.cursor.pending() == 0
    with onefold.warehouse.transaction() as transaction:
        publish.mark_all_dirty(transaction)
    live = con.execute(
        "SELECT count(*) FROM identity_profiles WHERE merged_into IS NULL"
    ).fetchall()[0][0]
    assert publish.pending(con) == live > 150
    identity.publish()
    assert publish.pending(con) == 0
    onefold.close()
