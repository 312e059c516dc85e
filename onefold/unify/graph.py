"""The identity graph in the warehouse, advanced one micro-batch of events at a time.

Per batch, everything around the resolver is set-based: extract the batch's identifiers,
look up their current owners and those profiles' other identifiers (in memory, see
:mod:`onefold.unify.owners`, or in two joins), resolve in memory, then write the changes
back as Arrow tables. Reading the batch and moving the
``identity`` cursor happen in one transaction, so each event is resolved exactly once.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from onefold.collect.cursor import EventCursor
from onefold.store import Warehouse, compaction
from onefold.store.serving import ServingStore
from onefold.store.warehouse import insert_arrow
from onefold.unify import (
    accounts,
    computed,
    links,
    membership,
    overrides,
    probabilistic,
    profile_rows,
    publish,
    stitch,
    traits,
)
from onefold.unify.computed import ComputedTrait
from onefold.unify.identifiers import Extracted, extract, keys_table
from onefold.unify.owners import OwnerIndex
from onefold.unify.resolver import Changes, Key, Resolver
from onefold.unify.rules import IdentityRules
from onefold.unify.traits import TraitRules

if TYPE_CHECKING:
    from onefold.unify.matching import MatchConfig

CONSUMER = "identity"
PUBLISH_CHUNK = 100_000
"""Profiles published per serving-store transaction."""
INDEXED_MOVES = 1000
"""Absorbed profiles whose identifiers are moved per statement."""
COMPACTED = ("profile_traits", "profile_computed_traits")
"""The tables micro-batches replace rows of, rewritten once their dead rows pile up (see
:mod:`onefold.store.compaction`)."""
log = logging.getLogger("onefold.unify")


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def load_resolver(
    con: duckdb.DuckDBPyConnection,
    rules: IdentityRules,
    keys: set[Key],
    never_link: list[tuple[Key, Key]],
) -> Resolver:
    """A resolver holding the profiles that own any of ``keys``, with all their identifiers."""
    resolver = Resolver(rules, never_link)
    if not keys:
        return resolver
    con.register("touched_keys", keys_table(keys))
    try:
        profiles = con.execute(
            """
            SELECT p.profile_id, p.anchor_namespace, p.anchor_value, p.anchor_seq
            FROM identity_profiles p
            WHERE p.profile_id IN (
                SELECT i.profile_id FROM identifiers i
                JOIN touched_keys t ON i.namespace = t.namespace AND i.value = t.value
            )
            """
        ).fetchall()
        for profile_id, namespace, value, seq in profiles:
            resolver.load_profile(profile_id, (namespace, value), seq)
        if profiles:
            con.register("touched_profiles", pa.table({"profile_id": [p[0] for p in profiles]}))
            try:
                rows = con.execute(
                    """
                    SELECT namespace, value, profile_id FROM identifiers
                    WHERE profile_id IN (SELECT profile_id FROM touched_profiles)
                    """
                ).fetchall()
            finally:
                con.unregister("touched_profiles")
            for namespace, value, profile_id in rows:
                resolver.load_identifier((namespace, value), profile_id)
    finally:
        con.unregister("touched_keys")
    return resolver


def write_changes(
    con: duckdb.DuckDBPyConnection,
    resolver: Resolver,
    changes: Changes,
    method: str,
    details: dict[str, tuple[str, float | None, str | None]] | None = None,
) -> None:
    """Write what the resolver did; ``details`` gives the (method, probability, reasons)
    of merges caused by links, by their message id (others are ``method``)."""
    now = _now()
    surviving = resolver.surviving
    new_ids = changes.new_identifiers
    insert_arrow(con, "identifiers", pa.table({
        "namespace": [r[0] for r in new_ids],
        "value": [r[1] for r in new_ids],
        "profile_id": [surviving(r[2]) for r in new_ids],
        "first_seq": pa.array([r[3] for r in new_ids], pa.int64()),
        "source_id": [r[4] for r in new_ids],
    }), {"profile_hash": membership.PROFILE_HASH})  # fmt: skip
    absorbed = [m.absorbed_id for m in changes.merges if m.absorbed_id not in changes.born]
    if absorbed:
        moves = pa.table({
            "absorbed": absorbed, "surviving": [surviving(a) for a in absorbed],
        })  # fmt: skip
        con.register("profile_moves", moves)
        try:
            for start in range(0, len(absorbed), INDEXED_MOVES):
                # A list of constants lets DuckDB find the rows through the index on
                # identifiers.profile_id instead of reading the whole table (a join would).
                part = absorbed[start : start + INDEXED_MOVES]
                con.execute(
                    f"""
                    UPDATE identifiers
                    SET profile_id = m.surviving, profile_hash = md5_number(m.surviving)
                    FROM profile_moves m
                    WHERE identifiers.profile_id = m.absorbed
                      AND identifiers.profile_id IN ({", ".join("?" * len(part))})
                    """,
                    part,
                )
        finally:
            con.unregister("profile_moves")
        profile_rows.absorb(con, moves)
    born = list(changes.born.values())
    merged_into = [surviving(p.id) for p in born]
    profile_rows.insert(con, pa.table({
        "profile_id": pa.array([p.id for p in born], pa.string()),
        "anchor_namespace": pa.array([p.anchor[0] for p in born], pa.string()),
        "anchor_value": pa.array([p.anchor[1] for p in born], pa.string()),
        "anchor_seq": pa.array([p.anchor_seq for p in born], pa.int64()),
        "merged_into": pa.array(
            [m if m != p.id else None for m, p in zip(merged_into, born, strict=True)],
            pa.string(),
        ),
        "created_at": pa.array([now] * len(born), pa.timestamp("us")),
    }))  # fmt: skip
    merges = changes.merges
    plain = (method, None, None)
    merge_details = [details.get(m.message_id, plain) if details else plain for m in merges]
    insert_arrow(con, "identity_merges", pa.table({
        "seq": pa.array([m.seq for m in merges], pa.int64()),
        "message_id": [m.message_id for m in merges],
        "surviving_id": [m.surviving_id for m in merges],
        "absorbed_id": [m.absorbed_id for m in merges],
        "namespace": [m.namespace for m in merges],
        "value": [m.value for m in merges],
        "method": [d[0] for d in merge_details],
        "probability": pa.array([d[1] for d in merge_details], pa.float64()),
        "reasons": pa.array([d[2] for d in merge_details], pa.string()),
        "created_at": pa.array([now] * len(merges), pa.timestamp("us")),
    }))  # fmt: skip
    refusals = changes.refusals
    insert_arrow(con, "identity_refusals", pa.table({
        "seq": pa.array([r.seq for r in refusals], pa.int64()),
        "message_id": [r.message_id for r in refusals],
        "namespace": [r.namespace for r in refusals],
        "value": [r.value for r in refusals],
        "profile_id": [r.profile_id for r in refusals],
        "other_profile_id": [r.other_profile_id for r in refusals],
        "rule": [r.rule for r in refusals],
        "detail": [r.detail for r in refusals],
        "created_at": pa.array([now] * len(refusals), pa.timestamp("us")),
    }))  # fmt: skip
    attributions = changes.attributions
    membership.insert_attributions(con, pa.table({
        "seq": pa.array([a[0] for a in attributions], pa.int64()),
        "namespace": [a[1] for a in attributions],
        "value": [a[2] for a in attributions],
    }))  # fmt: skip


def touched_profiles(resolver: Resolver, changes: Changes) -> tuple[list[str], pa.Table]:
    """The profiles a batch may have changed (those its events reach, the survivors of its
    merges and the profiles they absorbed), and every identifier of the live ones with its
    profile: the resolver was given each touched profile's identifiers, so none is read."""
    surviving, owner = resolver.surviving, resolver.owner
    profiles = {surviving(owner[(namespace, value)]) for _, namespace, value in
                changes.attributions}  # fmt: skip
    for merge in changes.merges:
        profiles.add(merge.surviving_id)
        profiles.add(merge.absorbed_id)
    namespaces, values, owners = [], [], []
    for (namespace, value), profile_id in owner.items():
        profile_id = surviving(profile_id)
        if profile_id in profiles:
            namespaces.append(namespace)
            values.append(value)
            owners.append(profile_id)
    identifiers = pa.table({
        "namespace": pa.array(namespaces, pa.string()),
        "value": pa.array(values, pa.string()),
        "profile_id": pa.array(owners, pa.string()),
    })  # fmt: skip
    return sorted(profiles), identifiers


