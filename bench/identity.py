"""Identity benchmarks: deterministic stitching at 10M messages, the real-time resolver, and
profile lookups at 1M profiles — each beside a baseline measured in the same run.

    .venv/bin/python bench/identity.py                      # everything (about 10 minutes)
    .venv/bin/python bench/identity.py --parts stitch --messages 1000000   # a quick run
    .venv/bin/python bench/identity.py --parts resolver,lookup --profiles 200000

(a) ``stitch``: N identify messages (default 10M: anonymous ids, user ids, e-mails, phones,
    with shared computers, shared family e-mails, blocked values and over-limit profiles),
    generated with numpy (seeded) into an Arrow IPC file. Each method runs in its own process
    reading that file, timed from the Arrow columns (seq, namespace, value, …) to each
    identifier's profile; peak RSS is that whole process (input columns included).
    Methods: ``fast`` (onefold.unify.stitch — identical to replaying the resolver),
    ``scipy`` (baseline: Arrow dictionary-encoded ids, scipy connected components of the
    message–identifier graph; no rules, so not the same answer), ``python`` (baseline: a
    pure-Python union-find over a prefix of the messages, extrapolated linearly). Before
    them, the compile time of the fast path's numba kernels (a fresh kernel cache) and
    their load time in a new process (``compile``).
(b) ``resolver``: messages/s of ``Resolver.resolve`` on realistic micro-batches (each batch
    loads the profiles it touches, as the real-time path does), beside a naive dict/set
    resolver with the same rules written here.
(c) ``lookup``: ``find_profile`` + ``profile_view`` against a DuckDB warehouse holding N
    profiles (default 1M) built directly in SQL; p50/p99 latency and lookups/s.

Results go to bench/results/identity.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from ingest import machine_busy_pct

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA_DIR = ROOT / "bench/data"
RESULTS = ROOT / "bench/results/identity.json"
NAMESPACES = ["user_id", "email", "phone", "anonymous_id"]  # strongest first
SOURCES = ["web", "app", "crm"]


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# ---------------------------------------------------------------- (a) the data


def _strings(ids: np.ndarray, prefix: bytes, width: int, suffix: bytes = b"", base: int = 16):
    """Fixed-width strings prefix + ids in ``base`` + suffix, built without Python objects."""
    digits = np.frombuffer(b"0123456789abcdef", np.uint8)
    n, p, s = len(ids), len(prefix), len(suffix)
    w = p + width + s
    buf = np.empty((n, w), np.uint8)
    buf[:, :p] = np.frombuffer(prefix, np.uint8)
    if s:
        buf[:, p + width :] = np.frombuffer(suffix, np.uint8)
    x = ids.astype(np.int64)
    for j in range(width - 1, -1, -1):
        buf[:, p + j] = digits[x % base]
        x = x // base
    offsets = np.arange(n + 1, dtype=np.int32) * w
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(buf))


def generate_messages(messages: int, seed: int = 7) -> pa.Table:
    """Identify messages of a web and app business, one row per (message, identifier), in
    seq order and, within a message, strongest namespace first then value.

    People (messages/8 of them, activity log-normal) browse on devices whose anonymous id is
    renewed at 74% of visits; 60% have an account (user id on 70% of their messages), 65% an
    e-mail (on 45%), 25% a phone (on 20%); 4% of renewals alias the previous id (two
    anonymous ids in one message). Adversarial, so that every rule fires: 0.1% of messages
    come from another person's computer (their anonymous id), 0.1% carry a family e-mail
    shared by a few people, 0.01% one of ten shop e-mails typed for walk-in customers, 0.2%
    a blocked value ("null", "test@example.com"); the most active people exceed the limit of
    200 anonymous ids.
    """
    rng = np.random.default_rng(seed)
    m = messages
    people = max(1, m // 8)
    weight = rng.lognormal(0.0, 1.0, people)
    person = rng.choice(people, size=m, p=weight / weight.sum())
    has_user = rng.random(people) < 0.60
    emails = rng.choice(3, size=people, p=[0.35, 0.55, 0.10])
    has_phone = rng.random(people) < 0.25

    # anonymous ids: renewed at 74% of a person's messages (always at the first)
    order = np.argsort(person, kind="stable")
    ordered = person[order]
    first = np.ones(m, bool)
    first[1:] = ordered[1:] != ordered[:-1]
    renew = first | (rng.random(m) < 0.74)
    anon_ordered = np.cumsum(renew) - 1
    anon = np.empty(m, np.int64)
    anon[order] = anon_ordered
    alias = np.zeros(m, bool)
    alias[order] = renew & ~first & (rng.random(m) < 0.04)
    previous = anon - 1  # the person's previous anonymous id, where alias
    shared_pc = rng.random(m) < 0.001
    anon[shared_pc] = anon[rng.integers(0, m, shared_pc.sum())]
    n_anon = int(anon_ordered[-1]) + 1 if m else 0

    logged_in = has_user[person] & (rng.random(m) < 0.70)
    no_anon = logged_in & (rng.random(m) < 0.05)
    with_email = (emails[person] > 0) & (rng.random(m) < 0.45)
    email = person * 2 + ((emails[person] == 2) & (rng.random(m) < 0.5))
    family = rng.random(m) < 0.001
    shop = rng.random(m) < 0.0001
    with_email |= family | shop
    n_family = max(1, m // 4000)
    n_shop = 10
    with_phone = has_phone[person] & (rng.random(m) < 0.20)
    blocked = rng.random(m) < 0.002
    blocked_user = blocked & (rng.random(m) < 0.5)
    blocked_email = blocked & ~blocked_user

    # values: one dictionary per namespace, then per-row indices into their concatenation
    users = _strings(np.arange(people), b"u-", 8)
    user_values = pa.concat_arrays([users, pa.array(["null"])])
    email_values = pa.concat_arrays([
        _strings(np.arange(2 * people), b"", 9, b"@mail.example.com"),
        _strings(np.arange(n_family), b"family-", 7, b"@example.org", base=10),
        _strings(np.arange(n_shop), b"shop-", 2, b"@example.net", base=10),
        pa.array(["test@example.com"]),
    ])  # fmt: skip
    phone_values = _strings(np.arange(people), b"+44770", 7, base=10)
    anon_values = _strings(np.arange(n_anon), b"a-", 10)
    dictionary = pa.concat_arrays([user_values, email_values, phone_values, anon_values])
    base = np.cumsum([0, len(user_values), len(email_values), len(phone_values)])

    email_id = np.where(family, 2 * people + rng.integers(0, n_family, m), email)
    email_id = np.where(shop, 2 * people + n_family + rng.integers(0, n_shop, m), email_id)
    email_id = np.where(blocked_email, 2 * people + n_family + n_shop, email_id)
    user_id = np.where(blocked_user, people, person)
    parts = [
        (np.flatnonzero(logged_in | blocked_user), 0, user_id),
        (np.flatnonzero(with_email | blocked_email), 1, email_id),
        (np.flatnonzero(with_phone), 2, person),
        (np.flatnonzero(~no_anon), 3, anon),
        (np.flatnonzero(alias & ~no_anon), 3, previous),
    ]
    msg = np.concatenate([p[0] for p in parts])
    code = np.concatenate([np.full(p[0].size, p[1], np.int8) for p in parts])
    index = np.concatenate([base[p[1]] + p[2][p[0]] for p in parts])
    del parts
    # within a message: namespace order, then value order (fixed-width values: id order)
    row_order = np.lexsort((index, code, msg))
    msg, code, index = msg[row_order], code[row_order], index[row_order]
    keep = np.ones(msg.size, bool)  # the alias may repeat the current id after a shared pc
    keep[1:] = (msg[1:] != msg[:-1]) | (index[1:] != index[:-1])
    msg, code, index = msg[keep], code[keep], index[keep]
    seq = (msg // 50_000 << 32) + msg % 50_000  # (segment << 32) + position, as the loader
    message_ids = _strings(np.arange(m), b"msg-", 12)
    source = rng.choice(len(SOURCES), size=m, p=[0.6, 0.3, 0.1]).astype(np.int8)
    return pa.table({
        "seq": pa.array(seq),
        "namespace": pa.DictionaryArray.from_arrays(pa.array(code), pa.array(NAMESPACES)),
        "value": dictionary.take(pa.array(index)),
        "message_id": pa.DictionaryArray.from_arrays(pa.array(msg.astype(np.int32)), message_ids),
        "source_id": pa.DictionaryArray.from_arrays(pa.array(source[msg]), pa.array(SOURCES)),
    })  # fmt: skip


# ---------------------------------------------------------------- (b) the real-time resolver


class NaiveResolver:
    """The baseline: a straightforward dict/set resolver with the same rules (priority,
    limits, merge protection, never-link, survivor by first-seen anchor), written the obvious
    way — one dict per profile, a method per step, no shortcuts."""

    def __init__(self, rules, never_link=()):
        self.priority = {n: r.priority for n, r in rules.namespaces.items()}
        self.limit = {n: r.limit for n, r in rules.namespaces.items()}
        self.unique = {n for n, r in rules.namespaces.items() if r.unique}
        self.never = {}
        for a, b in never_link:
            self.never.setdefault(a, set()).add(b)
            self.never.setdefault(b, set()).add(a)
        self.owner = {}
        self.profiles = {}
        self.merges = []
        self.refusals = []
        self.attributions = []

    def load(self, profile_id, anchor, anchor_seq, keys):
        self.profiles[profile_id] = {"anchor": anchor, "seq": anchor_seq, "ids": {}}
        for key in keys:
            self.owner[key] = profile_id
            self.profiles[profile_id]["ids"].setdefault(key[0], set()).add(key[1])

    def resolve(self, messages):
        for message in messages:
            self.resolve_one(message)

    def new_profile(self, key, seq):
        import hashlib

        profile_id = "pr_" + hashlib.sha256(f"{key[0]}\x1f{key[1]}".encode()).hexdigest()[:24]
        self.profiles[profile_id] = {"anchor": key, "seq": seq, "ids": {key[0]: {key[1]}}}
        self.owner[key] = profile_id
        return profile_id

    def can_attach(self, profile_id, key):
        ids = self.profiles[profile_id]["ids"]
        held = ids.get(key[0], set())
        if key[0] in self.unique and held:
            return False
        if self.limit[key[0]] is not None and len(held) >= self.limit[key[0]]:
            return False
        return all(self.owner.get(p) != profile_id for p in self.never.get(key, ()))

    def can_merge(self, a, b):
        ids_a, ids_b = self.profiles[a]["ids"], self.profiles[b]["ids"]
        for namespace in self.unique:
            if (
                ids_a.get(namespace)
                and ids_b.get(namespace)
                and ids_a[namespace] != ids_b[namespace]
            ):
                return False
        for namespace, values in ids_b.items():
            limit = self.limit[namespace]
            if limit is not None and len(values | ids_a.get(namespace, set())) > limit:
                return False
        for namespace, values in ids_b.items():
            for value in values:
                for partner in self.never.get((namespace, value), ()):
                    if self.owner.get(partner) == a:
                        return False
        return True

    def order(self, profile_id):
        profile = self.profiles[profile_id]
        return (profile["seq"], self.priority[profile["anchor"][0]], profile["anchor"][1])

    def merge(self, a, b):
        survivor, absorbed = (a, b) if self.order(a) <= self.order(b) else (b, a)
        for namespace, values in self.profiles[absorbed]["ids"].items():
            self.profiles[survivor]["ids"].setdefault(namespace, set()).update(values)
            for value in values:
                self.owner[(namespace, value)] = survivor
        del self.profiles[absorbed]
        return survivor, absorbed

    def resolve_one(self, message):
        keys = message.identifiers
        if not keys:
            return
        target = self.owner.get(keys[0])
        born = None
        if target is None:
            target = born = self.new_profile(keys[0], message.seq)
        for key in keys[1:]:
            current = self.owner.get(key)
            if current == target:
                continue
            if current is None:
                if self.can_attach(target, key):
                    self.profiles[target]["ids"].setdefault(key[0], set()).add(key[1])
                    self.owner[key] = target
                else:
                    self.refusals.append((message.seq, key))
            elif self.can_merge(target, current):
                target, absorbed = self.merge(target, current)
                if absorbed != born:
                    self.merges.append((message.seq, target, absorbed))
            else:
                self.refusals.append((message.seq, key))
        self.attributions.append((message.seq, keys[0]))


def _messages_of(table: pa.Table) -> list:
    """The generated rows as resolver messages (blocked values dropped, as extraction does)."""
    from onefold.unify.resolver import Message

    blocked = {"null", "test@example.com"}
    seqs = table["seq"].to_pylist()
    namespaces = table["namespace"].to_pylist()
    values = table["value"].to_pylist()
    ids = table["message_id"].to_pylist()
    sources = table["source_id"].to_pylist()
    messages, keys, current = [], [], None
    for i, (seq, namespace, value) in enumerate(zip(seqs, namespaces, values, strict=True)):
        if seq != current:
            if keys:
                messages.append(Message(current, ids[i - 1], sources[i - 1], tuple(keys)))
            keys, current = [], seq
        if value not in blocked:
            keys.append((namespace, value))
    if keys:
        messages.append(Message(current, ids[-1], sources[-1], tuple(keys)))
    return messages


class _Store:
    """What the warehouse holds between micro-batches, as dicts: owner of every identifier
    and each live profile's anchor and identifiers (the real path loads these with two
    joins; here loading is not timed)."""

    def __init__(self):
        self.owner = {}
        self.profiles = {}  # id -> (anchor, anchor_seq, set of keys)

    def touched(self, batch):
        profile_ids = {self.owner[k] for m in batch for k in m.identifiers if k in self.owner}
        return [(p, *self.profiles[p]) for p in profile_ids]

    def save(self, profiles, owner_of):
        """profiles: id -> (anchor, anchor_seq, keys) after the batch; owner_of: touched
        profile ids that no longer exist (absorbed)."""
        for gone in owner_of:
            self.profiles.pop(gone, None)
        for profile_id, (anchor, seq, keys) in profiles.items():
            self.profiles[profile_id] = (anchor, seq, keys)
            for key in keys:
                self.owner[key] = profile_id


def bench_resolver(messages: int, batch: int, seed: int = 11) -> dict:
    from onefold.unify.resolver import Resolver
    from onefold.unify.rules import IdentityRules

    rules = IdentityRules()
    all_messages = _messages_of(generate_messages(messages, seed))
    results = {}
    for name in ("resolver", "naive"):
        store = _Store()
        wall = cpu = 0.0
        merges = refusals = 0
        for start in range(0, len(all_messages), batch):
            chunk = all_messages[start : start + batch]
            touched = store.touched(chunk)
            if name == "resolver":
                r = Resolver(rules)
                for profile_id, anchor, seq, keys in touched:
                    r.load_profile(profile_id, anchor, seq)
                    for key in keys:
                        r.load_identifier(key, profile_id)
                t, c = time.perf_counter(), time.process_time()
                changes = r.resolve(chunk)
                wall += time.perf_counter() - t
                cpu += time.process_time() - c
                merges += len(changes.merges)
                refusals += len(changes.refusals)
                after = {
                    p.id: (
                        p.anchor,
                        p.anchor_seq,
                        {(n, v) for n, vs in p.values.items() for v in vs},
                    )
                    for p in r.profiles.values()
                }
            else:
                r = NaiveResolver(rules)
                for profile_id, anchor, seq, keys in touched:
                    r.load(profile_id, anchor, seq, keys)
                t, c = time.perf_counter(), time.process_time()
                r.resolve(chunk)
                wall += time.perf_counter() - t
                cpu += time.process_time() - c
                merges += len(r.merges)
                refusals += len(r.refusals)
                after = {
                    p: (d["anchor"], d["seq"], {(n, v) for n, vs in d["ids"].items() for v in vs})
                    for p, d in r.profiles.items()
                }
            store.save(after, {t[0] for t in touched} - after.keys())
        results[name] = {
            "messages": len(all_messages), "batch": batch,
            "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "messages_per_s": round(len(all_messages) / wall),
            "messages_per_cpu_s": round(len(all_messages) / cpu),
            "merges": merges, "refusals": refusals,
            "profiles": len(store.profiles),
        }  # fmt: skip
    assert results["resolver"]["profiles"] == results["naive"]["profiles"]
    assert results["resolver"]["merges"] == results["naive"]["merges"]
    results["ratio_cpu"] = round(
        results["resolver"]["messages_per_cpu_s"] / results["naive"]["messages_per_cpu_s"], 2
    )
    return results


# ---------------------------------------------------------------- (c) profile lookups


def build_warehouse(path: Path, profiles: int, seed: int = 5) -> dict:
    """A warehouse holding ``profiles`` live profiles (and 10% more absorbed into them),
    their identifiers, a few events each, traits, computed traits, merges, refusals and
    account memberships — written directly in SQL."""
    from onefold.store import Warehouse
    from onefold.unify import membership

    started = time.perf_counter()
    warehouse = Warehouse(path, memory_limit="6GB")
    con = warehouse.cursor()
    n = profiles
    con.execute(f"SELECT setseed({seed / 100})")
    con.execute(
        "INSERT INTO sources VALUES ('src_web', 'web', 'javascript', 'wk1', TRUE, now(), NULL),"
        "('src_app', 'app', 'ios', 'wk2', TRUE, now(), NULL),"
        "('src_crm', 'crm', 'http', 'wk3', TRUE, now(), NULL)"
    )
    # profile i: anchored on its first anonymous id; p_i = 'pr_' + md5(i)[:24]
    con.execute(f"""
        CREATE TEMP TABLE p AS
        SELECT i, 'pr_' || left(md5(i::VARCHAR), 24) AS id, i * 10 AS seq0 FROM range({n}) t(i)
    """)  # fmt: skip
    con.execute("""
        INSERT INTO profile_anchors
        SELECT id, 'anonymous_id', 'a-' || i, seq0, now()::TIMESTAMP FROM p
    """)  # fmt: skip
    # 10% of profiles absorbed another one (merged_into), with a merge record
    con.execute("""
        INSERT INTO profile_anchors
        SELECT 'pr_' || left(md5('x' || i::VARCHAR), 24), 'anonymous_id', 'b-' || i,
               i * 10 + 5, now()::TIMESTAMP
        FROM p WHERE i % 10 = 0
    """)  # fmt: skip
    con.execute("""
        INSERT INTO absorbed_profiles
        SELECT 'pr_' || left(md5('x' || i::VARCHAR), 24), id FROM p WHERE i % 10 = 0
    """)  # fmt: skip
    con.execute("""
        INSERT INTO identity_merges (seq, message_id, surviving_id, absorbed_id, namespace,
                                     value, method, created_at)
        SELECT i * 10 + 6, 'm' || i, id, 'pr_' || left(md5('x' || i::VARCHAR), 24),
               'anonymous_id', 'b-' || i, 'deterministic', now()::TIMESTAMP
        FROM p WHERE i % 10 = 0
    """)  # fmt: skip
    con.execute("""
        INSERT INTO identifiers (namespace, value, profile_id, first_seq, source_id)
        SELECT 'anonymous_id', 'a-' || i, id, seq0, 'src_web' FROM p
        UNION ALL SELECT 'anonymous_id', 'b-' || i, id, seq0 + 5, 'src_app' FROM p
            WHERE i % 10 = 0
        UNION ALL SELECT 'anonymous_id', 'c-' || i, id, seq0 + 1, 'src_app' FROM p
            WHERE i % 3 = 0
        UNION ALL SELECT 'user_id', 'u-' || i, id, seq0 + 2, 'src_web' FROM p WHERE i % 5 < 3
        UNION ALL SELECT 'email', 'e' || i || '@mail.example.com', id, seq0 + 2, 'src_web'
            FROM p WHERE i % 20 < 13
        UNION ALL SELECT 'phone', '+4477009' || lpad(i::VARCHAR, 7, '0'), id, seq0 + 3,
            'src_crm' FROM p WHERE i % 4 = 0
    """)  # fmt: skip
    con.execute(f"UPDATE identifiers SET profile_hash = {membership.PROFILE_HASH}")
    # four events per profile, each reaching it through one of its identifiers
    con.execute("""
        INSERT INTO events (seq, source_id, message_id, type, event, user_id, anonymous_id,
                            "timestamp", received_at, request_id, origin, raw)
        SELECT seq0 + k, 'src_web', 'msg-' || i || '-' || k,
               CASE WHEN k = 0 THEN 'identify' WHEN k = 3 THEN 'group' ELSE 'track' END,
               CASE WHEN k IN (1, 2) THEN 'Order Completed' END,
               CASE WHEN i % 5 < 3 THEN 'u-' || i END, 'a-' || i,
               TIMESTAMP '2026-01-01' + INTERVAL (i % 100000) SECOND,
               TIMESTAMP '2026-01-01' + INTERVAL (i % 100000) SECOND, 'r', 'bench',
               '{"type":"track","anonymousId":"a-' || i || '"}'
        FROM p, range(4) r(k)
    """)  # fmt: skip
    con.execute(f"""
        INSERT INTO event_identity
        SELECT seq, namespace, value, {membership.IDENTIFIER_HASH} FROM (
            SELECT seq0 + k AS seq, 'anonymous_id' AS namespace, 'a-' || i AS value
            FROM p, range(4) r(k)
        )
    """)  # fmt: skip
    con.execute("""
        INSERT INTO account_events SELECT seq0 + 3, 'acct-' || (i % 50000),
               TIMESTAMP '2026-01-01' FROM p
    """)  # fmt: skip
    con.execute("""
        INSERT INTO profile_traits
        SELECT id, t.trait, to_json(t.trait || '-' || i), 'src_web', seq0, TIMESTAMP '2026-01-01',
               md5_number(id)
        FROM p, (VALUES ('firstName'), ('lastName'), ('plan')) t(trait)
    """)  # fmt: skip
    con.execute("""
        INSERT INTO profile_computed_traits
        SELECT id, json_object('last_seen', i % 7, 'orders', i % 7), TIMESTAMP '2026-06-01',
               md5_number(id)
        FROM p
    """)  # fmt: skip
    con.execute("""
        INSERT INTO identity_refusals
        SELECT seq0 + 1, 'msg-' || i || '-1', 'email', 'family' || i || '@example.org', id,
               NULL, 'limit', 'the profile already holds 5 email values', now()::TIMESTAMP
        FROM p WHERE i % 100 = 0
    """)  # fmt: skip
    con.execute("CHECKPOINT")
    counts = {
        table: con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        for table in ("identity_profiles", "identifiers", "events", "event_identity",
                      "profile_traits", "computed_traits", "identity_merges")
    }  # fmt: skip
    counts["build_s"] = round(time.perf_counter() - started, 1)
    warehouse.close()
    return counts


def _timed_lookups(lookup, keys: list) -> dict:
    """Look ``keys`` up one after another with ``lookup(namespace, value)``."""
    latencies = []
    started = time.perf_counter()
    cpu = time.process_time()
    for namespace, value in keys:
        t = time.perf_counter()
        found = lookup(namespace, value)
        latencies.append(time.perf_counter() - t)
        assert found, (namespace, value)
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "lookups": len(keys),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 3),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 3),
        "max_ms": round(latencies[-1] * 1000, 2),
        "lookups_per_s": round(len(keys) / elapsed),
        "cpu_s": round(time.process_time() - cpu, 2),
    }


def _threaded_lookups(lookup, keys: list, threads: int) -> dict:
    """The same with ``threads`` threads sharing the keys: the rate a server's thread pool
    can reach."""
    from concurrent.futures import ThreadPoolExecutor

    parts = [keys[i::threads] for i in range(threads)]
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(lambda part: _timed_lookups(lookup, part), parts))
    elapsed = time.perf_counter() - started
    return {
        "threads": threads,
        "lookups": len(keys),
        "lookups_per_s": round(len(keys) / elapsed),
        "p99_ms_worst_thread": max(r["p99_ms"] for r in results),
    }


class _Timed:
    """A connection that times each query it runs (execute and fetch), by its first words."""

    def __init__(self, con) -> None:
        self.con = con
        self.times: dict[str, list[float]] = {}

    def execute(self, sql: str, params=None):
        t = time.perf_counter()
        cursor = self.con.execute(sql, params)
        rows, description = cursor.fetchall(), cursor.description
        label = " ".join(sql.split())[:70]
        self.times.setdefault(label, []).append(time.perf_counter() - t)
        return _Fetched(rows, description)

    def register(self, name: str, table) -> None:
        self.con.register(name, table)

    def unregister(self, name: str) -> None:
        self.con.unregister(name)


class _Fetched:
    def __init__(self, rows: list, description) -> None:
        self.rows, self.description = rows, description

    def fetchall(self) -> list:
        return self.rows

    def fetchone(self):
        return self.rows[0] if self.rows else None


def _query_split(con, keys: list) -> dict:
    """Where a warehouse lookup's time goes: the median of each query over ``keys``."""
    from onefold.unify.profiles import Lookup, find_profile, profile_view

    timed = _Timed(con)
    for namespace, value in keys:
        profile_view(timed, find_profile(timed, Lookup(namespace, value)))
    return {q: round(sorted(t)[len(t) // 2] * 1000, 2) for q, t in timed.times.items()}


def bench_lookup(
    profiles: int, lookups: int, workdir: Path, seed: int = 5, threads: int = 4
) -> dict:
    """Lookups by identifier, each answered with the whole profile view: from the serving
    store (what the profile API does) beside the warehouse queries it replaces."""
    import orjson

    from onefold.store import Warehouse
    from onefold.store.serving import ServingStore
    from onefold.unify import publish
    from onefold.unify.profiles import Lookup, ProfileReader, find_profile, profile_view

    path = workdir / "lookup.duckdb"
    built = build_warehouse(path, profiles, seed)
    rng = np.random.default_rng(seed)
    keys = []
    for i in rng.integers(0, profiles, lookups).tolist():  # what people look profiles up by
        if i % 5 < 3 and i % 2:
            keys.append(("user_id", f"u-{i}"))
        elif i % 20 < 13:
            keys.append(("email", f"e{i}@mail.example.com"))
        else:
            keys.append(("anonymous_id", f"a-{i}"))
    result: dict = {"warehouse": built}
    warehouse = Warehouse(path, memory_limit="6GB")
    serving = ServingStore(workdir / "serving")
    con = warehouse.cursor()

    # publishing every profile: what a new serving store (or a full rebuild) costs
    t, c = time.perf_counter(), time.process_time()
    publish.mark_all_dirty(con)
    published = publish.publish(warehouse, serving)
    result["publish_all"] = {
        "profile_ids": published, "wall_s": round(time.perf_counter() - t, 1),
        "cpu_s": round(time.process_time() - c, 1), "peak_rss_mb": round(peak_rss_mb()),
        "file_mb": round(sum(p.stat().st_size for p in (workdir / "serving").iterdir()) / 2**20),
        **serving.counts(),
    }  # fmt: skip

    def from_warehouse(namespace: str, value: str) -> bytes:
        found = find_profile(con, Lookup(namespace, value))
        return orjson.dumps(profile_view(con, found))

    reader = ProfileReader(warehouse, serving)

    def from_serving(namespace: str, value: str) -> bytes:
        return reader.view_json(reader.find(Lookup(namespace, value)))

    sample = keys[:50]
    result["same_answers"] = all(
        orjson.loads(from_warehouse(*key)) == orjson.loads(from_serving(*key)) for key in sample
    )
    _timed_lookups(from_warehouse, keys[:10])  # warm DuckDB's buffer pool
    result["warehouse_queries"] = _timed_lookups(from_warehouse, keys[: max(50, lookups // 50)])
    result["warehouse_queries"]["split_ms"] = _query_split(con, keys[:10])
    _timed_lookups(from_serving, keys[:1000])
    result["serving_store"] = _timed_lookups(from_serving, keys)
    result["serving_store_threads"] = _threaded_lookups(from_serving, keys, threads)
    serving.close()
    warehouse.close()
    return result


# ---------------------------------------------------------------- (a) the workers


def _load(path: Path) -> pa.Table:
    with pa.OSFile(str(path)) as source:
        table = pa.ipc.open_file(source).read_all()
    return table.combine_chunks()


def _prefix(table: pa.Table, messages: int) -> pa.Table:
    """The rows of the first ``messages`` messages."""
    seq = table["seq"].to_numpy()
    starts = np.flatnonzero(np.diff(seq, prepend=seq[0] - 1))
    end = starts[messages] if messages < starts.size else seq.size
    return table.slice(0, int(end))


def worker_fast(path: Path, _subset: int) -> dict:
    """onefold.unify.stitch from the Arrow columns to every identifier's profile."""
    from onefold.unify.rules import IdentityRules
    from onefold.unify.stitch import stitch

    t = time.perf_counter()
    table = _load(path)
    load_s = time.perf_counter() - t
    t, c = time.perf_counter(), time.process_time()
    result = stitch(table, IdentityRules())
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    stats = result.stats
    return {
        "load_s": round(load_s, 2), "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
        "peak_rss_mb": peak_rss_mb(),
        "phases_s": {k[:-2]: round(v, 2) for k, v in stats.items()
                     if k.endswith("_s") and not k.endswith("_cpu_s") and k != "total_s"},
        "phases_cpu_s": {k[:-6]: round(v, 2) for k, v in stats.items()
                         if k.endswith("_cpu_s") and k != "total_cpu_s"},
        "counts": {k: int(v) for k, v in stats.items() if not k.endswith("_s")},
    }  # fmt: skip


def worker_compile(path: Path, _subset: int) -> dict:
    """The compiled kernels' cost outside the timed run: a stitch of three messages in a
    fresh process whose kernel cache (``NUMBA_CACHE_DIR``, set by the caller) is empty, and
    again in a second process once the first has filled it."""
    t = time.perf_counter()
    from onefold.unify.rules import IdentityRules
    from onefold.unify.stitch import stitch

    import_s = time.perf_counter() - t
    tiny = pa.table({
        "seq": pa.array([1, 1, 2], pa.int64()),
        "namespace": ["user_id", "anonymous_id", "anonymous_id"], "value": ["u-1", "a-1", "a-2"],
    })  # fmt: skip
    t, c = time.perf_counter(), time.process_time()
    stitch(tiny, IdentityRules())
    first_s, first_cpu_s = time.perf_counter() - t, time.process_time() - c
    t = time.perf_counter()
    stitch(tiny, IdentityRules())
    return {
        "import_s": round(import_s, 2), "first_call_s": round(first_s, 2),
        "first_call_cpu_s": round(first_cpu_s, 2),
        "second_call_s": round(time.perf_counter() - t, 3),
    }  # fmt: skip


def worker_scipy(path: Path, _subset: int) -> dict:
    """Baseline: identifiers dictionary-encoded by Arrow, scipy connected components of the
    message–identifier graph. No rules (limits, merge protection, blocked values), no
    merges or profile ids: raw components only."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    t = time.perf_counter()
    table = _load(path)
    load_s = time.perf_counter() - t
    t, c = time.perf_counter(), time.process_time()
    values = pc.dictionary_encode(table["value"].combine_chunks()).indices.to_numpy()
    namespaces = table["namespace"].combine_chunks().indices.to_numpy().astype(np.int64)
    pairs = pc.dictionary_encode(pa.array(values.astype(np.int64) * 8 + namespaces))
    key = pairs.indices.to_numpy()
    n_keys = len(pairs.dictionary)
    seq = table["seq"].to_numpy()
    message = np.cumsum(np.diff(seq, prepend=seq[0] - 1) != 0) - 1
    n_messages = int(message[-1]) + 1
    graph = csr_matrix(
        (np.ones(key.size, np.int8), (message, n_messages + key)),
        shape=(n_messages + n_keys, n_messages + n_keys),
    )
    count, label = connected_components(graph, directed=False)
    profile_of_identifier = label[n_messages:]
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    return {
        "load_s": round(load_s, 2), "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
        "peak_rss_mb": peak_rss_mb(),
        "counts": {"identifiers": n_keys, "components": int(count),
                   "identifier_components": int(np.unique(profile_of_identifier).size)},
    }  # fmt: skip


def worker_python(path: Path, subset: int) -> dict:
    """Baseline: a pure-Python union-find (dicts, path halving) over the first ``subset``
    messages, no rules, extrapolated linearly to all messages."""
    table = _load(path)
    total = int(np.count_nonzero(np.diff(table["seq"].to_numpy(), prepend=-1)))
    part = _prefix(table, subset)
    seqs = part["seq"].to_pylist()
    keys = list(zip(part["namespace"].to_pylist(), part["value"].to_pylist(), strict=True))
    t, c = time.perf_counter(), time.process_time()
    parent: dict = {}

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    current, head = None, None
    for seq, key in zip(seqs, keys, strict=True):
        if key not in parent:
            parent[key] = key
        if seq != current:
            current, head = seq, find(key)
            continue
        root = find(key)
        if root != head:
            parent[root] = head
    profile = {key: find(key) for key in parent}
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    messages = min(subset, total)
    return {
        "messages_measured": messages, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
        "extrapolated_wall_s": round(wall * total / messages, 1),
        "extrapolated_cpu_s": round(cpu * total / messages, 1),
        "peak_rss_mb": peak_rss_mb(), "counts": {"identifiers": len(profile)},
    }  # fmt: skip


def worker_resolver(path: Path, subset: int) -> dict:
    """The exact baseline: the Resolver over the first ``subset`` messages in seq order
    (what a rebuild replays), extrapolated linearly; ``group_messages`` (which normalises
    phone numbers again) is reported apart. Checks the fast path gives the same
    identifiers, profiles, merges and refusals on that prefix."""
    from onefold.unify.identifiers import group_messages
    from onefold.unify.resolver import Resolver
    from onefold.unify.rules import IdentityRules
    from onefold.unify.stitch import _changes_tables, stitch

    table = _load(path)
    total = int(np.count_nonzero(np.diff(table["seq"].to_numpy(), prepend=-1)))
    part = _prefix(table, subset)
    columns = [part[name].to_pylist() for name in ("seq", "message_id", "source_id")]
    columns += [[None] * part.num_rows, part["namespace"].to_pylist(), part["value"].to_pylist()]
    rows = list(zip(*columns, strict=True))
    rules = IdentityRules()
    t = time.perf_counter()
    extracted = group_messages(rows, rules)  # normalising (phones) and ordering, not timed
    grouped = time.perf_counter() - t
    resolver = Resolver(rules)
    t, c = time.perf_counter(), time.process_time()
    resolver.resolve(extracted.messages)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    expected = _changes_tables(resolver, resolver.changes)
    got = stitch(part, rules)

    def rows_of(t: pa.Table) -> set:
        return set(zip(*[col.to_pylist() for col in t.columns], strict=True))

    same = (rows_of(expected.identifiers) == rows_of(got.identifiers)
            and rows_of(expected.profiles) == rows_of(got.profiles)
            and expected.merges.to_pylist() == got.merges.to_pylist()
            and rows_of(expected.refusals) == rows_of(got.refusals))  # fmt: skip
    messages = len(extracted.messages)
    return {
        "messages_measured": messages, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
        "group_messages_s": round(grouped, 2),
        "extrapolated_wall_s": round(wall * total / messages, 1),
        "extrapolated_cpu_s": round(cpu * total / messages, 1),
        "fast_path_identical": same, "peak_rss_mb": peak_rss_mb(),
    }  # fmt: skip


WORKERS = {"fast": worker_fast, "scipy": worker_scipy, "python": worker_python,
           "resolver": worker_resolver, "compile": worker_compile}  # fmt: skip


def _run_worker(name: str, path: Path, subset: int, env: dict | None = None) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", name, "--data", str(path), "--subset", str(subset)],
        capture_output=True, text=True, check=False, env={**os.environ, **(env or {})},
    )  # fmt: skip
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_stitch(messages: int, subset: int, repeat: int, seed: int = 7) -> dict:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / f"identity-{messages}-{seed}.arrow"
    result: dict = {"messages": messages}
    if not path.exists():
        t = time.perf_counter()
        table = generate_messages(messages, seed)
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        result["generate_s"] = round(time.perf_counter() - t, 1)
        del table
    table = _load(path)
    seq = table["seq"].to_numpy()
    result["data"] = {
        "rows": table.num_rows,
        "messages": int(np.count_nonzero(np.diff(seq, prepend=-1))),
        "links": table.num_rows - int(np.count_nonzero(np.diff(seq, prepend=-1))),
        "distinct_identifiers": len(pc.unique(table["value"].combine_chunks())),
        "file_mb": round(path.stat().st_size / 2**20),
    }
    del table, seq
    with tempfile.TemporaryDirectory(prefix="onefold-numba-") as cache:
        env = {"NUMBA_CACHE_DIR": cache}
        result["compile"] = {"cold": _run_worker("compile", path, 0, env),
                             "cached": _run_worker("compile", path, 0, env)}  # fmt: skip
    _run_worker("compile", path, 0)  # so that the timed runs find the kernels compiled
    runs = [_run_worker("fast", path, subset) for _ in range(repeat)]
    result["fast"] = min(runs, key=lambda r: r.get("wall_s", 1e9))
    result["fast"]["all_wall_s"] = [r.get("wall_s") for r in runs]
    for name in ("scipy", "python", "resolver"):
        result[name] = _run_worker(name, path, min(subset, messages))
    return result


# ---------------------------------------------------------------- driver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="stitch,resolver,lookup")
    parser.add_argument("--messages", type=int, default=10_000_000)
    parser.add_argument(
        "--subset",
        type=int,
        default=1_000_000,
        help="messages the pure-Python baselines run on (extrapolated)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="fast-path runs (best kept)")
    parser.add_argument("--resolver-messages", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=20_000)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()  # fmt: skip
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args.data, args.subset)))
        return
    parts = args.parts.split(",")
    results: dict = {
        "machine": {
            "platform": platform.platform(), "python": platform.python_version(),
            "cpus": os.cpu_count(), "busy_percent_before": machine_busy_pct(),
            "load_average_before": os.getloadavg(),
        },
    }  # fmt: skip
    if "stitch" in parts:
        results["stitch"] = bench_stitch(args.messages, args.subset, args.repeat)
        s = results["stitch"]
        print(
            f"(a) stitching {s['data']['messages']:,} messages "
            f"({s['data']['rows']:,} rows, {s['data']['distinct_identifiers']:,} identifiers)"
        )
        for when, r in s["compile"].items():
            if "error" in r:
                print(f"  kernels ({when}) failed: {r['error'][-300:]}")
                continue
            print(f"  kernels, {when:6s}: first stitch of 3 messages {r['first_call_s']} s "
                  f"({r['first_call_cpu_s']} s cpu; import {r['import_s']} s)")  # fmt: skip
        for name in ("fast", "scipy", "python", "resolver"):
            r = s[name]
            if "error" in r:
                print(f"  {name:9s} failed: {r['error'][-300:]}")
                continue
            extra = (
                f"  (measured {r['messages_measured']:,} messages: {r['wall_s']} s)"
                if "messages_measured" in r
                else ""
            )
            wall = r.get("extrapolated_wall_s", r["wall_s"])
            cpu = r.get("extrapolated_cpu_s", r["cpu_s"])
            print(
                f"  {name:9s} {wall:8.1f} s wall {cpu:8.1f} s cpu  "
                f"peak RSS {r['peak_rss_mb']:7.0f} MB{extra}"
            )
            if name == "fast":
                print(f"            cpu s by phase: {r['phases_cpu_s']}")
    if "resolver" in parts:
        results["resolver"] = bench_resolver(args.resolver_messages, args.batch)
        r = results["resolver"]
        print(f"(b) resolver, {r['resolver']['messages']:,} messages in batches of {args.batch:,}")
        for name in ("resolver", "naive"):
            print(
                f"  {name:9s} {r[name]['messages_per_cpu_s']:9,} msgs/s per core (cpu time)  "
                f"{r[name]['messages_per_s']:9,} msgs/s wall"
            )
    if "lookup" in parts:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="onefold-lookup-") as workdir:
            results["lookup"] = bench_lookup(args.profiles, args.lookups, Path(workdir))
        r = results["lookup"]
        p = r["publish_all"]
        print(
            f"(c) lookups at {args.profiles:,} profiles; publishing all {p['views']:,} views "
            f"took {p['wall_s']} s, {p['peak_rss_mb']:,} MB peak, {p['file_mb']:,} MB file; "
            f"same answers: {r['same_answers']}"
        )
        for name in ("warehouse_queries", "serving_store"):
            print(
                f"  {name:17s} p50 {r[name]['p50_ms']:8.2f} ms  p99 {r[name]['p99_ms']:8.2f} ms"
                f"  {r[name]['lookups_per_s']:7,} lookups/s"
            )
        t = r["serving_store_threads"]
        print(f"  serving_store, {t['threads']} threads: {t['lookups_per_s']:,} lookups/s")
    results["machine"]["busy_percent_after"] = machine_busy_pct()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"results: {args.output}")


if __name__ == "__main__":
    main()
