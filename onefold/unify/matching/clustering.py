"""Clustering merge pairs into profiles without chaining weak links.

Plain connected components turn A–B, B–C, C–D … into one profile even when A and D share
nothing. Here pairs are merged strongest first, and two groups are joined only if

- no strong identifier conflicts (the groups would hold two different user_ids) and no
  pair across them is a cannot-link pair (a guard: clearly different first names, as in
  a household, or birth dates),
- the result has at most `max_cluster_size` records, and
- enough of their cross pairs support it: at least `min_link_density` of all
  |A| × |B| cross pairs scored at least `review_low` (one good link between two groups
  of ten is not enough; a record joining a pair through one link is).

Components of merge pairs that are complete (every pair in them is a merge pair) and free
of conflicts are accepted as they are, without the step-by-step merging: for typical
data that is nearly all of them (a cannot-link pair is never a merge pair, so a
component holding one is never complete).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ClusterInput:
    n: int  # records are 0 … n-1
    merge_l: np.ndarray  # merge pairs (int64 indices)
    merge_r: np.ndarray
    merge_p: np.ndarray
    support_l: np.ndarray  # every pair scored at least review_low, vetoed ones excluded
    support_r: np.ndarray
    strong: list[np.ndarray]  # per strong identifier: a code per record, -1 when missing
    # cannot-link pairs (guards: clearly different first names or birth dates)
    cannot_l: np.ndarray | None = None
    cannot_r: np.ndarray | None = None


def connected_components(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Component label (smallest index in it) of each of n nodes."""
    parent = np.arange(n, dtype=np.int64)
    if len(left) == 0:
        return parent
    while True:
        pl, pr = parent[left], parent[right]
        low = np.minimum(pl, pr)
        np.minimum.at(parent, pl, low)
        np.minimum.at(parent, pr, low)
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
        if np.array_equal(parent[left], parent[right]):
            return parent


def cluster(
    data: ClusterInput,
    max_cluster_size: int,
    min_link_density: float,
) -> tuple[np.ndarray, dict]:
    """Cluster label per record (an index of one of its members) and counters."""
    n = data.n
    labels = connected_components(n, data.merge_l, data.merge_r)
    stats = {"components": 0, "checked_components": 0, "refused_merges": 0}
    if len(data.merge_l) == 0:
        return labels, stats

    comp_of_edge = labels[data.merge_l]
    sizes = np.bincount(labels, minlength=n)
    edges_per = np.bincount(comp_of_edge, minlength=n)
    complete = edges_per == sizes * (sizes - 1) // 2
    conflict = np.zeros(n, dtype=bool)
    for codes in data.strong:
        present = codes >= 0
        if not present.any():
            continue
        lo = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
        hi = np.full(n, -1, dtype=np.int64)
        np.minimum.at(lo, labels[present], codes[present])
        np.maximum.at(hi, labels[present], codes[present])
        conflict |= (hi >= 0) & (lo != hi)
    risky = (sizes > 2) & (~complete | conflict | (sizes > max_cluster_size))
    stats["components"] = int((sizes > 1).sum())
    stats["checked_components"] = int(risky.sum())
    if not risky.any():
        return labels, stats

    # Step-by-step merging inside the risky components only.
    edge_mask = risky[comp_of_edge]
    el, er, ep = data.merge_l[edge_mask], data.merge_r[edge_mask], data.merge_p[edge_mask]
    order = np.lexsort((er, el, -ep))
    el, er = el[order].tolist(), er[order].tolist()
    nodes = np.flatnonzero(risky[labels])
    sup_mask = risky[labels[data.support_l]] & (labels[data.support_l] == labels[data.support_r])
    adjacency: dict[int, set[int]] = {int(x): set() for x in nodes.tolist()}
    for a, b in zip(
        data.support_l[sup_mask].tolist(), data.support_r[sup_mask].tolist(), strict=True
    ):
        adjacency[a].add(b)
        adjacency[b].add(a)
    cannot: dict[int, set[int]] = {}
    if data.cannot_l is not None and len(data.cannot_l):
        cl, cr = data.cannot_l, data.cannot_r
        keep = risky[labels[cl]] & (labels[cl] == labels[cr])
        for a, b in zip(cl[keep].tolist(), cr[keep].tolist(), strict=True):
            cannot.setdefault(a, set()).add(b)
            cannot.setdefault(b, set()).add(a)
    members: dict[int, set[int]] = {x: {x} for x in adjacency}
    root: dict[int, int] = {x: x for x in adjacency}
    strong_values = [
        {x: int(codes[x]) for x in adjacency if codes[x] >= 0} for codes in data.strong
    ]
    refused = 0
    for a, b in zip(el, er, strict=True):
        ra, rb = root[a], root[b]
        if ra == rb:
            continue
        ma, mb = members[ra], members[rb]
        if len(ma) + len(mb) > max_cluster_size:
            refused += 1
            continue
        if any(
            ra in values and rb in values and values[ra] != values[rb] for values in strong_values
        ):
            refused += 1
            continue
        small, big = (ma, mb) if len(ma) <= len(mb) else (mb, ma)
        if cannot and any(not cannot.get(x, set()).isdisjoint(big) for x in small):
            refused += 1
            continue
        if len(ma) > 1 or len(mb) > 1:
            links = sum(len(adjacency[x] & big) for x in small)
            if links < min_link_density * len(ma) * len(mb):
                refused += 1
                continue
        if len(ma) < len(mb):
            ra, rb, ma, mb = rb, ra, mb, ma
        ma |= mb
        for x in mb:
            root[x] = ra
        del members[rb]
        for values in strong_values:
            if rb in values and ra not in values:
                values[ra] = values[rb]
    stats["refused_merges"] = refused
    out = labels.copy()
    for x, r in root.items():
        out[x] = r
    return out, stats