def reached(resolver: Resolver, changes: Changes, messages: set[int]) -> set[str]:
    """The live profiles a batch's ``messages`` (seqs) reach."""
    if not messages:
        return set()
    surviving, owner = resolver.surviving, resolver.owner
    return {surviving(owner[(namespace, value)]) for seq, namespace, value in
            changes.attributions if seq in messages}  # fmt: skip


def traits_touched(resolver: Resolver, changes: Changes, observed: set[int]) -> list[str]:
    """The profiles whose traits a batch may have changed, a few of those it touched: the
    profiles its trait observations (the messages ``observed``) reach, the survivors of its
    merges (they take the absorbed profiles' observations) and the profiles absorbed (their
    rows go). Traits come only from observations, so a profile that only got other events
    keeps its traits."""
    profiles = reached(resolver, changes, observed)
    for merge in changes.merges:
        profiles.add(merge.surviving_id)
        profiles.add(merge.absorbed_id)
    return sorted(profiles)


def reshaped_profiles(
    resolver: Resolver, changes: Changes, retraited: list[str], grouped: set[int]
) -> set[str]:
    """The profiles of which a batch changed more than the computed traits (see
    :func:`onefold.unify.publish.mark_batch`): those whose traits it may have changed
    (``retraited``, :func:`traits_touched`: merges included), those that got identifiers,
    and those its group calls (the messages ``grouped``) reach. A refused link is found by
    :func:`~onefold.unify.publish.mark_batch` itself."""
    surviving = resolver.surviving
    profiles = {*retraited, *reached(resolver, changes, grouped)}
    profiles.update(surviving(profile_id) for _, _, profile_id, _, _ in changes.new_identifiers)
    return profiles


