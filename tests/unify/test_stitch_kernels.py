"""The compiled passes of the fast rebuild (onefold.unify.stitch_kernels), on their own: the
paths the small histories of test_stitch.py do not reach (two threads, many parts, values
that are not ASCII) against plain Python."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest

from onefold.unify import stitch
from onefold.unify.resolver import profile_id_for
from onefold.unify.rules import IdentityRules, NamespaceRule

NAMES = IdentityRules().ordered()


def _rows(count: int, seed: int) -> tuple[np.ndarray, pa.Array]:
    """Identifier rows with many repeats, values of every length up to 40 bytes, some not
    ASCII, and the same value under two namespaces."""
    rnd = random.Random(seed)
    pool = [("x" * rnd.randint(0, 40)) + str(i) for i in range(count // 3)]
    pool += ["ñandú", "Ω", "", "K", "\u212a", "null"]
    values = [rnd.choice(pool) for _ in range(count)]
    codes = np.array([rnd.randint(0, 3) for _ in range(count)], np.int8)
    return codes, pa.array(values, pa.string())


def _expected(codes: np.ndarray, values: pa.Array) -> tuple[list[int], list[int]]:
    numbers: dict[tuple[int, str], int] = {}
    keys, firsts = [], []
    for row, pair in enumerate(zip(codes.tolist(), values.to_pylist(), strict=True)):
        if pair not in numbers:
            numbers[pair] = len(numbers)
            firsts.append(row)
        keys.append(numbers[pair])
    return keys, firsts


def _constant(code: np.ndarray, value: pa.Array) -> np.ndarray:
    return np.full(code.size, 12345, np.uint64)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("hashes", ["default", "constant"])
def test_encode_numbers_identifiers_by_first_appearance(threads, hashes, monkeypatch):
    if hashes == "constant":  # every row in one part and one probe chain
        monkeypatch.setattr(stitch, "_hashes", _constant)
    codes, values = _rows(3_000 if hashes == "constant" else 200_000, seed=threads)
    key, key_rows = stitch.encode(codes, values, threads=threads)
    keys, firsts = _expected(codes, values)
    assert key.tolist() == keys
    assert key_rows.tolist() == firsts


def test_encode_with_a_small_arena_allocates_the_rest():
    codes, values = _rows(5_000, seed=3)
    key, key_rows = stitch.encode(codes, values, arena=stitch._Arena(1_000))
    assert (key.tolist(), key_rows.tolist()) == _expected(codes, values)


def test_profile_ids_are_the_resolvers():
    values = pa.array(["a-1", "", "ñandú@example.com", "x" * 300, "K"], pa.string())
    key_code = np.array([3, 1, 1, 0, 2], np.int8)
    anchors = np.array([4, 0, 2, 3, 1, 2], np.int64)
    ids, _ = stitch._profile_ids(anchors, key_code, values, pa.array(NAMES, pa.string()))
    expected = [profile_id_for((NAMES[key_code[k]], values[k].as_py())) for k in anchors]
    assert ids.to_pylist() == expected
    names = pa.array([NAMES[key_code[k]] for k in anchors], pa.string())
    assert stitch.profile_ids(names, values.take(pa.array(anchors))).to_pylist() == expected


def test_blocked_values_are_the_rules():
    namespaces = dict(IdentityRules().namespaces)
    namespaces["phone"] = NamespaceRule(priority=30, normalise="phone", blocked=["+10000000"])
    rules = IdentityRules(namespaces=namespaces, blocked=[*IdentityRules().blocked, "ÄRGER"])
    values = ["NULL", "null ", "Test@Example.com", "+10000000", "ärger", "ÄRGER", "\u212a",
              "n/a", "N/A", "", "ok", "nañ"]  # fmt: skip
    pairs = [(c, v) for v in values for c in range(len(NAMES))]
    key_code = np.array([c for c, _ in pairs], np.int8)
    key_value = pa.array([v for _, v in pairs], pa.string())
    got = stitch._blocked(rules, NAMES, key_code, key_value, {("email", "ok")})
    expected = [rules.is_blocked(NAMES[c], v) or (NAMES[c], v) == ("email", "ok")
                for c, v in pairs]  # fmt: skip
    assert got.tolist() == expected
