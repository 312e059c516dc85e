"""Strong identifiers veto merges; clustering does not chain weak links."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from onefold.unify.matching import MatchConfig, match_records
from onefold.unify.matching.clustering import ClusterInput, cluster
from tests.unify.matching.conftest import FAST, FEBRL_FIELDS, true_pairs


def _with_user_ids(records: pa.Table) -> tuple[pa.Table, list[tuple[str, str]], tuple]:
    """Give 20 true duplicate pairs two different user_ids, and add a bridge: a copy Z of
    record X (user u-x) with another user (u-z), X's duplicate Y having none."""
    truth = sorted(true_pairs(records))
    user = dict.fromkeys(records["record_id"].to_pylist())
    conflicts = truth[:20]
    for i, (a, b) in enumerate(conflicts):
        user[a], user[b] = f"u-{i}-a", f"u-{i}-b"
    x, y = truth[50]
    user[x] = "u-x"
    row = records.filter(pc.equal(records["record_id"], x)).to_pylist()[0]
    z = dict(row, record_id="zz-copy-of-" + x)
    table = pa.concat_tables([records, pa.Table.from_pylist([z], schema=records.schema)])
    ids = table["record_id"].to_pylist()
    user[z["record_id"]] = "u-z"
    table = table.append_column("user_id", pa.array([user[i] for i in ids], pa.string()))
    return table, conflicts, (x, y, z["record_id"])


def test_conflicting_strong_ids_are_never_merged(febrl_records):
    records, conflicts, (x, y, z) = _with_user_ids(febrl_records)
    config = MatchConfig(extra_fields=FEBRL_FIELDS, strong_ids=["user_id", "birth_date"], **FAST)
    result = match_records(duckdb.connect(), records, config)
    pairs = {
        (a, b): (d, v)
        for a, b, d, v in zip(
            result.pairs["record_id_l"].to_pylist(),
            result.pairs["record_id_r"].to_pylist(),
            result.pairs["decision"].to_pylist(),
            result.pairs["vetoed_by"].to_pylist(),
            strict=True,
        )
    }
    cluster_of = dict(
        zip(
            result.clusters["record_id"].to_pylist(),
            result.clusters["cluster_id"].to_pylist(),
            strict=True,
        )
    )
    for a, b in conflicts:
        assert pairs[(a, b)] == ("review", "user_id")
        assert cluster_of[a] != cluster_of[b]
    # No pair with a veto is merged, whichever identifier vetoed it.
    vetoed = [d for d, v in pairs.values() if v is not None]
    assert "birth_date" in {v for _, v in pairs.values()}
    assert vetoed and set(vetoed) == {"review"}
    # X (u-x) and its copy Z (u-z) both match Y strongly, but never end in one cluster.
    assert pairs[(x, z)][1] == "user_id"
    assert cluster_of[x] != cluster_of[z]
    # Every cluster holds at most one user id.
    users = dict(zip(records["record_id"].to_pylist(), records["user_id"].to_pylist(), strict=True))
    seen: dict[str, str] = {}
    for rid, cid in cluster_of.items():
        if users[rid] is not None:
            assert seen.setdefault(cid, users[rid]) == users[rid]


def _edges(pairs: list[tuple[int, int]], p: float = 0.99) -> dict:
    left = np.array([a for a, _ in pairs], dtype=np.int64)
    right = np.array([b for _, b in pairs], dtype=np.int64)
    return {"l": left, "r": right, "p": np.full(len(pairs), p)}


def _run(n, merge, support=None, strong=(), size=100, density=0.2, cannot=()):
    support = support or merge
    return cluster(
        ClusterInput(
            n=n,
            merge_l=merge["l"],
            merge_r=merge["r"],
            merge_p=merge["p"],
            support_l=support["l"],
            support_r=support["r"],
            strong=[np.asarray(s, dtype=np.int64) for s in strong],
            cannot_l=np.array([a for a, _ in cannot], dtype=np.int64),
            cannot_r=np.array([b for _, b in cannot], dtype=np.int64),
        ),
        max_cluster_size=size,
        min_link_density=density,
    )


def test_a_chain_of_weak_links_is_not_one_giant_profile():
    n = 200
    chain = _edges([(i, i + 1) for i in range(n - 1)])
    labels, stats = _run(n, chain)
    sizes = np.bincount(labels)
    assert sizes.max() <= 6
    assert stats["refused_merges"] > 0


def test_dense_groups_merge_and_one_bridge_does_not_join_them():
    group_a = [(i, j) for i in range(10) for j in range(i + 1, 10)]
    group_b = [(i, j) for i in range(10, 20) for j in range(i + 1, 20)]
    bridge = [(9, 10)]
    labels, _ = _run(20, _edges(group_a + group_b + bridge))
    assert len(set(labels[:10].tolist())) == 1
    assert len(set(labels[10:].tolist())) == 1
    assert labels[0] != labels[10]


def test_cluster_size_is_capped():
    clique = [(i, j) for i in range(30) for j in range(i + 1, 30)]
    labels, _ = _run(30, _edges(clique), size=10)
    assert np.bincount(labels).max() <= 10


def test_strong_id_conflict_blocks_transitive_merge():
    # 0 (user 1) - 1 (none) - 2 (user 2): 0 and 2 may not end up together.
    labels, _ = _run(3, _edges([(0, 1), (1, 2)]), strong=[[1, -1, 2]])
    assert labels[0] != labels[2]
    # Without the ids the three form one profile.
    labels, _ = _run(3, _edges([(0, 1), (1, 2)]))
    assert len(set(labels.tolist())) == 1


def test_clustering_is_deterministic():
    rng = np.random.default_rng(0)
    pairs = sorted({tuple(sorted(rng.integers(0, 300, 2).tolist())) for _ in range(900)})
    pairs = [(a, b) for a, b in pairs if a != b]
    edges = _edges(pairs)
    edges["p"] = rng.uniform(0.95, 1.0, len(pairs))
    first, _ = _run(300, edges)
    second, _ = _run(300, edges)
    assert np.array_equal(first, second)


def test_cannot_link_pairs_stay_apart():
    # A household: 0 (Anna) and 2 (Ben) share address and surname; 1 has only the
    # surname and address and links to both. Anna and Ben cannot link: 1 joins the one
    # it links to more strongly, never both.
    merge = _edges([(0, 1), (1, 2)])
    merge["p"] = np.array([0.99, 0.97])
    labels, stats = _run(3, merge, cannot=[(0, 2)])
    assert labels[0] == labels[1] and labels[2] != labels[0]
    assert stats["refused_merges"] == 1
    # However many strong links join the others, a cannot-link pair never shares a
    # profile (merging goes strongest link first; the records that would bring 3 and 7
    # together are refused).
    clique = [(i, j) for i in range(8) for j in range(i + 1, 8) if (i, j) != (3, 7)]
    labels, _ = _run(8, _edges(clique), cannot=[(3, 7)])
    assert labels[3] != labels[7]
    assert len(set(labels.tolist())) == 2
    # Without it, they are one profile.
    labels, _ = _run(8, _edges(clique))
    assert len(set(labels.tolist())) == 1