def members_of(members: pa.Table, profiles: list[str]) -> pa.Table:
    """The rows of ``members`` (``profile_id``, ``seq``) of ``profiles``."""
    wanted = pa.array(profiles, pa.string())
    return members.filter(pc.is_in(members["profile_id"], value_set=wanted))


def message_types(con: duckdb.DuckDBPyConnection, after: int, upto: int) -> set[str]:
    """The message types among the events in ``(after, upto]``. A micro-batch skips the
    steps of types it has none of (most have no merge or group call): each statement
    costs milliseconds of planning, whatever it finds."""
    return {row[0] for row in con.execute(
        "SELECT DISTINCT type FROM events WHERE seq > $after AND seq <= $upto",
        {"after": after, "upto": upto},
    ).fetchall()}  # fmt: skip


def write_blocked(con: duckdb.DuckDBPyConnection, extracted: Extracted) -> None:
    if not extracted.blocked:
        return
    items = list(extracted.blocked.items())
    con.register("blocked_rows", pa.table({
        "namespace": [k[0] for k, _ in items],
        "value": [k[1] for k, _ in items],
        "occurrences": pa.array([v[0] for _, v in items], pa.int64()),
        "last_seq": pa.array([v[1] for _, v in items], pa.int64()),
    }))  # fmt: skip
    try:
        con.execute(
            """
            INSERT INTO identity_blocked SELECT namespace, value, occurrences, last_seq
            FROM blocked_rows
            ON CONFLICT (namespace, value) DO UPDATE SET
                occurrences = identity_blocked.occurrences + excluded.occurrences,
                last_seq = excluded.last_seq
            """
        )
    finally:
        con.unregister("blocked_rows")


