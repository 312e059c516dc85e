"""Compiled passes of the fast full rebuild (:mod:`onefold.unify.stitch`), with numba.

Each kernel is one sequential pass over the (message, identifier) rows, the identifiers or
the profiles, where array operations would need many passes and random gathers. They take
plain numpy arrays (strings as Arrow's offsets and data buffers), allocated by the caller
where large, hold no Python objects and let go of the GIL, so that two can run at once on
two threads. ``cache=True`` keeps the machine code in ``__pycache__``: the first call on a
machine compiles them all (about 12 s here), later processes load them (about 0.7 s).
"""

from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np
from numba import njit

_U = np.uint64
_MIX1 = _U(0x9E3779B97F4A7C15)
_MIX2 = _U(0xC2B2AE3D27D4EB4F)
_MIX3 = _U(0x165667B19E3779F9)

# the refusals :func:`resolve` records (``stitch._REFUSALS_TEXT`` names them as the resolver)
ATTACH_UNIQUE, ATTACH_LIMIT, MERGE_UNIQUE, MERGE_LIMIT = 1, 2, 3, 4
# columns of the per-profile state in :func:`resolve`
_PARENT, _MSG, _KEY, _HELD, _COUNT = 0, 1, 2, 3, 4


@njit(inline="always")
def _word(data, p):
    """Eight bytes at ``p``, little-endian."""
    return (
        _U(data[p])
        | (_U(data[p + 1]) << _U(8))
        | (_U(data[p + 2]) << _U(16))
        | (_U(data[p + 3]) << _U(24))
        | (_U(data[p + 4]) << _U(32))
        | (_U(data[p + 5]) << _U(40))
        | (_U(data[p + 6]) << _U(48))
        | (_U(data[p + 7]) << _U(56))
    )


@njit(nogil=True, cache=True)
def hash_rows(code, offsets, data, out):
    """A 64-bit hash of each row's (namespace code, value bytes), into ``out``."""
    n = code.size
    for r in range(n):
        start, end = offsets[r], offsets[r + 1]
        h = (_U(code[r] + 1) * _MIX1) ^ _U(end - start)
        p = start
        while p + 8 <= end:
            h = (h ^ _word(data, p)) * _MIX2
            h ^= h >> _U(29)
            p += 8
        if p < end:
            w = _U(0)
            shift = _U(0)
            while p < end:
                w |= _U(data[p]) << shift
                shift += _U(8)
                p += 1
            h = (h ^ w) * _MIX2
            h ^= h >> _U(29)
        h *= _MIX3
        h ^= h >> _U(32)
        out[r] = h


@njit(inline="always")
def _same(data, a, b, length):
    j = 0
    while j < length and data[a + j] == data[b + j]:
        j += 1
    return j == length


@njit(nogil=True, cache=True)
def histogram(hashes, offsets, part_bits, rows_in, bytes_in):
    """Add each row's count and bytes to its part (the top ``part_bits`` of its hash)."""
    shift = _U(64 - part_bits)
    for r in range(hashes.size):
        p = 0 if part_bits == 0 else np.int64(hashes[r] >> shift)
        rows_in[p] += 1
        bytes_in[p] += offsets[r + 1] - offsets[r]


@njit(nogil=True, cache=True)
def scatter(code, offsets, data, hashes, part_bits, first, row_at, byte_at,
            prow, phash, pcode, pstart, pdata):  # fmt: skip
    """Copy rows ``first``, ``first + 1``… to their parts, from each part's ``row_at`` and
    ``byte_at`` on: the row's number, the low 32 bits of its hash, its namespace code, and
    its bytes (where they start in ``pdata``)."""
    shift = _U(64 - part_bits)
    for r in range(hashes.size):
        h = hashes[r]
        p = 0 if part_bits == 0 else np.int64(h >> shift)
        i = row_at[p]
        row_at[p] = i + 1
        at = byte_at[p]
        prow[i] = first + r
        phash[i] = np.uint32(h & _U(0xFFFFFFFF))
        pcode[i] = code[r]
        pstart[i] = at
        for q in range(offsets[r], offsets[r + 1]):
            pdata[at] = data[q]
            at += 1
        byte_at[p] = at


