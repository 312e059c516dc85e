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

import sys

import duckdb

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
        anchors = con.sql(
            "SELECT profile_id, anchor_namespace, anchor_value, anchor_seq "
            "FROM identity_profiles WHERE merged_into IS NULL"
        ).fetchnumpy()
        rows = con.sql("SELECT profile_id, namespace, value FROM identifiers").fetchnumpy()
        namespaces = {n: sys.intern(n) for n in set(rows["namespace"].tolist())}
        owner: dict[Key, str] = {}
        keys_of: dict[str, list[Key]] = {}
        one: dict[str, str] = {}  # one string per profile id, shared by its identifiers
        for profile_id, namespace, value in zip(
            rows["profile_id"].tolist(),
            rows["namespace"].tolist(),
            rows["value"].tolist(),
            strict=True,
        ):
            key = (namespaces[namespace], value)
            profile_id = one.setdefault(profile_id, profile_id)
            keys = keys_of.get(profile_id)
            if keys is None:
                keys = keys_of[profile_id] = []
            owner[key] = profile_id
            keys.append(key)
        profiles = {}
        for profile_id, namespace, value, seq in zip(
            anchors["profile_id"].tolist(),
            anchors["anchor_namespace"].tolist(),
            anchors["anchor_value"].tolist(),
            anchors["anchor_seq"].tolist(),
            strict=True,
        ):
            profile_id = one.get(profile_id, profile_id)
            keys = tuple(keys_of.get(profile_id, ()))
            anchor = (namespaces.get(namespace, namespace), value)
            # the anchor is mostly one of the profile's identifiers: the same tuple
            anchor = next((key for key in keys if key == anchor), anchor)
            profiles[profile_id] = (anchor, seq, keys)
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