class Lag:
    """How long events wait from arrival to their profile's update: the last samples."""

    def __init__(self, keep: int = 100_000) -> None:
        self._samples: deque[np.ndarray] = deque()
        self._kept = 0
        self._keep = keep
        self.events = 0
        self._lock = threading.Lock()

    def record(self, received_at: np.ndarray) -> None:
        now = np.datetime64(_now(), "us")
        delays = (now - received_at.astype("datetime64[us]")).astype("int64") / 1000.0
        with self._lock:
            self._samples.append(delays)
            self._kept += len(delays)
            self.events += len(delays)
            while self._kept - len(self._samples[0]) >= self._keep:
                self._kept -= len(self._samples.popleft())

    def summary(self) -> dict:
        with self._lock:
            if not self._samples:
                return {"events": self.events, "p50_ms": None, "p99_ms": None}
            delays = np.concatenate(list(self._samples))
        p50, p99 = np.percentile(delays, [50, 99])
        return {"events": self.events, "p50_ms": round(float(p50), 1),
                "p99_ms": round(float(p99), 1)}  # fmt: skip


class Rounds:
    """The last rounds of a background step (resolving a micro-batch, publishing): when
    each ended, how much it handled, and how long it took, in wall time and in the
    thread's own CPU time. Whether micro-batches keep up, and what one costs at the
    warehouse's present size, can be read from it while the server runs."""

    def __init__(self, keep: int = 50) -> None:
        self._rounds: deque[dict] = deque(maxlen=keep)
        self._lock = threading.Lock()

    @contextmanager
    def timed(self) -> Iterator[list[int]]:
        """Time the block; it puts how much it handled in the yielded list (a round that
        handled nothing is not kept)."""
        handled = [0]
        wall, cpu = time.perf_counter(), time.thread_time()
        yield handled
        if handled[0]:
            record = {
                "ended_at": _now().isoformat(timespec="milliseconds"),
                "count": handled[0],
                "ms": round((time.perf_counter() - wall) * 1000, 1),
                "cpu_ms": round((time.thread_time() - cpu) * 1000, 1),
            }
            with self._lock:
                self._rounds.append(record)

    def last(self) -> list[dict]:
        with self._lock:
            return list(self._rounds)