@njit(nogil=True, cache=True)
def first_rows(rows_in, prow, phash, pcode, pstart, pdata, first_row):
    """The first row carrying each row's identifier, for the parts starting at
    ``rows_in[:-1]`` (each ending where the next starts), one part at a time with a table
    that stays in cache; a hit is checked byte for byte, so any hash gives the exact
    answer."""
    parts = rows_in.size - 1
    biggest = 16
    for p in range(parts):
        biggest = max(biggest, rows_in[p + 1] - rows_in[p])
    size = 16
    while size < 2 * biggest:
        size *= 2
    table = np.zeros(size, np.int32)
    first_at = np.empty(biggest, np.int64)  # each identifier's first position in the part
    for p in range(parts):
        lo, hi = rows_in[p], rows_in[p + 1]
        size = 16
        while size < 2 * (hi - lo):
            size *= 2
        mask = _U(size - 1)
        table[:size] = 0
        n_local = 0
        for i in range(lo, hi):
            h = phash[i]
            start = pstart[i]
            length = pstart[i + 1] - start
            slot = _U(h) & mask
            while True:
                local = table[slot]
                if local == 0:
                    table[slot] = n_local + 1
                    first_at[n_local] = i
                    n_local += 1
                    first_row[prow[i]] = prow[i]
                    break
                j = first_at[local - 1]
                other = pstart[j]
                if (
                    phash[j] == h
                    and pcode[j] == pcode[i]
                    and pstart[j + 1] - other == length
                    and _same(pdata, other, start, length)
                ):
                    first_row[prow[i]] = prow[j]
                    break
                slot = (slot + _U(1)) & mask


@njit(nogil=True, cache=True)
def number(first_row, key_rows):
    """Identifiers numbered by first appearance, in place: ``first_row`` becomes each row's
    key, ``key_rows`` gets each key's first row. Returns the number of keys."""
    n_keys = 0
    for r in range(first_row.size):
        f = first_row[r]
        if f == r:
            first_row[r] = n_keys
            key_rows[n_keys] = r
            n_keys += 1
        else:
            first_row[r] = first_row[f]
    return n_keys


@njit(nogil=True, cache=True)
def ordered(seq, code, offsets, data):
    """Whether the rows are in (seq, namespace code, value bytes) order."""
    for r in range(1, seq.size):
        if seq[r] != seq[r - 1]:
            if seq[r] < seq[r - 1]:
                return False
            continue
        if code[r] != code[r - 1]:
            if code[r] < code[r - 1]:
                return False
            continue
        a, b = offsets[r - 1], offsets[r]
        la, lb = b - a, offsets[r + 1] - b
        j = 0
        while j < la and j < lb and data[a + j] == data[b + j]:
            j += 1
        if j < la and (j == lb or data[a + j] > data[b + j]):
            return False
    return True


@njit(nogil=True, cache=True)
def blocked_values(offsets, data, key_code, lengths, listed_offsets, listed_data, listed_code,
                   blocked, other):  # fmt: skip
    """Mark the identifiers whose value, lower-cased, is a listed one (``listed_code``: the
    namespace the value is listed for, -1 for all), in ``blocked``. Values that are not
    ASCII are marked in ``other`` instead: Python lower-cases them (which may change their
    length). ``lengths[length]``: whether a listed value has that many bytes."""
    top = lengths.size
    for k in range(offsets.size - 1):
        start, end = offsets[k], offsets[k + 1]
        length = end - start
        ascii = True
        for p in range(start, end):
            if data[p] >= 128:
                ascii = False
                break
        if not ascii:
            other[k] = True
            continue
        if length >= top or not lengths[length]:
            continue
        for j in range(listed_code.size):
            if listed_code[j] >= 0 and listed_code[j] != key_code[k]:
                continue
            at = listed_offsets[j]
            if listed_offsets[j + 1] - at != length:
                continue
            q = 0
            while q < length:
                byte = data[start + q]
                if 65 <= byte <= 90:
                    byte += 32
                if byte != listed_data[at + q]:
                    break
                q += 1
            if q == length:
                blocked[k] = True
                break


@njit(nogil=True, cache=True)
def attributions(starts, key_code, k0, seq, seq_out, code_out):
    """Each message's seq and the namespace of its strongest identifier (``k0``)."""
    for m in range(starts.size):
        seq_out[m] = seq[starts[m]]
        code_out[m] = key_code[k0[m]]


@njit(nogil=True, cache=True)
def identifiers(owner, attached, starts, seq, key_code, key_out, code_out, owner_out, seq_out,
                row_out):  # fmt: skip
    """The identifiers some profile holds: number, namespace, profile, and the seq and first
    row of the message that attached it. Returns how many."""
    i = 0
    for k in range(owner.size):
        if owner[k] >= 0:
            r = starts[attached[k]]
            key_out[i] = k
            code_out[i] = key_code[k]
            owner_out[i] = owner[k]
            seq_out[i] = seq[r]
            row_out[i] = r
            i += 1
    return i


def width(n_namespaces: int) -> int:
    """Columns of :func:`resolve`'s state: parent, birth message, anchor, namespaces held,
    then a count and an insertion rank per namespace."""
    return _COUNT + 2 * n_namespaces


@njit(inline="always")
def _find(state, p):
    while state[p, _PARENT] != p:
        up = state[state[p, _PARENT], _PARENT]
        state[p, _PARENT] = up
        p = up
    return p


