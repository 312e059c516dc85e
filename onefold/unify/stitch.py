"""The fast full rebuild of the deterministic identity graph: every stored message at once.

Replaying every event through the resolver (``IdentityGraph.rebuild``) is exact but runs
Python per message. A full rebuild gives the same graph — identifiers, profiles, merges,
refusals and event attributions, row for row — with compiled passes over integer arrays
(:mod:`onefold.unify.stitch_kernels`, numba):

1. **Encode.** Each message's identifiers, normalised and ordered as the resolver takes them
   (strongest namespace first, then value), become integers numbered by first appearance:
   a 64-bit hash of (namespace, value) per row splits the rows into parts small enough for
   a hash table in cache, and each part is numbered with hits checked byte for byte (so
   hash clashes cost time, never exactness). Two threads, a range of rows or parts each.
2. **Blocked values** and block overrides are marked per identifier; a message's first
   identifier that is not blocked is its strongest.
3. **Resolve.** The resolver's own rules, one message after another in ``seq`` order, on
   integers: identifiers owned by profiles numbered by birth, profiles joined by a
   union-find whose root is the survivor, and per profile a count of values per namespace
   (identifiers of two profiles never overlap, so counts decide every limit and merge
   protection). Merges and refusals come out in the resolver's order; one pass over the
   rows, memory-latency bound.
4. **"Never link" overrides.** Their check depends on which profile holds the partner, and
   the resolver reports the first partner in the iteration order of its own sets: the raw
   components (union-find over the message–identifier graph, every rule ignored) that hold
   both identifiers of an override are replayed through the :class:`Resolver` instead. The
   components are independent, so the two parts are simply put together.
5. **Profile ids** (SHA-256 of the anchor) with OpenSSL's SHA-256 from a kernel, and the
   tables as Arrow columns sharing one dictionary of identifiers and one of profile ids.

``tests/unify/test_stitch.py`` checks the result equals ``IdentityGraph.rebuild()`` and,
on random histories, one resolver run; ``tests/unify/test_stitch_kernels.py`` the kernels
against plain Python.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from onefold.store.warehouse import insert_arrow
from onefold.unify import accounts, computed, membership, profile_rows, traits
from onefold.unify import stitch_kernels as kernels
from onefold.unify.identifiers import _region, extraction_sql, normalise_phone
from onefold.unify.resolver import Changes, Key, Message, Resolver
from onefold.unify.rules import IdentityRules

CONSUMER = "identity"
_STR = pa.dictionary(pa.int32(), pa.string())  # every string column of the result

_IDENTIFIERS = pa.schema([("namespace", _STR), ("value", _STR), ("profile_id", _STR),
                          ("first_seq", pa.int64()), ("source_id", _STR)])  # fmt: skip
_PROFILES = pa.schema([("profile_id", _STR), ("anchor_namespace", _STR), ("anchor_value", _STR),
                       ("anchor_seq", pa.int64()), ("merged_into", _STR)])  # fmt: skip
_MERGES = pa.schema([("seq", pa.int64()), ("message_id", pa.string()),
                     ("surviving_id", pa.string()), ("absorbed_id", pa.string()),
                     ("namespace", pa.string()), ("value", pa.string())])  # fmt: skip
_REFUSALS = pa.schema([("seq", pa.int64()), ("message_id", pa.string()),
                       ("namespace", pa.string()), ("value", pa.string()),
                       ("profile_id", pa.string()), ("other_profile_id", pa.string()),
                       ("rule", pa.string()), ("detail", pa.string())])  # fmt: skip
_ATTRIBUTIONS = pa.schema([("seq", pa.int64()), ("namespace", _STR), ("value", _STR)])
_BLOCKED = pa.schema([("namespace", pa.string()), ("value", pa.string()),
                      ("occurrences", pa.int64()), ("last_seq", pa.int64())])  # fmt: skip


@dataclass
class Stitched:
    """The identity graph of all messages: the rows ``graph.write_changes`` would write.
    The large tables' string columns are dictionary-encoded, sharing one dictionary of
    identifiers and one of profile ids."""

    identifiers: pa.Table
    profiles: pa.Table  # every profile born, with merged_into (null when alive)
    merges: pa.Table  # in the order the resolver records them
    refusals: pa.Table
    attributions: pa.Table  # event_identity
    blocked: pa.Table  # identity_blocked
    stats: dict[str, float] = field(default_factory=dict)


# ------------------------------------------------------------------ reading the messages


def extract_all(con: duckdb.DuckDBPyConnection, rules: IdentityRules) -> pa.Table:
    """Every stored message's identifiers as rows of (seq, message_id, source_id, namespace,
    value), normalised as :func:`onefold.unify.identifiers.group_messages` does (phones to
    E.164 once per distinct value and region); :func:`stitch` orders, deduplicates and
    blocks them. The rows come from the micro-batches' own extraction query, merge calls'
    ``mergeProperties`` and the batch-level context included."""
    rows = con.sql(extraction_sql(rules, where="TRUE")).to_arrow_table().combine_chunks()
    phone_names = [n for n, r in rules.namespaces.items() if r.normalise == "phone"]
    is_phone = _numpy(pc.is_in(rows["namespace"], pa.array(phone_names, pa.string())))
    index = np.flatnonzero(is_phone)
    if index.size:
        phones = rows.take(index)
        values = pc.dictionary_encode(_as_array(phones["value"]))
        locales = pc.dictionary_encode(_as_array(phones["locale"]))
        regions = [_region(x, rules.default_region) for x in locales.dictionary.to_pylist()]
        regions.append(rules.default_region)  # for messages without a locale
        region = _numpy(pc.fill_null(locales.indices, len(regions) - 1)).astype(np.int64)
        pair = _numpy(values.indices).astype(np.int64) * len(regions) + region
        distinct, inverse = np.unique(pair, return_inverse=True)
        raw = values.dictionary.to_pylist()
        normalised = pa.array(
            [normalise_phone(raw[p // len(regions)], regions[p % len(regions)])
             for p in distinct.tolist()],
            pa.string(),
        )  # fmt: skip
        replaced = pc.replace_with_mask(
            _as_array(rows["value"]), pa.array(is_phone), normalised.take(pa.array(inverse))
        )
        rows = rows.set_column(rows.schema.get_field_index("value"), "value", replaced)
        rows = rows.filter(pc.is_valid(rows["value"]))
    return rows.drop_columns(["locale"])


# ------------------------------------------------------------------ array helpers


def _as_array(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        column = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    return column


def _numpy(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return _as_array(array).to_numpy(zero_copy_only=False)


def _dict(indices: np.ndarray, dictionary: pa.Array, null: np.ndarray | None = None):
    """A dictionary<int32, string> column: ``dictionary[indices]`` without copying strings."""
    index = pa.array(indices.astype(np.int32, copy=False), mask=null)
    return pa.DictionaryArray.from_arrays(index, dictionary)


def _as_dict(array: pa.Array) -> pa.DictionaryArray:
    """Any string column as dictionary<int32, string>."""
    if pa.types.is_dictionary(array.type):
        return pa.DictionaryArray.from_arrays(
            array.indices.cast(pa.int32()), array.dictionary.cast(pa.string())
        )
    array = array.cast(pa.string())
    null = _numpy(array.is_null()) if array.null_count else None
    return _dict(np.arange(len(array), dtype=np.int32), array, null)


def _per_row(column: pa.Array | None, rows: np.ndarray) -> pa.DictionaryArray:
    """A column's value at each of ``rows``, as dictionary<int32, string>."""
    if column is None:
        return _as_dict(pa.nulls(rows.size, pa.string()))
    if pa.types.is_dictionary(column.type) and not column.null_count:
        indices = _numpy(column.indices)[rows].astype(np.int32, copy=False)
        return _dict(indices, column.dictionary.cast(pa.string()))
    return _as_dict(column.take(pa.array(rows)))


