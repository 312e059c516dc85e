"""The fast full rebuild of the deterministic identity graph: every stored message at once.

Replaying every event through the resolver (``IdentityGraph.rebuild``) is exact but runs
Python per message. A full rebuild can use what the resolver guarantees to give the same
graph — identifiers, profiles, merges, refusals and event attributions, row for row — with
array operations for almost every message:

1. **Encode.** Each message's identifiers, normalised and ordered as the resolver takes them
   (strongest namespace first, then value), become integers numbered by first appearance:
   a 64-bit hash of (namespace, value) per row (DuckDB, on every core), one sort of
   (hash prefix, row) packed into 64 bits, and an exact check that rows grouped together
   carry the same identifier (hash clashes are split exactly). Messages are numbered in
   ``seq`` order.
2. **Components.** The connected components of the raw message–identifier graph, ignoring
   every rule. Each identifier first hangs under an identifier of the message that first
   carried it (see :func:`trees`; pointer jumping finds the roots), so only the first
   meeting of each pair of trees is an edge left for scipy's ``connected_components``.
   Messages of different components never touch the same identifier, so each component
   resolves on its own.
3. **Clean components.** A component is clean when no rule could fire while resolving it: its
   identifiers respect every namespace limit, hold at most one value of each unique
   (merge-protected) namespace, and contain no never-link pair. Then no link is ever refused,
   so sequentially the component ends as one profile holding all its identifiers, and
   everything the resolver records follows from the order of first appearances:

   - a profile is born by each message whose strongest identifier is new, anchored on it;
     the component's survivor is the one born by its first message (the smallest
     ``anchor_seq``), and each identifier is recorded with the first message carrying it;
   - a profile born by a message that also carries identifiers seen before is absorbed by that
     very message (no merge is recorded, as in the resolver). Every other born profile roots a
     tree of the identifiers that first appeared attached to it, and these trees only ever
     join whole: a message carrying identifiers of two trees that are not yet one profile is a
     merge. Taken in ``seq`` order (within a message, in identifier order) with a union-find
     over the distinct tree pairs — far fewer than the messages — they give the resolver's
     merges exactly: the older anchor survives, and the identifier is the message's first one
     held by the profile it joins.
4. **Dirty components** (the rest) are replayed through the :class:`Resolver`, in ``seq``
   order, all together: they are independent of each other and of the clean ones.

``tests/unify/test_stitch.py`` checks the result equals ``IdentityGraph.rebuild()`` and,
on random histories, one resolver run.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from onefold.unify import accounts, computed, traits
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


def _strings(items: list | tuple) -> pa.DictionaryArray:
    return _as_dict(pa.array(items, pa.string()))


def _first_appearances(ids: np.ndarray) -> np.ndarray:
    """For ids numbered in order of first appearance: True where each appears first."""
    first = np.empty(ids.size, bool)
    if ids.size:
        first[0] = True
        np.greater(ids[1:], np.maximum.accumulate(ids)[:-1], out=first[1:])
    return first


def _flatten(parent: np.ndarray) -> np.ndarray:
    """Pointer jumping until every node points at its root (``parent`` is a forest), on the
    nodes still moving only."""
    moving = np.flatnonzero(parent != np.arange(parent.size, dtype=parent.dtype))
    while moving.size:
        up = parent[moving]
        upper = parent[up]
        parent[moving] = upper
        moving = moving[upper != up]
    return parent


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


class _Background:
    """A call run in a thread; for work that lets go of the GIL (DuckDB, Arrow, numpy)."""

    def __init__(self, call, *args) -> None:
        self._result = self._error = None
        self._thread = threading.Thread(target=self._run, args=(call, *args), daemon=True)
        self._thread.start()

    def _run(self, call, *args) -> None:
        try:
            self._result = call(*args)
        except BaseException as error:  # re-raised in the caller's thread
            self._error = error

    def result(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result


def _hashes(code: np.ndarray, value: pa.Array) -> np.ndarray:
    """A 64-bit hash of each (namespace code, value), in row order."""
    rows = pa.table({"c": code, "v": value})
    with _duckdb() as db:
        db.register("hashed", rows)
        result = db.sql("SELECT hash(c, v) FROM hashed").to_arrow_table()
    return _numpy(result.column(0))


def encode(code: np.ndarray, value: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Number each row's (namespace, value) by first appearance: the key of every row and
    the first row of every key (int32).

    Rows are grouped by a 64-bit hash with one sort of (hash prefix, row) packed in 64 bits,
    and keys numbered by their groups' first rows. Exact: neighbours within each group are
    compared, and a group where different identifiers share the hash prefix is split by
    value."""
    n = code.size
    if n == 0:
        return np.zeros(0, np.int32), np.zeros(0, np.int32)
    if n >= 2**31:
        raise ValueError("stitch takes fewer than 2**31 identifier rows at once")
    bits = max(1, n.bit_length())
    packed = _hashes(code, value) >> np.uint64(bits)  # a writable copy
    packed <<= np.uint64(bits)
    packed |= np.arange(n, dtype=np.uint64)
    packed.sort()  # by hash prefix, then row
    rows = (packed & np.uint64((1 << bits) - 1)).astype(np.int32)
    packed >>= np.uint64(bits)
    start = np.empty(n + 1, bool)  # group starts, and a sentinel
    start[0] = start[n] = True
    np.not_equal(packed[1:], packed[:-1], out=start[1:n])
    del packed
    # exact: in groups of two or more rows, each row carries its neighbour's identifier
    shared = np.flatnonzero(~(start[:n] & start[1:]))
    if shared.size:
        shared_rows = rows[shared]
        ordered = value.take(pa.array(shared_rows))
        same = _numpy(pc.equal(ordered.slice(1), ordered.slice(0, shared.size - 1)))
        del ordered
        shared_code = code[shared_rows]
        same &= shared_code[1:] == shared_code[:-1]
        clashes = shared[1:][~start[shared[1:]] & ~same]
        del shared_rows, shared_code, same
        if clashes.size:
            _split(rows, code, value, start, clashes)
    del shared
    bounds = np.flatnonzero(start)
    group_first = rows[bounds[:-1]]  # rows ascend within a group
    key_rows = np.sort(group_first)
    position = np.empty(n, np.int32)
    position[key_rows] = np.arange(key_rows.size, dtype=np.int32)
    key = np.empty(n, np.int32)
    key[rows] = np.repeat(position[group_first], np.diff(bounds))
    return key, key_rows