class IdentityGraph:
    """Resolves newly stored events into the identity graph, in micro-batches."""

    def __init__(
        self,
        warehouse: Warehouse,
        rules: IdentityRules,
        trait_rules: TraitRules | None = None,
        computed_traits: list[ComputedTrait] | None = None,
        clock: Callable[[], datetime] = _now,
        serving: ServingStore | None = None,
        publish_interval_ms: int = 1000,
        owner_index_limit: int = 1_000_000,
        compact_min_dead: int = 50_000,
    ) -> None:
        self.warehouse = warehouse
        self.serving = serving
        self.rules = rules
        self.trait_rules = trait_rules or TraitRules()
        self.computed_traits = computed_traits or []
        self.clock = clock
        self.cursor = EventCursor(warehouse, CONSUMER)
        self._lock = threading.Lock()  # the graph: micro-batches, overrides, links
        # The serving store, one publish at a time. Taken after _lock or alone, never the
        # other way round, so publishing can run beside the next micro-batch.
        self._publish_lock = threading.Lock()
        self.lag = Lag()
        self.batches = Rounds()
        self.publishes = Rounds()
        self.compactions = Rounds(keep=20)
        self.compact_min_dead = compact_min_dead
        self._pending_received = np.array([], dtype="datetime64[us]")
        self._unpublished: list[np.ndarray] = []
        self._unpublished_lock = threading.Lock()
        self.publish_interval = publish_interval_ms / 1000
        self.owner_index_limit = owner_index_limit
        self._owners: OwnerIndex | None = None
        self._resolved: Resolver | None = None  # the last batch's, until it is committed
        self._facts = computed.Facts()

    def _process(self, con: duckdb.DuckDBPyConnection, after: int, upto: int) -> None:
        blocked, never = overrides.active(con)
        kinds = message_types(con, after, upto)
        extracted = extract(con, self.rules, after, upto, blocked, merges="merge" in kinds)
        keys = {key for message in extracted.messages for key in message.identifiers}
        placed = links.active_between(con, after, upto)  # only when rebuilding
        keys.update(key for link in placed for key in (link.a, link.b))
        owners = self._owner_index(con)
        if owners is None:
            resolver = load_resolver(con, self.rules, keys, never)
        else:
            resolver = Resolver(self.rules, never)
            owners.fill(resolver, keys)
        changes = links.resolve_with_links(resolver, extracted.messages, placed)
        self._resolved = resolver
        write_changes(con, resolver, changes, "deterministic", links.merge_details(placed))
        write_blocked(con, extracted)
        observed = traits.observe(con, after, upto) if "identify" in kinds else set()
        grouped = accounts.observe(con, after, upto) if "group" in kinds else set()
        touched, identifiers = touched_profiles(resolver, changes)
        members = membership.events_of_identifiers(con, identifiers)
        retraited = traits_touched(resolver, changes, observed)
        traits.refresh(con, self.trait_rules, retraited, members_of(members, retraited))
        if self.computed_traits:
            self._facts.update(con, self.computed_traits, upto)
        computed_traits = computed.refresh(
            con, self.computed_traits, self.clock(), touched, members, facts=True,
            returning=True,
        )  # fmt: skip
        reshaped = reshaped_profiles(resolver, changes, retraited, grouped)
        if self.computed_traits:  # a touched profile without a row shows none
            computed_traits = {p: computed_traits.get(p, "{}") for p in touched}
        publish.mark_batch(con, reshaped, after, upto, computed_traits)
        received = con.execute(
            "SELECT received_at FROM events WHERE seq > $after AND seq <= $upto",
            {"after": after, "upto": upto},
        ).fetchnumpy()["received_at"]
        self._pending_received = received

    def _owner_index(self, con: duckdb.DuckDBPyConnection) -> OwnerIndex | None:
        """The owners in memory, loaded on first use; None above ``owner_index_limit``
        identifiers (batches then read them from the warehouse)."""
        if self._owners is None and self.owner_index_limit > 0:
            count = con.execute("SELECT count(*) FROM identifiers").fetchall()[0][0]
            if count <= self.owner_index_limit:
                self._owners = OwnerIndex.load(con)
        return self._owners

    def _forget_owners(self) -> None:
        """Something other than a micro-batch changed the graph: load it again."""
        self._owners = None

    def add_override(self, kind: str, key: Key, other: Key | None, reason: str) -> dict:
        """Record an override and re-derive the part of the graph it affects."""
        with self._lock:
            with self.warehouse.transaction() as con:
                override_id, owners = overrides.add(con, self.rules, kind, key, other, reason)
                result = self._replay(con, f"override:{kind}", override_id, reason, owners)
            self.publish()
        return {"id": override_id, **result}

    def _replay(
        self,
        con: duckdb.DuckDBPyConnection,
        action: str,
        ref: str | None,
        note: str | None,
        owners: set[str],
    ) -> dict:
        self._forget_owners()
        before, after, replayed = overrides.replay(
            con, self.rules, self.trait_rules, self.computed_traits, self.clock(), owners
        )
        overrides.audit(con, action, ref, note, before, after, replayed)
        publish.mark_dirty(con, [*before, *after])
        return {"profiles_before": before, "profiles_after": after, "events_replayed": replayed}

    def always_link(self, a: Key, b: Key, reason: str) -> dict:
        """A manual link: join the profiles holding ``a`` and ``b`` (the rules still
        apply; a refused link is recorded)."""
        for namespace, _ in (a, b):
            if namespace not in self.rules.namespaces:
                raise links.LinkError("unknown_namespace", f"unknown namespace {namespace!r}")
        if not reason.strip():
            raise links.LinkError("invalid_link", "a link needs a reason")
        with self._lock:
            with self.warehouse.transaction() as con:
                for key in (a, b):
                    if not overrides.owners(con, [key]):
                        raise links.LinkError(
                            "identifier_not_found", f"no profile has {key[0]}:{key[1]}"
                        )
                position = self.cursor.position()
                link_id = links.record(con, "manual", a, b, "active", position=position,
                                       note=reason)  # fmt: skip
                if link_id is None:
                    raise links.LinkError("link_exists", "these identifiers are linked already")
                result = self._replay(con, "link:manual", link_id, reason,
                                      overrides.owners(con, [a, b]))  # fmt: skip
            self.publish()
        return {"id": link_id, **result}

    def decide_link(self, link_id: str, action: str, note: str | None = None) -> dict:
        """``accept`` a link waiting for review (it is merged), ``reject`` it, or ``undo``
        an active one (its profiles are split again)."""
        with self._lock:
            with self.warehouse.transaction() as con:
                link = links.get(con, link_id)
                expected = {"accept": "review", "reject": "review", "undo": "active"}
                if action not in expected:
                    raise links.LinkError("invalid_action", "action is accept, reject or undo")
                if link["status"] != expected[action]:
                    raise links.LinkError(
                        "invalid_state", f"the link is {link['status']}; cannot {action} it"
                    )
                keys = [
                    (link["namespace_a"], link["value_a"]),
                    (link["namespace_b"], link["value_b"]),
                ]
                if action == "reject":
                    links.set_status(con, link_id, "rejected", None, note)
                    return {"id": link_id, "status": "rejected"}
                owners = overrides.owners(con, keys)
                if action == "accept":
                    links.set_status(con, link_id, "active", self.cursor.position(), note)
                else:
                    status = "rejected" if link["kind"] == "probabilistic" else "undone"
                    links.set_status(con, link_id, status, None, note)
                result = self._replay(con, f"link:{action}", link_id, note, owners)
            self.publish()
        return {"id": link_id, "status": links.get(self.warehouse.cursor(), link_id)["status"],
                **result}  # fmt: skip

    def match(self, config: MatchConfig | None = None) -> dict:
        """Run probabilistic matching over the profiles: pairs the matcher would merge are
        linked and merged at once, pairs between the review thresholds wait for review.
        Pairs decided before (rejected, undone) are not proposed again."""
        from onefold.unify.matching import MatchConfig

        config = config or MatchConfig()
        if config.phone_region is None:  # phones typed without a country code
            config = dataclasses.replace(config, phone_region=self.rules.default_region)
        found = probabilistic.find_pairs(self.warehouse.cursor(), config)
        counts = {"records": found["records"], "pairs": len(found["pairs"]), "merged": 0,
                  "review": 0, "known": 0}  # fmt: skip
        with self._lock:
            with self.warehouse.transaction() as con:
                anchors = {row[0]: (row[1], row[2]) for row in con.execute(
                    "SELECT profile_id, anchor_namespace, anchor_value FROM identity_profiles "
                    "WHERE merged_into IS NULL"
                ).fetchall()}  # fmt: skip
                position = self.cursor.position()
                owners: set[str] = set()
                for pair in found["pairs"]:
                    left, right = pair["record_id_l"], pair["record_id_r"]
                    if left not in anchors or right not in anchors:
                        continue
                    merge = pair["decision"] == "merge" and not pair["vetoed_by"]
                    link_id = links.record(
                        con, "probabilistic", anchors[left], anchors[right],
                        "active" if merge else "review",
                        position=position if merge else None,
                        probability=pair["match_probability"],
                        reasons=orjson.loads(pair["reasons"]) if pair["reasons"] else None,
                        note=f"not merged automatically: different {pair['vetoed_by']}"
                        if pair["vetoed_by"] else None,
                    )  # fmt: skip
                    if link_id is None:
                        counts["known"] += 1
                    elif merge:
                        counts["merged"] += 1
                        owners |= {left, right}
                    else:
                        counts["review"] += 1
                if owners:
                    replay = self._replay(con, "link:match", None, None, owners)
                    counts["profiles_before"] = len(replay["profiles_before"])
                    counts["profiles_after"] = len(replay["profiles_after"])
                    counts["events_replayed"] = replay["events_replayed"]
            self.publish()
        return counts

    def rebuild(self) -> int:
        """Forget the derived graph and resolve every stored event again, in order."""
        with self._lock, self.warehouse.transaction() as con:
            self._forget_owners()
            overrides.clear_graph(con)
        return self.process_all()

    def rebuild_fast(self) -> int:
        """:meth:`rebuild` without replaying message by message: the same tables, derived
        with array operations where no rule can fire (see :mod:`onefold.unify.stitch`)."""
        with self._lock, self.warehouse.transaction() as con:
            replay = links.has_active(con)  # links are placed among events: replay them
        if replay:
            return self.rebuild()
        with self._lock:
            with self.warehouse.transaction() as con:
                self._forget_owners()
                count = stitch.rebuild(
                    con, self.rules, self.trait_rules, self.computed_traits, self.clock()
                )
                publish.mark_all_dirty(con)
            self.publish()
            return count

    def recompute_traits(self) -> None:
        """Recompute every profile's traits and computed traits from all its events."""
        with self._lock:
            with self.warehouse.transaction() as con:
                traits.refresh(con, self.trait_rules, None)
                computed.refresh(con, self.computed_traits, self.clock(), None)
                publish.mark_all_dirty(con)
            self.publish()

    def process(self, limit: int = 50_000) -> int:
        """Resolve the next events, at most ``limit``; returns how many were read. Their
        profiles reach the serving store at the next :meth:`publish`."""
        with self._lock, self.batches.timed() as handled:
            self._resolved = None
            try:
                count = self.cursor.consume_range(self._process, limit)
            except BaseException:
                self._forget_owners()
                self._facts.forget()
                raise
            if self._resolved is not None and self._owners is not None:
                self._owners.apply(self._resolved)  # committed: the index follows
                if len(self._owners) > self.owner_index_limit:
                    self._forget_owners()
            self._resolved = None
            if count:
                with self._unpublished_lock:
                    self._unpublished.append(self._pending_received)
                self._compact()
            handled[0] = count
            return count

    def _compact(self) -> None:
        """Rewrite the tables whose dead rows outnumber their live ones (between batches,
        so no other writer has them open). A failure is logged, not raised: the batch is
        committed, and the next batch checks again."""
        for table in COMPACTED:
            try:
                with self.compactions.timed() as dropped, self.warehouse.transaction() as con:
                    stored, live = compaction.rows(con, table)
                    if compaction.worth_compacting(stored, live, self.compact_min_dead):
                        compaction.compact(con, table)
                        dropped[0] = stored - live
                if dropped[0]:
                    log.info("rewrote %s: %d dead rows dropped, %d kept", table, dropped[0], live)
            except Exception:
                log.exception("rewriting %s failed", table)

    def publish(self, drain: bool = True) -> int:
        """Write the views of the profiles changed since the last publish to the serving
        store (a no-op without one); returns how many profile ids it handled. Safe to run
        beside :meth:`process`: it publishes what was committed when it started (with
        ``drain``, and what was committed meanwhile; without, one chunk of it)."""
        with self._publish_lock, self.publishes.timed() as handled:
            with self._unpublished_lock:
                committed, self._unpublished = self._unpublished, []
            published = 0
            if self.serving is not None:
                published = publish.publish(
                    self.warehouse, self.serving, chunk=PUBLISH_CHUNK, drain=drain
                )
            for received in committed:  # their profiles are now visible
                self.lag.record(received)
            handled[0] = published
            return published

    def process_all(self, limit: int = 50_000) -> int:
        """Resolve every stored event not resolved yet, publishing the changed profiles at
        least every ``publish_interval_ms`` and at the end; returns how many were read.

        Publishing costs about the same for one profile as for thousands (it scans the
        tables a view is made of once per call), so under a steady stream the profiles
        several micro-batches touched are published together."""
        total = 0
        last = time.monotonic()
        while True:
            count = self.process(limit)
            total += count
            if not count or time.monotonic() - last >= self.publish_interval:
                self.publish()
                last = time.monotonic()
            if not count:
                return total


