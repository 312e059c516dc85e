"""The identity graph's owners in memory: every identifier's live profile, and every live
profile's anchor and identifiers.

A micro-batch needs the profiles that own its identifiers, with all their identifiers,
before it can resolve. Read from the warehouse, that is two joins over ``identifiers`` and
one over ``identity_profiles`` per batch: whole-table reads (DuckDB reads a table to join
it), so each batch would cost more the more history there is. Held here, it costs a
dictionary lookup per identifier.

The index follows the warehouse: it is loaded from it, and after each micro-batch commits
it takes the final state of the profiles that batch resolved (the resolver held all of
them, whole). Whatever else changes the graph (an override, a link, a rebuild) drops it, to
be loaded again on the next batch. Above a number of identifiers it is not kept, and
batches read the warehouse instead.
"""

from __future__ import annotations

import gc
import sys

import duckdb
import numpy as np

from onefold.unify.resolver import Key, Resolver


class OwnerIndex:
    """Identifiers → live profile, and live profiles → (anchor, anchor seq, identifiers).

    Kept as tuples and strings, which Python's cycle collector stops tracking: the
    collector's full passes do not grow with the graph."""

    def __init__(self, owner: dict[Key, str], profiles: dict[str, tuple[Key, int, tuple]]):
        self.owner = owner
        self.profiles = profiles

    @classmethod
    def load(cls, con: duckdb.DuckDBPyConnection) -> OwnerIndex:
        # Every identifier with its live profile's anchor, grouped by profile (by the
        # profile's row number: an integer sort) with the anchor's own row first, so that
        # DuckDB and numpy do the grouping and Python walks each profile once. Identifiers
        # of a profile that is not live (none, normally) come last, on their own.
        rows = con.sql(
            """
            WITH live AS (
                SELECT rowid AS profile_row, * FROM profile_anchors
                WHERE profile_id NOT IN (SELECT profile_id FROM absorbed_profiles)
            )
            SELECT i.profile_id, i.namespace, i.value, p.profile_row,
                   p.anchor_namespace, p.anchor_value, p.anchor_seq
            FROM identifiers i
            LEFT JOIN live p ON p.profile_id = i.profile_id
            ORDER BY p.profile_row NULLS LAST,
                     i.namespace = p.anchor_namespace AND i.value = p.anchor_value DESC
            """
        ).fetchnumpy()
        bare = con.sql(
            """
            SELECT profile_id, anchor_namespace, anchor_value, anchor_seq
            FROM identity_profiles p
            WHERE merged_into IS NULL
              AND NOT EXISTS (SELECT 1 FROM identifiers i WHERE i.profile_id = p.profile_id)
            """
        ).fetchall()
        namespace_of = {n: sys.intern(n) for n in set(rows["namespace"].tolist())}
        keys = list(zip(map(namespace_of.__getitem__, rows["namespace"].tolist()),
                        rows["value"].tolist(), strict=True))  # fmt: skip
        profile_ids = np.asarray(rows["profile_id"], dtype=object)
        live = int((~np.ma.getmaskarray(rows["profile_row"])).sum())
        profile_rows = np.ma.getdata(rows["profile_row"])[:live]
        changes = profile_rows[1:] != profile_rows[:-1]
        starts = np.flatnonzero(np.concatenate(([live > 0], changes)))
        ends = np.append(starts[1:], live).astype(starts.dtype) if live else starts
        # one string per live profile id, shared by its identifiers
        shared = np.repeat(profile_ids[starts], ends - starts).tolist()
        shared += profile_ids[live:].tolist()
        anchor_namespaces = rows["anchor_namespace"].tolist()
        anchor_values = rows["anchor_value"].tolist()
        anchor_seqs = rows["anchor_seq"].tolist()
        # Hundreds of thousands of new tuples, no cycles: the collector would only walk
        # them again and again.
        paused = gc.isenabled()
        gc.disable()
        try:
            owner: dict[Key, str] = dict(zip(keys, shared, strict=True))
            profiles = {}
            for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
                namespace = anchor_namespaces[start]
                anchor = (namespace_of.get(namespace, namespace), anchor_values[start])
                first = keys[start]
                # the anchor is mostly one of the profile's identifiers: the same tuple
                profiles[shared[start]] = (
                    first if first == anchor else anchor,
                    anchor_seqs[start],
                    tuple(keys[start:end]),
                )
        finally:
            if paused:
                gc.enable()
        for profile_id, namespace, value, seq in bare:
            profiles[profile_id] = ((namespace_of.get(namespace, namespace), value), seq, ())
        return cls(owner, profiles)

    def __len__(self) -> int:
        return len(self.owner)

    def fill(self, resolver: Resolver, keys: set[Key]) -> None:
        """Give ``resolver`` the profiles owning any of ``keys``, with all their
        identifiers: the index itself changes only once the batch is committed."""
        owner, profiles = self.owner, self.profiles
        for profile_id in {owner[key] for key in keys if key in owner}:
            anchor, anchor_seq, held = profiles[profile_id]
            resolver.load_profile(profile_id, anchor, anchor_seq)
            for key in held:
                resolver.load_identifier(key, profile_id)

    def apply(self, resolver: Resolver) -> None:
        """Take the outcome of a committed batch: the resolver held every profile the
        batch touched, whole, so its final state replaces theirs here."""
        profiles = self.profiles
        for absorbed in resolver.redirect:
            profiles.pop(absorbed, None)
        for profile_id, profile in resolver.profiles.items():
            held = tuple((n, v) for n, values in profile.values.items() for v in values)
            profiles[profile_id] = (profile.anchor, profile.anchor_seq, held)
        self.owner.update(resolver.owner)