@njit(nogil=True, cache=True)
def messages(seq, key, blocked_key, first):
    """The first kept row of each message, into ``first`` (rows in seq order; blocked
    identifiers and a message's repeats of an identifier are dropped; messages left with
    none are no messages). Returns the number of messages."""
    n = seq.size
    m = 0
    r = 0
    while r < n:
        s = seq[r]
        found = False
        i = r
        while i < n and seq[i] == s:
            if not found and not blocked_key[key[i]]:
                first[m] = i
                m += 1
                found = True
            i += 1
        r = i
    return m


@njit(nogil=True, cache=True)
def components(seq, key, blocked_key, n_keys):
    """The raw components of the message–identifier graph, ignoring every rule: the root
    of each identifier (union-find with path halving)."""
    parent = np.arange(n_keys, dtype=np.int32)
    n = seq.size
    r = 0
    while r < n:
        s = seq[r]
        head = -1
        while r < n and seq[r] == s:
            k = key[r]
            r += 1
            if blocked_key[k]:
                continue
            while parent[k] != k:
                parent[k] = parent[parent[k]]
                k = parent[k]
            if head < 0:
                head = k
            elif k != head:
                if k < head:
                    parent[head] = k
                    head = k
                else:
                    parent[k] = head
    for k in range(n_keys):
        parent[k] = parent[parent[k]]
    return parent


@njit(nogil=True, cache=True)
def resolve(seq, key, key_code, starts, skip, blocked_key, limit, unique, unique_order,
            state, owner, attached, merges):  # fmt: skip
    """The resolver (:class:`onefold.unify.resolver.Resolver`) over every message, for a
    graph that starts empty and has no "never link" overrides (the messages of components
    holding one are skipped: they are replayed in Python).

    ``starts``: each message's first kept row (:func:`messages`); ``skip``: the messages
    left out (empty: none). Namespaces are codes in priority order; ``limit`` per code (-1:
    none), ``unique`` (merge protection), and ``unique_order`` the order the resolver checks
    unique namespaces in.

    ``state`` (a row of ``width(n_namespaces)`` per profile that may be created: per
    identifier first in a message), ``owner`` and ``attached`` (one per identifier, -1)
    and ``merges`` (four per row) are the caller's.

    A profile is numbered by birth; identifiers are owned by a profile and profiles joined
    by a union-find whose root is the surviving profile. Identifiers of different profiles
    are disjoint, so a profile's values per namespace are just counts: a unique namespace
    holds at most one value and two profiles both holding one differ. Fills, per
    identifier, its owner (a profile, its root taken at the end) and the message that
    attached it; returns, per profile, its root, birth message and anchor; the merges
    (message, identifier, survivor, absorbed) and refusals (message, identifier, profile,
    other profile or -1, rule, namespace, number) in the resolver's order.
    """
    n_ns = limit.size
    n_msg = starts.size
    width = state.shape[1]
    rank = _COUNT + n_ns
    n_prof = 0
    skipping = skip.size > 0
    refusals = np.empty((16, 7), np.int32)
    n_merge = n_ref = 0
    n = seq.size
    for m in range(n_msg):
        if skipping and skip[m]:
            continue
        r = starts[m]
        first = key[r]
        s = seq[r]
        t = owner[first]  # found lazily: t is the root only once ``found``
        found = False
        born = -1
        if t < 0:
            t = born = n_prof
            n_prof += 1
            state[t, _PARENT] = t
            state[t, _MSG] = m
            state[t, _KEY] = first
            state[t, _HELD] = 1
            for j in range(_COUNT, width):
                state[t, j] = 0
            state[t, _COUNT + key_code[first]] = 1
            state[t, rank + key_code[first]] = 1
            owner[first] = t
            attached[first] = m
            found = True
        previous = first
        r += 1
        while r < n and seq[r] == s:
            k = key[r]
            r += 1
            if k == previous or blocked_key[k]:
                continue
            previous = k
            o = owner[k]
            if o == t:
                continue
            if not found:
                t = _find(state, t)
                found = True
                if o == t:
                    continue
            if o >= 0:
                o = _find(state, o)
                if o == t:
                    continue
            rule = 0
            ns = key_code[k]
            number = 0
            if o < 0:
                held = state[t, _COUNT + ns]
                if held > 0 and unique[ns]:
                    rule = ATTACH_UNIQUE
                elif limit[ns] >= 0 and held >= limit[ns]:
                    rule, number = ATTACH_LIMIT, limit[ns]
                if rule == 0:
                    if held == 0:
                        state[t, _HELD] += 1
                        state[t, rank + ns] = state[t, _HELD]
                    state[t, _COUNT + ns] = held + 1
                    owner[k] = t
                    attached[k] = m
                    continue
            else:
                for u in unique_order:
                    if state[t, _COUNT + u] > 0 and state[o, _COUNT + u] > 0:
                        rule, ns = MERGE_UNIQUE, u
                        break
                if rule == 0:
                    for position in range(1, state[o, _HELD] + 1):
                        for x in range(n_ns):
                            if state[o, rank + x] == position:
                                combined = state[t, _COUNT + x] + state[o, _COUNT + x]
                                if limit[x] >= 0 and combined > limit[x]:
                                    rule, ns, number = MERGE_LIMIT, x, combined
                                break
                        if rule:
                            break
                if rule == 0:
                    if state[t, _MSG] < state[o, _MSG]:
                        survivor, absorbed = t, o
                    else:
                        survivor, absorbed = o, t
                    for position in range(1, state[absorbed, _HELD] + 1):
                        for x in range(n_ns):
                            if state[absorbed, rank + x] == position:
                                if state[survivor, _COUNT + x] == 0:
                                    state[survivor, _HELD] += 1
                                    state[survivor, rank + x] = state[survivor, _HELD]
                                state[survivor, _COUNT + x] += state[absorbed, _COUNT + x]
                                break
                    state[absorbed, _PARENT] = survivor
                    if absorbed != born:
                        merges[n_merge, 0] = m
                        merges[n_merge, 1] = k
                        merges[n_merge, 2] = survivor
                        merges[n_merge, 3] = absorbed
                        n_merge += 1
                    t = survivor
                    continue
            if n_ref == refusals.shape[0]:
                grown = np.empty((2 * n_ref, 7), np.int32)
                grown[:n_ref] = refusals
                refusals = grown
            refusals[n_ref, 0] = m
            refusals[n_ref, 1] = k
            refusals[n_ref, 2] = t
            refusals[n_ref, 3] = o
            refusals[n_ref, 4] = rule
            refusals[n_ref, 5] = ns
            refusals[n_ref, 6] = number
            n_ref += 1
    root = np.empty(n_prof, np.int32)
    for p in range(n_prof):
        root[p] = _find(state, p)
    for k in range(owner.size):
        if owner[k] >= 0:
            owner[k] = root[owner[k]]
    return (
        root,
        state[:n_prof, _MSG].copy(),
        state[:n_prof, _KEY].copy(),
        merges[:n_merge].copy(),
        refusals[:n_ref].copy(),
    )