def _split(
    rows: np.ndarray, code: np.ndarray, value: pa.Array, start: np.ndarray, clashes: np.ndarray
) -> None:
    """Reorder each group where different identifiers share a hash prefix by (namespace,
    value, row), and start a group at each identifier (in ``rows`` and ``start``)."""
    bounds = np.flatnonzero(start)
    for group in np.unique(np.searchsorted(bounds, clashes, side="right") - 1).tolist():
        lo, hi = int(bounds[group]), int(bounds[group + 1])
        span = rows[lo:hi]
        values = value.take(pa.array(span)).to_pylist()
        codes = code[span].tolist()
        order = sorted(range(hi - lo), key=lambda i: (codes[i], values[i], span[i]))
        rows[lo:hi] = span[order]
        for i in range(1, hi - lo):
            a, b = order[i - 1], order[i]
            start[lo + i] = (codes[a], values[a]) != (codes[b], values[b])


def trees(
    key: np.ndarray, msg: np.ndarray, mstart: np.ndarray, new: np.ndarray, n_keys: int
) -> np.ndarray:
    """Each identifier's tree: it hangs under the first identifier seen before in the
    message that first carried it or, when everything in that message was new, under the
    message's strongest identifier. A tree's root is that identifier: the anchor of the
    profile the message created, which then keeps every identifier of the tree."""
    first_old = np.full(mstart.size, -1, np.int32)
    old = np.flatnonzero(~new)
    if old.size:
        leading = np.ones(old.size, bool)
        leading[1:] = msg[old[1:]] != msg[old[:-1]]
        first_old[msg[old[leading]]] = old[leading]
    del old
    born = np.flatnonzero(new)
    owner = msg[born]
    above = first_old[owner]
    above = np.where(above >= 0, above, mstart[owner])
    parent = np.arange(n_keys, dtype=np.int32)
    parent[key[born]] = key[above]
    return _flatten(parent)