PUBLISH_NICENESS = 5
"""How much lower the publishing thread's CPU priority is than the resolving thread's (a
nice increment, Linux only: elsewhere it would lower the whole process). When both want
the same core, resolving wins: a resolver that falls behind lets the delay grow without
bound, while a publisher that falls behind publishes more profiles at once next time,
which costs less a profile (a publish costs about as much for one profile as for
thousands)."""


REST_RATIO = 2.0
"""After a micro-batch that took less than its cycle, the resolving thread rests this many
times as long as the batch took (see :meth:`UnifyWorker.rest_after`)."""


def lower_thread_priority(increment: int) -> None:
    """Lower the calling thread's CPU priority by ``increment``. Off Linux it does nothing
    (the call would lower the whole process); if the system refuses, a warning says so."""
    if not sys.platform.startswith("linux") or increment <= 0:
        return
    thread = threading.get_native_id()
    try:
        now = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, now + increment))
    except OSError:
        log.warning("could not lower the priority of thread %s", thread, exc_info=True)


class UnifyWorker:
    """Two background threads that keep the identity graph up with stored events: one
    resolves micro-batches, resting between them in proportion to their cost (under a
    steady stream a batch starts about every ``min_cycle_ms``); the other publishes the
    profiles they changed to the serving store — at most every ``publish_interval_ms``,
    beside the next micro-batches rather than between them, so the two share the
    machine's cores (the publisher at a lower priority, :data:`PUBLISH_NICENESS`)."""

    def __init__(self, graph: IdentityGraph, interval_ms: int, min_cycle_ms: int = 0) -> None:
        self.graph = graph
        self._interval = interval_ms / 1000
        self._min_cycle = min_cycle_ms / 1000
        self._wake = threading.Event()
        self._changed = threading.Event()
        self._stop = threading.Event()
        self.resolve_error: str | None = None
        self.publish_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="onefold-unify", daemon=True)
        self._publisher = threading.Thread(
            target=self._publish_loop, name="onefold-publish", daemon=True
        )

    @property
    def last_error(self) -> str | None:
        """The last round's failure, resolving or publishing (None once it succeeds)."""
        return self.resolve_error or self.publish_error

    def start(self) -> None:
        self._thread.start()
        self._publisher.start()

    def notify(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            try:
                while True:
                    started = time.monotonic()
                    if not self.graph.process():
                        break
                    self._changed.set()
                    rest = self.rest_after(time.monotonic() - started)
                    if rest > 0:
                        self._stop.wait(rest)  # cut short by stop(), which drains the rest
                self.resolve_error = None
            except Exception as exc:  # keep serving; the batch is retried next round
                self.resolve_error = f"{type(exc).__name__}: {exc}"
                log.exception("identity resolution failed")

    def rest_after(self, took: float) -> float:
        """How long the resolving thread lets events gather after a batch that took
        ``took`` seconds (nothing when not positive).

        A batch costs a fixed part whatever its size, so many small batches cost more CPU
        than a few large ones. After a quick batch (a trickle of events) the thread rests
        :data:`REST_RATIO` times as long, a few milliseconds; as batches take longer it
        rests longer, so that under a steady stream a batch starts about every
        ``min_cycle_ms``. A thread that falls behind gets larger batches, which take
        longer and are followed by shorter rests; once a batch takes the whole cycle the
        next one starts at once."""
        return min(REST_RATIO * took, self._min_cycle - took)

    def _publish_loop(self) -> None:
        lower_thread_priority(PUBLISH_NICENESS)
        # Pending marks (a new or outdated serving store, a crash before the last publish)
        # are published at start, without waiting for a micro-batch.
        self._changed.set()
        while not self._stop.is_set():
            self._changed.wait()
            self._changed.clear()
            if self._stop.is_set():
                return
            started = time.monotonic()
            try:
                if self.graph.publish(drain=False) >= PUBLISH_CHUNK:
                    self._changed.set()  # more was marked than one round takes
                self.publish_error = None
            except Exception as exc:  # the marks stay; published again next round
                self.publish_error = f"{type(exc).__name__}: {exc}"
                log.exception("publishing profiles failed")
                self._changed.set()
            self._stop.wait(max(0.0, self.graph.publish_interval - (time.monotonic() - started)))

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._changed.set()
        for thread in (self._thread, self._publisher):
            if thread.is_alive():
                thread.join()