def _openssl() -> tuple | None:
    """OpenSSL's SHA-256 (which uses the CPU's SHA instructions), as ctypes functions for
    :func:`profile_ids`; None where libcrypto cannot be loaded."""
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("crypto") or "libcrypto.so.3")
        init, update, final = lib.SHA256_Init, lib.SHA256_Update, lib.SHA256_Final
    except (OSError, AttributeError):
        return None
    pointer = ctypes.c_void_p
    for function, arguments in ((init, [pointer]), (update, [pointer, pointer, ctypes.c_size_t]),
                                (final, [pointer, pointer])):  # fmt: skip
        function.restype = ctypes.c_int
        function.argtypes = arguments
    return init, update, final


SHA256 = _openssl()
ID_WIDTH = 27  # "pr_" and 24 hex digits, as ``resolver.profile_id_for``


@njit(nogil=True, cache=True)
def profile_ids(init, update, final, anchors, key_code, offsets, data, ns_offsets, ns_data, out):
    """``resolver.profile_id_for`` of each anchor identifier: "pr_" and the first 24 hex
    digits of SHA-256(namespace, 0x1f, value), written at ``ID_WIDTH`` bytes each."""
    context = np.empty(256, np.uint8)  # SHA256_CTX is 112 bytes
    digest = np.empty(32, np.uint8)
    longest = 0
    for k in range(offsets.size - 1):
        longest = max(longest, offsets[k + 1] - offsets[k])
    for c in range(ns_offsets.size - 1):
        longest += ns_offsets[c + 1] - ns_offsets[c]
    text = np.empty(longest + 1, np.uint8)
    for i in range(anchors.size):
        k = anchors[i]
        c = key_code[k]
        at = 0
        for q in range(ns_offsets[c], ns_offsets[c + 1]):
            text[at] = ns_data[q]
            at += 1
        text[at] = 31
        at += 1
        for q in range(offsets[k], offsets[k + 1]):
            text[at] = data[q]
            at += 1
        init(context.ctypes.data)
        update(context.ctypes.data, text.ctypes.data, at)
        final(digest.ctypes.data, context.ctypes.data)
        base = i * ID_WIDTH
        out[base] = 112  # p
        out[base + 1] = 114  # r
        out[base + 2] = 95  # _
        for j in range(24):
            digit = (digest[j >> 1] >> (4 * (1 - (j & 1)))) & 15
            out[base + 3 + j] = digit + 48 if digit < 10 else digit + 87