def components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The root (smallest member) of each of ``n`` nodes' components, given edges a–b
    (scipy's connected components on the nodes the edges touch)."""
    root = np.arange(n, dtype=np.int32)
    if a.size == 0:
        return root
    nodes = np.unique(np.concatenate([a, b]))
    graph = csr_matrix(
        (np.ones(a.size, np.int8), (np.searchsorted(nodes, a), np.searchsorted(nodes, b))),
        shape=(nodes.size, nodes.size),
    )
    count, label = connected_components(graph, directed=False)
    # scipy numbers components in order of their smallest node; check, don't assume
    smallest = np.flatnonzero(_first_appearances(label))
    if smallest.size != count or not np.array_equal(label[smallest], np.arange(count)):
        smallest = np.full(count, nodes.size, np.int64)
        np.minimum.at(smallest, label, np.arange(nodes.size))
    root[nodes] = nodes[smallest[label]]
    return root


# ------------------------------------------------------------------ stitching


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
    if (code < 0).any():  # a namespace the rules do not know carries no identifier
        keep = np.flatnonzero(code >= 0)
        rows, seq, code = rows.take(keep), seq[keep], code[keep]
        value = _as_array(rows["value"])
    order = _order(seq, code, value)
    if order is not None:
        rows, seq, code = rows.take(order), seq[order], code[order]
        value = _as_array(rows["value"])
    if not pa.types.is_string(value.type):
        value = value.cast(pa.string())
    lap("order")

    # -- identifiers as integers, by first appearance -----------------------------------------
    key, key_rows = encode(code, value)
    n_keys = key_rows.size
    key_code = code[key_rows]
    key_value = value.take(pa.array(key_rows))
    del value
    lap("encode")

    # -- blocked values and overrides; duplicates (two raw phones, one number) ---------------
    blocked_key = _blocked(rules, names, key_code, key_value, set(blocked_keys))
    row_blocked = blocked_key[key]
    dropped = row_blocked.copy()
    if seq.size > 1:
        dropped[1:] |= (seq[1:] == seq[:-1]) & (key[1:] == key[:-1])
    blocked = _blocked_table(ns_names, key, key_code, key_value, seq, row_blocked)
    del row_blocked
    lap("blocked")
    kept = None
    if dropped.any():
        kept = np.flatnonzero(~dropped)
        seq, key = seq[kept], key[kept]
    del dropped, code

    # messages: number, first row, strongest identifier
    starts = np.empty(seq.size, bool)
    if seq.size:
        starts[0] = True
        np.not_equal(seq[1:], seq[:-1], out=starts[1:])
    msg = np.cumsum(starts, dtype=np.int32)
    msg -= 1
    mstart = np.flatnonzero(starts).astype(np.int32)
    k0 = key[mstart]
    new = _first_appearances(key)  # the row that carries each identifier first
    first_msg = np.full(n_keys, -1, msg.dtype)
    first_msg[key[new]] = msg[new]
    lap("prepare")

    # -- components of the raw graph: trees, joined where a message meets two -------------
    tree = trees(key, msg, mstart, new, n_keys)
    row_tree = tree[key]
    head = row_tree[mstart][msg]  # the tree of each row's message's strongest identifier
    joins = np.flatnonzero(row_tree != head)
    # the first meeting of two trees is all that can join them: later ones find them joined
    pairs = pa.array(head[joins].astype(np.int64) * n_keys + row_tree[joins])
    joins = joins[_first_appearances(_numpy(pc.dictionary_encode(pairs).indices))]
    del pairs
    join_head, join_tree = head[joins], row_tree[joins]
    del row_tree, head
    root = components(n_keys, join_head, join_tree)[tree]
    del tree
    lap("components")

    # -- clean or dirty --------------------------------------------------------------------------
    present = first_msg >= 0
    dirty_root = np.zeros(n_keys, bool)
    for c, name in enumerate(names):
        rule = rules.namespaces[name]
        limit = 1 if rule.unique else rule.limit
        if rule.unique and rule.limit is not None:
            limit = min(rule.limit, 1)
        if limit is None:
            continue
        counts = np.bincount(root[present & (key_code == c)], minlength=n_keys)
        dirty_root |= counts > limit
    for a, b in never_link:
        ka = _find_key(a, names, key_code, key_value)
        kb = _find_key(b, names, key_code, key_value)
        linked = ka is not None and kb is not None and present[ka] and present[kb]
        if linked and root[ka] == root[kb]:
            dirty_root[root[ka]] = True
    dirty_msg = dirty_root[root[k0]]
    lap("classify")

    message_id = _as_array(rows["message_id"]) if "message_id" in rows.column_names else None
    source_id = _as_array(rows["source_id"]) if "source_id" in rows.column_names else None
    del rows

    def per_message(column: pa.Array | None, messages: np.ndarray) -> pa.DictionaryArray:
        """A column's value for each of ``messages`` (from the message's first row)."""
        if column is None:
            return _as_dict(pa.nulls(messages.size, pa.string()))
        index = mstart[messages]
        if kept is not None:
            index = kept[index]
        return _as_dict(column.take(pa.array(index)))

    # -- profile ids of the clean components' profiles, hashed by DuckDB in a thread (it
    # lets go of the GIL) while the resolver replays the dirty components here ------------
    clean_msg = ~dirty_msg
    born_msg = np.flatnonzero(clean_msg & new[mstart])
    born_key = k0[born_msg]
    anchors = (_dict(key_code[born_key], ns_names), key_value.take(born_key))
    # one DuckDB thread: the other core is the resolver's
    hashing = _Background(profile_ids, *anchors, max(1, (os.cpu_count() or 2) - 1))
    del anchors

    # -- dirty components: the resolver ------------------------------------------------------
    dirty_msgs = np.flatnonzero(dirty_msg)
    message_ids = per_message(message_id, dirty_msgs).cast(pa.string()).to_pylist()
    source_ids = per_message(source_id, dirty_msgs).cast(pa.string()).to_pylist()
    resolver = _replay(
        rules, never_link, names, seq, key, key_code, key_value, msg, mstart, dirty_msgs,
        message_ids, source_ids,
    )  # fmt: skip
    dirty = _changes_tables(resolver, resolver.changes, attributions=False)
    del resolver, message_ids, source_ids
    lap("dirty")

    # -- clean components --------------------------------------------------------------------
    born_ids = hashing.result()
    id_of_key = np.full(n_keys, -1, np.int32)
    id_of_key[born_key] = np.arange(born_key.size, dtype=np.int32)
    lap("profile_ids")

    clean_key = np.flatnonzero(present & ~dirty_root[root])
    first_of_key = first_msg[clean_key]
    identifiers = pa.table(
        [
            _dict(key_code[clean_key], ns_names),
            _dict(clean_key, key_value),
            _dict(id_of_key[root[clean_key]], born_ids),
            pa.array(seq[mstart[first_of_key]]),
            per_message(source_id, first_of_key),
        ],
        schema=_IDENTIFIERS,
    )
    del clean_key, first_of_key
    survivor = id_of_key[root[born_key]]
    alive = survivor == np.arange(born_key.size)
    profiles = pa.table(
        [
            _dict(np.arange(born_key.size), born_ids),
            _dict(key_code[born_key], ns_names),
            _dict(born_key, key_value),
            pa.array(seq[mstart[born_msg]]),
            _dict(survivor, born_ids, null=alive),
        ],
        schema=_PROFILES,
    )
    del survivor, alive
    # every message is attributed to its strongest identifier, whatever the rules refused
    attributions = pa.table(
        [pa.array(seq[mstart]), _dict(key_code[k0], ns_names), _dict(k0, key_value)],
        schema=_ATTRIBUTIONS,
    )
    lap("clean_tables")

    clean_join = clean_msg[msg[joins]]
    merge_rows, surviving, absorbed = _clean_merges(
        joins[clean_join], join_head[clean_join], join_tree[clean_join]
    )
    merge_keys = key[merge_rows]
    merges = pa.table(
        [
            pa.array(seq[merge_rows]),
            per_message(message_id, msg[merge_rows]).cast(pa.string()),
            born_ids.take(pa.array(id_of_key[surviving])),
            born_ids.take(pa.array(id_of_key[absorbed])),
            ns_names.take(pa.array(key_code[merge_keys])),
            key_value.take(pa.array(merge_keys)),
        ],
        schema=_MERGES,
    )
    lap("clean_merges")

    result = Stitched(
        identifiers=pa.concat_tables([identifiers, dirty.identifiers]),
        profiles=pa.concat_tables([profiles, dirty.profiles]),
        merges=_in_seq_order(pa.concat_tables([merges, dirty.merges])),
        refusals=dirty.refusals,
        attributions=attributions,
        blocked=blocked,
    )
    lap("concat")
    stats.update(
        rows=seq.size, messages=mstart.size, identifiers=int(present.sum()),
        components=int(np.count_nonzero(present & (root == np.arange(n_keys)))),
        dirty_components=int(np.count_nonzero(present & dirty_root & (root == np.arange(n_keys)))),
        dirty_messages=dirty_msgs.size, clean_merges=merge_rows.size,
        profiles=result.profiles.num_rows, merges=result.merges.num_rows,
        refusals=result.refusals.num_rows, total_s=clock() - started,
        total_cpu_s=cpu() - cpu_started,
    )  # fmt: skip
    result.stats = stats
    return result


def _in_seq_order(table: pa.Table) -> pa.Table:
    """Sorted by seq, stably (a message's merges keep the resolver's order)."""
    if table.num_rows == 0:
        return table
    return table.take(np.argsort(_numpy(table["seq"]), kind="stable"))


def _order(seq: np.ndarray, code: np.ndarray, value: pa.Array) -> np.ndarray | None:
    """The permutation putting rows in (seq, priority, value) order, or None if they are."""
    if seq.size < 2:
        return None
    if (seq[1:] < seq[:-1]).any():
        return _sort(seq, code, value)
    same_seq = seq[1:] == seq[:-1]
    if (same_seq & (code[1:] < code[:-1])).any():
        return _sort(seq, code, value)
    ties = np.flatnonzero(same_seq & (code[1:] == code[:-1]))
    if ties.size == 0:
        return None
    before = value.take(pa.array(ties))
    after = value.take(pa.array(ties + 1))
    if pc.all(pc.less_equal(before, after)).as_py():
        return None
    return _sort(seq, code, value)


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
        # only values as long as a listed one (or not ASCII, whose case may change length)
        lengths = pa.array(sorted({len(v.encode()) for v in listed}), pa.int32())
        maybe = pc.or_(
            pc.is_in(pc.binary_length(key_value), value_set=lengths),
            pc.invert(pc.string_is_ascii(key_value)),
        )
        candidates = np.flatnonzero(_numpy(maybe))
        if candidates.size:
            values = key_value.take(pa.array(candidates))
            lowered = pc.ascii_lower(values)
            other = pc.invert(pc.string_is_ascii(values))
            if pc.any(other).as_py():  # lower-cased as Python does (str.lower), not per char
                python = [v.lower() for v in values.filter(other).to_pylist()]
                lowered = pc.replace_with_mask(lowered, other, pa.array(python, pa.string()))
            hit = _numpy(pc.is_in(lowered, value_set=pa.array(sorted(lists[""]), pa.string())))
            for c, name in enumerate(names):
                if lists[name]:
                    values = pa.array(sorted(lists[name]), pa.string())
                    hit |= _numpy(pc.is_in(lowered, value_set=values)) & (key_code[candidates] == c)
            blocked[candidates[hit]] = True
    for override in blocked_keys:
        found = _find_key(override, names, key_code, key_value)
        if found is not None:
            blocked[found] = True
    return blocked


def _find_key(
    wanted: Key, names: list[str], key_code: np.ndarray, key_value: pa.Array
) -> int | None:
    if wanted[0] not in names:
        return None
    matches = np.flatnonzero(_numpy(pc.equal(key_value, wanted[1])))
    matches = matches[key_code[matches] == names.index(wanted[0])]
    return int(matches[0]) if matches.size else None


def _blocked_table(
    ns_names: pa.Array,
    key: np.ndarray,
    key_code: np.ndarray,
    key_value: pa.Array,
    seq: np.ndarray,
    row_blocked: np.ndarray,
) -> pa.Table:
    rows = np.flatnonzero(row_blocked)
    keys, inverse, counts = np.unique(key[rows], return_inverse=True, return_counts=True)
    last = np.zeros(keys.size, np.int64)
    np.maximum.at(last, inverse, seq[rows])
    return pa.table(
        [ns_names.take(pa.array(key_code[keys])), key_value.take(pa.array(keys)),
         pa.array(counts.astype(np.int64)), pa.array(last)],
        schema=_BLOCKED,
    )  # fmt: skip


def _clean_merges(
    joins: np.ndarray, heads: np.ndarray, trees: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The merges the resolver records in clean components: (row, surviving anchor,
    absorbed anchor), in the order it records them.

    ``joins`` are the rows where a message first meets a tree other than its strongest
    identifier's (``heads``; ``trees`` the other), in row order. A meeting of two trees not
    yet in one profile merges them, and the older anchor — the smaller key, keys being
    numbered by first appearance — survives."""
    rows_out, surviving, absorbed = [], [], []
    up: dict[int, int] = {}
    for row, x, y in zip(joins.tolist(), heads.tolist(), trees.tolist(), strict=True):
        while x in up:
            x = up[x]
        while y in up:
            y = up[y]
        if x == y:
            continue
        if y < x:
            x, y = y, x
        up[y] = x
        rows_out.append(row)
        surviving.append(x)
        absorbed.append(y)
    return (np.array(rows_out, np.int64), np.array(surviving, np.int64),
            np.array(absorbed, np.int64))  # fmt: skip


def _replay(
    rules: IdentityRules,
    never_link: list[tuple[Key, Key]],
    names: list[str],
    seq: np.ndarray,
    key: np.ndarray,
    key_code: np.ndarray,
    key_value: pa.Array,
    msg: np.ndarray,
    mstart: np.ndarray,
    messages: np.ndarray,
    message_ids: list[str | None],
    source_ids: list[str | None],
) -> Resolver:
    """Resolve the dirty components' ``messages`` with the resolver, in seq order."""
    resolver = Resolver(rules, never_link)
    if messages.size == 0:
        return resolver
    selected = np.zeros(mstart.size, bool)
    selected[messages] = True
    rows = np.flatnonzero(selected[msg])
    row_keys = key[rows]
    namespaces = [names[c] for c in key_code[row_keys].tolist()]
    values = key_value.take(pa.array(row_keys)).to_pylist()
    identifiers = list(zip(namespaces, values, strict=True))
    bounds = np.searchsorted(rows, mstart[messages]).tolist() + [rows.size]
    seqs = seq[mstart[messages]].tolist()
    resolver.resolve(
        Message(seqs[i], message_ids[i], source_ids[i],
                tuple(identifiers[bounds[i]:bounds[i + 1]]))
        for i in range(messages.size)
    )  # fmt: skip
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


def _insert(
    con: duckdb.DuckDBPyConnection, table: str, data: pa.Table, extra: dict[str, str] | None = None
) -> None:
    if data.num_rows == 0:
        return
    extra = extra or {}
    names = ", ".join([*data.column_names, *extra])
    select = ", ".join([*data.column_names, *extra.values()])
    con.register("stitched_rows", data)
    try:
        con.execute(f"INSERT INTO {table} ({names}) SELECT {select} FROM stitched_rows")
    finally:
        con.unregister("stitched_rows")


def write(con: duckdb.DuckDBPyConnection, stitched: Stitched, now: datetime | None = None) -> None:
    """Write a stitched graph into the (cleared) identity tables."""
    stamp = (now or datetime.now(UTC).replace(tzinfo=None)).isoformat(sep=" ")
    created = {"created_at": f"TIMESTAMP '{stamp}'"}
    _insert(con, "identifiers", stitched.identifiers)
    _insert(con, "identity_profiles", stitched.profiles, created)
    _insert(con, "identity_merges", stitched.merges, {"method": "'deterministic'", **created})
    _insert(con, "identity_refusals", stitched.refusals, created)
    _insert(con, "event_identity", stitched.attributions)
    _insert(con, "identity_blocked", stitched.blocked)


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
    count, upto = con.execute("SELECT count(*), max(seq) FROM events").fetchone()
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