def _strings(items: list | tuple) -> pa.DictionaryArray:
    return _as_dict(pa.array(items, pa.string()))


def _duckdb(threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB for a computation, quiet (no progress bar)."""
    db = duckdb.connect(config={"threads": threads} if threads else {})
    db.execute("SET enable_progress_bar = false")
    return db


def profile_ids(namespaces: pa.Array, values: pa.Array, threads: int | None = None) -> pa.Array:
    """``profile_id_for`` of many anchors at once (SHA-256 in DuckDB)."""
    if len(values) == 0:
        return pa.array([], pa.string())
    anchors = pa.table({"namespace": namespaces.cast(pa.string()), "value": values})
    with _duckdb(threads) as db:
        db.register("anchors", anchors)
        result = db.sql(
            "SELECT 'pr_' || left(sha256(namespace || chr(31) || value), 24) FROM anchors"
        ).to_arrow_table()
    return _as_array(result.column(0))


def _profile_ids(
    anchors: np.ndarray,
    key_code: np.ndarray,
    key_value: pa.Array,
    ns_names: pa.Array,
    also: tuple = (),
) -> tuple[pa.Array, object]:
    """:func:`profile_ids` of the ``anchors`` (identifier numbers), and the result of the
    call ``also`` run beside them. With OpenSSL's SHA-256 in a kernel, on two threads (six
    times faster than DuckDB's on one here); DuckDB where libcrypto is missing."""
    width = kernels.ID_WIDTH
    also_call = [also] if also else []
    if kernels.SHA256 is None or anchors.size * width >= 2**31:
        names = _dict(key_code[anchors], ns_names)
        ids, *other = _parallel([(profile_ids, names, key_value.take(anchors)), *also_call])
        return ids, other[0] if other else None
    out = np.empty(anchors.size * width, np.uint8)
    strings = (*_buffers(key_value), *_buffers(ns_names))
    halves = _halves(anchors.size, 2)
    results = _parallel([
        *[(kernels.profile_ids, *kernels.SHA256, anchors[lo:hi], key_code, *strings,
           out[lo * width : hi * width]) for lo, hi in halves],
        *also_call,
    ])  # fmt: skip
    offsets = np.arange(0, out.size + 1, width, dtype=np.int32)
    ids = pa.StringArray.from_buffers(anchors.size, pa.py_buffer(offsets), pa.py_buffer(out))
    return ids, results[-1] if also else None


def _buffers(value: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A string column's offsets (one per row and one past the end) and bytes, no copy."""
    _, offsets, data = value.buffers()
    width = np.int64 if pa.types.is_large_string(value.type) else np.int32
    offsets = np.frombuffer(offsets, width)[value.offset : value.offset + len(value) + 1]
    data = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
    return offsets, data


def _hashes(code: np.ndarray, value: pa.Array) -> np.ndarray:
    """A 64-bit hash of each (namespace code, value), in row order."""
    out = np.empty(code.size, np.uint64)
    offsets, data = _buffers(value)
    _parallel([(kernels.hash_rows, code[lo:hi], offsets[lo : hi + 1], data, out[lo:hi])
               for lo, hi in _halves(code.size, _threads(code.size))])  # fmt: skip
    return out


def _parallel(calls: list) -> list:
    """Run each ``(function, *args)`` in its own thread (kernels let go of the GIL)."""
    if len(calls) == 1:
        function, *args = calls[0]
        return [function(*args)]
    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(*call) for call in calls]
        return [future.result() for future in futures]


def _threads(n: int) -> int:
    """Threads for a pass over ``n`` rows: two where it pays (this machine has two cores)."""
    return 1 if n < 1_000_000 else max(1, min(2, os.cpu_count() or 1))


def _halves(n: int, threads: int) -> list[tuple[int, int]]:
    bounds = [n * i // threads for i in range(threads + 1)]
    return list(itertools.pairwise(bounds))


class _Arena:
    """One allocation handed out as arrays, and handed out again once they are dead.

    On the benchmark machine (a VM) the first touch of memory costs about 3 s per GB of
    page faults, several times the work done on it; memory already touched is free. So the
    encoding's scratch is reused for the resolver's state instead of allocating anew."""

    def __init__(self, nbytes: int) -> None:
        self.buffer = np.empty(nbytes, np.uint8)
        self.top = 0

    def take(self, shape: int | tuple[int, ...], dtype: type) -> np.ndarray:
        """An uninitialised array, from the arena while it has room."""
        count = int(np.prod(shape))
        nbytes = count * np.dtype(dtype).itemsize
        start = -(-self.top // 64) * 64
        if start + nbytes > self.buffer.size:
            return np.empty(shape, dtype)
        self.top = start + nbytes
        return self.buffer[start : start + nbytes].view(dtype).reshape(shape)

    def reset(self) -> None:
        self.top = 0


def encode(
    code: np.ndarray, value: pa.Array, threads: int | None = None, arena: _Arena | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Number each row's (namespace, value) by first appearance: the key of every row and
    the first row of every key (int32). Exact whatever :func:`_hashes` gives.

    Rows are split by hash into parts small enough for a table in cache (see
    :mod:`onefold.unify.stitch_kernels`), each thread splitting a range of rows and then
    numbering a range of parts. The large arrays are numpy's, which asks for huge pages:
    without them the kernels' scattered reads and writes stall on address translation.
    The scratch comes from ``arena`` (then free again) when given."""
    n = code.size
    if n >= 2**31:
        raise ValueError("stitch takes fewer than 2**31 identifier rows at once")
    threads = threads or _threads(n)
    offsets, data = _buffers(value)
    hashes = _hashes(code, value)
    part_bits = 0
    while part_bits < 12 and (n >> part_bits) > 32768:
        part_bits += 1
    parts = 1 << part_bits
    ranges = _halves(n, threads)
    counts = [(np.zeros(parts, np.int64), np.zeros(parts, np.int64)) for _ in ranges]
    _parallel([(kernels.histogram, hashes[lo:hi], offsets[lo : hi + 1], part_bits, *count)
               for (lo, hi), count in zip(ranges, counts, strict=True)])  # fmt: skip
    rows_in = np.zeros(parts + 1, np.int64)
    bytes_in = np.zeros(parts + 1, np.int64)
    rows_in[1:] = np.cumsum(sum(c[0] for c in counts))
    bytes_in[1:] = np.cumsum(sum(c[1] for c in counts))
    starts = []  # where each thread's rows go in each part: after the earlier threads'
    row_at, byte_at = rows_in[:-1].copy(), bytes_in[:-1].copy()
    for row_count, byte_count in counts:
        starts.append((row_at.copy(), byte_at.copy()))
        row_at += row_count
        byte_at += byte_count
    total = int(bytes_in[-1])
    arena = arena or _Arena(0)
    prow = np.empty(n, np.int32)  # becomes key_rows
    phash = arena.take(n, np.uint32)
    pcode = arena.take(n, np.int8)
    pstart = arena.take(n + 1, np.int32 if total < 2**31 else np.int64)
    pstart[n] = total
    pdata = arena.take(total, np.uint8)
    _parallel([
        (kernels.scatter, code[lo:hi], offsets[lo : hi + 1], data, hashes[lo:hi], part_bits, lo,
         *at, prow, phash, pcode, pstart, pdata)
        for (lo, hi), at in zip(ranges, starts, strict=True)
    ])  # fmt: skip
    del starts
    if hashes.dtype.itemsize == 8 and hashes.flags.c_contiguous and hashes.flags.writeable:
        first_row = hashes.view(np.int32)[:n]  # the hashes' memory, already touched
    else:
        first_row = np.empty(n, np.int32)
    del hashes
    split = [int(np.searchsorted(rows_in, rows_in[-1] * i // threads)) for i in range(threads)]
    split = sorted(set(split)) + [parts]
    _parallel([(kernels.first_rows, rows_in[lo : hi + 1], prow, phash, pcode, pstart, pdata,
                first_row) for lo, hi in itertools.pairwise(split)])  # fmt: skip
    del phash, pcode, pstart, pdata
    arena.reset()
    key_rows = prow  # the keys are fewer than the rows
    n_keys = kernels.number(first_row, key_rows)
    return first_row, key_rows[:n_keys]


# ------------------------------------------------------------------ stitching

_REFUSALS_TEXT = {  # the resolver's rule and detail for each of the kernel's refusals
    kernels.ATTACH_UNIQUE: ("merge_protection", "the profile already has a different {ns}"),
    kernels.ATTACH_LIMIT: ("limit", "the profile already holds {n} {ns} values"),
    kernels.MERGE_UNIQUE: ("merge_protection", "the profiles have different {ns} values"),
    kernels.MERGE_LIMIT: ("limit", "merged, the profile would hold {n} {ns} values"),
}


def stitch(
    rows: pa.Table,
    rules: IdentityRules,
    never_link: Iterable[tuple[Key, Key]] = (),
    blocked_keys: Iterable[Key] = (),
) -> Stitched:
    """Resolve every message at once; the same result as one :class:`Resolver` run over all
    messages in ``seq`` order (after ``group_messages``' blocking and ordering).

    ``rows``: one row per (message, identifier) with columns ``seq``, ``namespace`` and
    ``value`` (normalised), optionally ``message_id`` and ``source_id``; in any order.
    """
    clock, cpu = time.perf_counter, time.process_time
    stats: dict[str, float] = {}
    started, cpu_started = clock(), cpu()
    mark, cpu_mark = started, cpu_started

    def lap(name: str) -> None:
        nonlocal mark, cpu_mark
        now, cpu_now = clock(), cpu()
        stats[f"{name}_s"] = now - mark
        stats[f"{name}_cpu_s"] = cpu_now - cpu_mark
        mark, cpu_mark = now, cpu_now

    # the first call of a kernel in a process loads the machine code (and starts LLVM)
    kernels.ordered(np.zeros(0, np.int64), np.zeros(0, np.int8), *_buffers(pa.array([""])))
    lap("load_kernels")

    names = rules.ordered()
    ns_names = pa.array(names, pa.string())
    never_link = list(never_link)

    # -- namespaces as codes in priority order; rows in (seq, priority, value) order ---------
    namespace = _as_array(rows["namespace"])
    if pa.types.is_dictionary(namespace.type):
        of_dictionary = pc.index_in(namespace.dictionary.cast(pa.string()), value_set=ns_names)
        code = _numpy(pc.fill_null(of_dictionary, -1)).astype(np.int8)[_numpy(namespace.indices)]
    else:
        code = _numpy(pc.fill_null(pc.index_in(namespace, value_set=ns_names), -1))
        code = code.astype(np.int8)
    seq = _numpy(rows["seq"]).astype(np.int64, copy=False)
    value = _as_array(rows["value"])
    if not (pa.types.is_string(value.type) or pa.types.is_large_string(value.type)):
        value = value.cast(pa.string())
    unknown = code < 0  # a namespace the rules do not know carries no identifier
    if value.null_count:
        unknown |= _numpy(value.is_null())
    if unknown.any():
        keep = np.flatnonzero(~unknown)
        rows, seq, code = rows.take(keep), seq[keep], code[keep]
        value = _as_array(rows["value"]).cast(value.type)
    del unknown
    if not kernels.ordered(seq, code, *_buffers(value)):
        order = _sort(seq, code, value)
        rows, seq, code = rows.take(order), seq[order], code[order]
        value = _as_array(rows["value"]).cast(value.type)
    lap("order")

    # -- identifiers as integers, by first appearance -----------------------------------------
    offsets = _buffers(value)[0]
    arena = _Arena(10 * code.size + int(offsets[-1] - offsets[0]) + 256)  # encode's scratch
    del offsets
    key, key_rows = encode(code, value, arena=arena)
    n_keys = key_rows.size
    key_code = code[key_rows]
    key_value = value.take(pa.array(key_rows))
    del value, code
    lap("encode")

    # -- blocked values and overrides --------------------------------------------------------
    blocked_key = _blocked(rules, names, key_code, key_value, set(blocked_keys))
    blocked = _blocked_table(ns_names, key, key_code, key_value, seq, blocked_key)
    lap("blocked")

    # -- messages; components holding both identifiers of a "never link" are replayed ------
    starts = arena.take(seq.size, np.int32)
    starts = starts[: kernels.messages(seq, key, blocked_key, starts)]
    k0 = key[starts]
    skip_key = np.zeros(n_keys, bool)
    found = _find_keys([key for pair in never_link for key in pair], names, key_code, key_value)
    pairs = [(a, b) for a, b in zip(found[::2], found[1::2], strict=True)
             if a is not None and b is not None]  # fmt: skip
    pairs = [(a, b) for a, b in pairs if not (blocked_key[a] or blocked_key[b])]
    if pairs:
        root = kernels.components(seq, key, blocked_key, n_keys)
        dirty_root = np.zeros(n_keys, bool)
        for a, b in pairs:
            if root[a] == root[b]:
                dirty_root[root[a]] = True
        skip_key = dirty_root[root]
        roots = (root == np.arange(n_keys)) & ~blocked_key
        stats.update(components=int(roots.sum()), dirty_components=int(dirty_root.sum()))
        del root, roots, dirty_root
    skip = skip_key[k0] if pairs else np.zeros(0, bool)
    python_msgs = np.flatnonzero(skip)
    if not python_msgs.size:
        skip = np.zeros(0, bool)
    del skip_key
    lap("messages")

    limit = np.array([-1 if rules.namespaces[n].limit is None else rules.namespaces[n].limit
                      for n in names], np.int64)  # fmt: skip
    unique = np.array([rules.namespaces[n].unique for n in names], bool)
    unique_order = np.array([names.index(n) for n in Resolver(rules).unique], np.int64)
    owner = arena.take(n_keys, np.int32)
    owner.fill(-1)
    attached = arena.take(n_keys, np.int32)
    attached.fill(-1)
    state_at = arena.top
    anchors = np.zeros(n_keys, bool)  # each identifier creates a profile once at most
    anchors[k0] = True
    state = arena.take((int(anchors.sum()), kernels.width(len(names))), np.int32)
    del anchors
    merges_k = np.empty((max(seq.size - starts.size, 1), 4), np.int32)
    # every message is attributed to its strongest identifier, whatever the rules refused:
    # gathered in a second thread meanwhile
    seq_of, code_of = np.empty(starts.size, np.int64), np.empty(starts.size, np.int32)
    (root, born_msg, born_key, merges_k, refusals_k), _ = _parallel([
        (kernels.resolve, seq, key, key_code, starts, skip, blocked_key, limit, unique,
         unique_order, state, owner, attached, merges_k),
        (kernels.attributions, starts, key_code, k0, seq, seq_of, code_of),
    ])  # fmt: skip
    attributions = pa.table(
        [seq_of, _dict(code_of, ns_names), _dict(k0, key_value)], schema=_ATTRIBUTIONS
    )
    del seq_of, code_of
    arena.top = state_at  # the state is dead
    del state, skip
    lap("resolve")

    message_id = _as_array(rows["message_id"]) if "message_id" in rows.column_names else None
    source_id = _as_array(rows["source_id"]) if "source_id" in rows.column_names else None
    del rows

    def per_message(column: pa.Array | None, messages: np.ndarray) -> pa.DictionaryArray:
        """A column's value for each of ``messages`` (from the message's first kept row)."""
        return _per_row(column, starts[messages])

    # -- the components with "never link" overrides: the resolver ----------------------------
    message_ids = per_message(message_id, python_msgs).cast(pa.string()).to_pylist()
    source_ids = per_message(source_id, python_msgs).cast(pa.string()).to_pylist()
    resolver = _replay(
        rules, never_link, names, seq, key, key_code, key_value, starts, blocked_key,
        python_msgs, message_ids, source_ids,
    )  # fmt: skip
    dirty = _changes_tables(resolver, resolver.changes, attributions=False)
    del resolver, message_ids, source_ids
    lap("replay")

    # -- the tables: profile ids hashed while the identifiers and profiles are gathered ----
    def gather(owner: np.ndarray, attached: np.ndarray) -> tuple[list, np.ndarray, list]:
        key_of, code_of, owner_of, row_of = arena.take((4, n_keys), np.int32)
        seq_of = arena.take(n_keys, np.int64)
        count = kernels.identifiers(
            owner, attached, starts, seq, key_code, key_of, code_of, owner_of, seq_of, row_of
        )
        identifiers = [
            _dict(code_of[:count], ns_names),
            _dict(key_of[:count], key_value),
            pa.array(seq_of[:count]),
            _per_row(source_id, row_of[:count]),
        ]
        profiles = [
            _dict(key_code[born_key], ns_names),
            _dict(born_key, key_value),
            pa.array(seq[starts[born_msg]]),
        ]
        return identifiers, owner_of[:count], profiles

    lap("tables")
    born_ids, (key_columns, owner, profile_columns) = _profile_ids(
        born_key, key_code, key_value, ns_names, (gather, owner, attached)
    )
    del attached
    lap("profile_ids")

    identifiers = pa.table(
        [*key_columns[:2], _dict(owner, born_ids), *key_columns[2:]], schema=_IDENTIFIERS
    )
    del key_columns, owner
    n_born = root.size
    alive = root == np.arange(n_born)
    profiles = pa.table(
        [
            _dict(np.arange(n_born), born_ids),
            *profile_columns,
            _dict(root, born_ids, null=alive),
        ],
        schema=_PROFILES,
    )
    del alive, profile_columns
    merge_msg, merge_key = merges_k[:, 0], merges_k[:, 1]
    merges = pa.table(
        [
            pa.array(seq[starts[merge_msg]]),
            per_message(message_id, merge_msg).cast(pa.string()),
            born_ids.take(pa.array(merges_k[:, 2])),
            born_ids.take(pa.array(merges_k[:, 3])),
            ns_names.take(pa.array(key_code[merge_key])),
            key_value.take(pa.array(merge_key)),
        ],
        schema=_MERGES,
    )
    refusals = _refusals_table(
        refusals_k, names, seq, starts, key_code, key_value, born_ids,
        per_message(message_id, refusals_k[:, 0]).cast(pa.string()),
    )  # fmt: skip
    lap("more_tables")

    result = Stitched(
        identifiers=pa.concat_tables([identifiers, dirty.identifiers]),
        profiles=pa.concat_tables([profiles, dirty.profiles]),
        merges=_in_seq_order(merges, dirty.merges),
        refusals=_in_seq_order(refusals, dirty.refusals),
        attributions=attributions,
        blocked=blocked,
    )
    lap("concat")
    # "dirty": replayed by the Resolver (never-link components); "clean": the kernel's
    stats.update(
        rows=seq.size, messages=starts.size, identifiers=n_keys - int(blocked_key.sum()),
        dirty_messages=python_msgs.size, clean_merges=merges.num_rows,
        profiles=result.profiles.num_rows, merges=result.merges.num_rows,
        refusals=result.refusals.num_rows, total_s=clock() - started,
        total_cpu_s=cpu() - cpu_started,
    )  # fmt: skip
    result.stats = stats
    return result


def _refusals_table(
    refusals: np.ndarray,
    names: list[str],
    seq: np.ndarray,
    starts: np.ndarray,
    key_code: np.ndarray,
    key_value: pa.Array,
    born_ids: pa.Array,
    message_ids: pa.Array,
) -> pa.Table:
    """The kernel's refusals (message, identifier, profile, other, rule, namespace, number)
    as the resolver records them."""
    m, k, profile, other, rule, ns, number = (refusals[:, i] for i in range(7))
    texts = [
        (_REFUSALS_TEXT[r][0], _REFUSALS_TEXT[r][1].format(ns=names[c], n=x))
        for r, c, x in zip(rule.tolist(), ns.tolist(), number.tolist(), strict=True)
    ]
    return pa.table(
        [
            pa.array(seq[starts[m]]),
            message_ids,
            pa.array([names[c] for c in key_code[k].tolist()], pa.string()),
            key_value.take(pa.array(k)),
            born_ids.take(pa.array(profile)),
            born_ids.take(pa.array(other, mask=other < 0)),
            pa.array([t[0] for t in texts], pa.string()),
            pa.array([t[1] for t in texts], pa.string()),
        ],
        schema=_REFUSALS,
    )


def _in_seq_order(table: pa.Table, other: pa.Table) -> pa.Table:
    """Both tables' rows (each in seq order) sorted by seq, stably (a message's merges keep
    the resolver's order)."""
    if other.num_rows == 0:
        return table
    table = pa.concat_tables([table, other])
    return table.take(np.argsort(_numpy(table["seq"]), kind="stable"))


def _sort(seq: np.ndarray, code: np.ndarray, value: pa.Array) -> np.ndarray:
    table = pa.table({"seq": seq, "code": code, "value": value})
    keys = [("seq", "ascending"), ("code", "ascending"), ("value", "ascending")]
    return _numpy(pc.sort_indices(table, sort_keys=keys))


def _blocked(
    rules: IdentityRules,
    names: list[str],
    key_code: np.ndarray,
    key_value: pa.Array,
    blocked_keys: set[Key],
) -> np.ndarray:
    """Which identifiers never link: blocked values (in any case) and block overrides."""
    blocked = np.zeros(len(key_value), bool)
    lists = {"": {v.lower() for v in rules.blocked}}
    lists |= {n: {v.lower() for v in r.blocked} for n, r in rules.namespaces.items()}
    listed = set().union(*lists.values())
    if listed:
        encoded = [(v.encode(), c) for c, name in enumerate(["", *names]) for v in lists[name]]
        lengths = np.zeros(max(len(v) for v, _ in encoded) + 1, bool)
        lengths[[len(v) for v, _ in encoded]] = True
        listed_offsets = np.cumsum([0] + [len(v) for v, _ in encoded], dtype=np.int64)
        listed_data = np.frombuffer(b"".join(v for v, _ in encoded) or b"\0", np.uint8)
        listed_code = np.array([c - 1 for _, c in encoded], np.int64)
        other = np.zeros(len(key_value), bool)
        kernels.blocked_values(
            *_buffers(key_value), key_code, lengths, listed_offsets, listed_data, listed_code,
            blocked, other,
        )  # fmt: skip
        candidates = np.flatnonzero(other)
        if candidates.size:  # not ASCII: lower-cased as Python does (str.lower), not per char
            values = key_value.take(pa.array(candidates)).to_pylist()
            codes = key_code[candidates].tolist()
            hit = [v.lower() in lists[""] or v.lower() in lists[names[c]]
                   for v, c in zip(values, codes, strict=True)]  # fmt: skip
            blocked[candidates[np.array(hit, bool)]] = True
    for found in _find_keys(sorted(blocked_keys), names, key_code, key_value):
        if found is not None:
            blocked[found] = True
    return blocked


def _find_keys(
    wanted: list[Key], names: list[str], key_code: np.ndarray, key_value: pa.Array
) -> list[int | None]:
    """The number of each wanted identifier (None where no message carries it), in one
    pass over the identifiers."""
    if not wanted:
        return []
    values = pa.array(sorted({value for _, value in wanted}), pa.string())
    rows = np.flatnonzero(_numpy(pc.is_in(key_value, value_set=values)))
    pairs = zip(key_code[rows].tolist(), key_value.take(pa.array(rows)).to_pylist(), strict=True)
    found = dict(zip(pairs, rows.tolist(), strict=True))
    return [
        found.get((names.index(namespace), value)) if namespace in names else None
        for namespace, value in wanted
    ]


def _blocked_table(
    ns_names: pa.Array,
    key: np.ndarray,
    key_code: np.ndarray,
    key_value: pa.Array,
    seq: np.ndarray,
    blocked_key: np.ndarray,
) -> pa.Table:
    rows = np.flatnonzero(blocked_key[key])
    keys, inverse, counts = np.unique(key[rows], return_inverse=True, return_counts=True)
    last = np.zeros(keys.size, np.int64)
    np.maximum.at(last, inverse, seq[rows])
    return pa.table(
        [ns_names.take(pa.array(key_code[keys])), key_value.take(pa.array(keys)),
         pa.array(counts.astype(np.int64)), pa.array(last)],
        schema=_BLOCKED,
    )  # fmt: skip


def _replay(
    rules: IdentityRules,
    never_link: list[tuple[Key, Key]],
    names: list[str],
    seq: np.ndarray,
    key: np.ndarray,
    key_code: np.ndarray,
    key_value: pa.Array,
    starts: np.ndarray,
    blocked_key: np.ndarray,
    messages: np.ndarray,
    message_ids: list[str | None],
    source_ids: list[str | None],
) -> Resolver:
    """Resolve ``messages`` (numbers, in seq order) with the resolver."""
    resolver = Resolver(rules, never_link)
    if messages.size == 0:
        return resolver
    first = starts[messages]
    ends = np.searchsorted(seq, seq[first], side="right")
    per_message: list[list[int]] = []
    for lo, hi in zip(first.tolist(), ends.tolist(), strict=True):
        keys: list[int] = []
        for k in key[lo:hi].tolist():
            if not blocked_key[k] and (not keys or keys[-1] != k):
                keys.append(k)
        per_message.append(keys)
    used = np.unique(np.fromiter((k for keys in per_message for k in keys), np.int64))
    values = key_value.take(pa.array(used)).to_pylist()
    identifier = {
        k: (names[c], v)
        for k, c, v in zip(used.tolist(), key_code[used].tolist(), values, strict=True)
    }
    seqs = seq[first].tolist()
    resolver.resolve(
        Message(seqs[i], message_ids[i], source_ids[i], tuple(identifier[k] for k in keys))
        for i, keys in enumerate(per_message)
    )
    return resolver


@dataclass
class _Tables:
    identifiers: pa.Table
    profiles: pa.Table
    merges: pa.Table
    refusals: pa.Table
    attributions: pa.Table


def _columns(rows: list[tuple], width: int) -> list[list]:
    return [[row[i] for row in rows] for i in range(width)]


def _changes_tables(resolver: Resolver, changes: Changes, attributions: bool = True) -> _Tables:
    """What ``graph.write_changes`` would write, as tables."""
    born = list(changes.born.values())
    final = {p.id: resolver.surviving(p.id) for p in born}
    final_of = final.get
    namespace, value, profile, first_seq, source = _columns(changes.new_identifiers, 5)
    seq, attributed_namespace, attributed_value = _columns(
        changes.attributions if attributions else [], 3
    )
    merges, refusals = changes.merges, changes.refusals
    return _Tables(
        identifiers=pa.table([
            _strings(namespace), _strings(value),
            _strings([final_of(p, p) for p in profile]),
            pa.array(first_seq, pa.int64()), _strings(source),
        ], schema=_IDENTIFIERS),
        profiles=pa.table([
            _strings([p.id for p in born]), _strings([p.anchor[0] for p in born]),
            _strings([p.anchor[1] for p in born]),
            pa.array([p.anchor_seq for p in born], pa.int64()),
            _strings([final[p.id] if final[p.id] != p.id else None for p in born]),
        ], schema=_PROFILES),
        merges=pa.table([
            [m.seq for m in merges], [m.message_id for m in merges],
            [m.surviving_id for m in merges], [m.absorbed_id for m in merges],
            [m.namespace for m in merges], [m.value for m in merges],
        ], schema=_MERGES),
        refusals=pa.table([
            [r.seq for r in refusals], [r.message_id for r in refusals],
            [r.namespace for r in refusals], [r.value for r in refusals],
            [r.profile_id for r in refusals], [r.other_profile_id for r in refusals],
            [r.rule for r in refusals], [r.detail for r in refusals],
        ], schema=_REFUSALS),
        attributions=pa.table([
            pa.array(seq, pa.int64()), _strings(attributed_namespace), _strings(attributed_value),
        ], schema=_ATTRIBUTIONS),
    )  # fmt: skip


# ------------------------------------------------------------------ the warehouse


def stitch_all(
    con: duckdb.DuckDBPyConnection,
    rules: IdentityRules,
    never_link: Iterable[tuple[Key, Key]] = (),
    blocked: Iterable[Key] = (),
) -> Stitched:
    """The identity graph of every stored event (what a full rebuild derives), not written."""
    started = time.perf_counter()
    rows = extract_all(con, rules)
    extracted = time.perf_counter() - started
    result = stitch(rows, rules, never_link, blocked)
    result.stats["extract_s"] = extracted
    return result


def write(con: duckdb.DuckDBPyConnection, stitched: Stitched, now: datetime | None = None) -> None:
    """Write a stitched graph into the (cleared) identity tables."""
    stamp = (now or datetime.now(UTC).replace(tzinfo=None)).isoformat(sep=" ")
    created = {"created_at": f"TIMESTAMP '{stamp}'"}
    hashed = {"profile_hash": membership.PROFILE_HASH}
    insert_arrow(con, "identifiers", stitched.identifiers, hashed)
    profile_rows.insert(con, stitched.profiles, created)
    insert_arrow(con, "identity_merges", stitched.merges, {"method": "'deterministic'", **created})
    insert_arrow(con, "identity_refusals", stitched.refusals, created)
    membership.insert_attributions(con, stitched.attributions)
    insert_arrow(con, "identity_blocked", stitched.blocked)


def rebuild(
    con: duckdb.DuckDBPyConnection,
    rules: IdentityRules,
    trait_rules: traits.TraitRules,
    computed_traits: list[computed.ComputedTrait],
    as_of: datetime,
) -> int:
    """Forget the derived graph and derive it again from every stored event, inside the
    caller's transaction; the same tables as ``IdentityGraph.rebuild``. Returns the number
    of events read. Moves the ``identity`` cursor to the last event."""
    from onefold.unify import overrides

    overrides.clear_graph(con)
    count, upto = con.execute("SELECT count(*), max(seq) FROM events").fetchall()[0]
    if not count:
        return 0
    blocked, never = overrides.active(con)
    write(con, stitch_all(con, rules, never, blocked))
    traits.observe(con, -1, upto)
    accounts.observe(con, -1, upto)
    traits.refresh(con, trait_rules, None)
    computed.refresh(con, computed_traits, as_of, None)
    con.execute(
        """
        INSERT INTO consumer_cursors VALUES (?, ?, now()::TIMESTAMP)
        ON CONFLICT (consumer) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at
        """,
        [CONSUMER, upto],
    )
    return count
