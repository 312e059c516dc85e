"""Profile traits: what identify calls (``traits``, or ``context.traits`` as RudderStack
sends them, over a batch's shared ``context.traits``) and profile imports say about a
person, merged across the profile's identities.

Every observation is kept (``trait_observations``) with its source and time. A profile's
value of a trait is the observation that ranks first: the higher source priority (when the
settings give one, e.g. the CRM over a web form for names), then the later event time, then
the later arrival. A null clears a trait only when ``traits.null_clears`` is set; otherwise
nulls are ignored. Values are materialised in ``profile_traits`` for the profiles a batch
touches, with the same query a full recompute runs, so both give the same values.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa
from pydantic import BaseModel, Field

from onefold.unify import membership


class TraitRules(BaseModel):
    source_priority: list[str] = Field(
        default_factory=list,
        description="Source names, strongest first; a trait from a listed source beats any "
        "from a source listed after it or not listed, whatever their times.",
    )
    trait_source_priority: dict[str, list[str]] = Field(
        default_factory=dict, description="Per-trait source priority, overriding the above."
    )
    null_clears: bool = Field(default=False, description="Whether a null value clears a trait.")


def observe(con: duckdb.DuckDBPyConnection, after: int, upto: int) -> set[int]:
    """Record the trait observations of the identify messages in ``(after, upto]``;
    returns the seqs of the messages that gave any.

    A message's traits are its ``traits`` object or, when it has none, its
    ``context.traits`` over the batch envelope's ``context.traits`` (``events.batch``),
    trait by trait: the message's value wins unless it is null or missing, as identifier
    extraction reads them (:func:`onefold.unify.identifiers.extraction_sql`); a null from
    either is still observed when nothing else gives that trait. Messages of batches
    without shared traits take the plain path, with no merging."""
    observed = con.execute(
        """
        INSERT INTO trait_observations
        WITH identify AS (
            SELECT seq, source_id, "timestamp",
                   CASE WHEN json_type(raw -> '$.traits') = 'OBJECT'
                        THEN raw -> '$.traits' END AS own,
                   CASE WHEN json_type(raw -> '$.context.traits') = 'OBJECT'
                        THEN raw -> '$.context.traits' END AS context,
                   CASE WHEN json_type(batch -> '$.context.traits') = 'OBJECT'
                        THEN batch -> '$.context.traits' END AS shared
            FROM events
            WHERE seq > $after AND seq <= $upto AND type = 'identify'
        ),
        plain AS (
            SELECT * FROM identify WHERE own IS NOT NULL OR shared IS NULL
        ),
        layered AS (
            SELECT i.seq, i.source_id, i."timestamp", t.key, t.value,
                   CASE WHEN json_type(t.value) = 'NULL' THEN 2 ELSE 0 END AS rank
            FROM identify i, json_each(i.context) t
            WHERE i.own IS NULL AND i.shared IS NOT NULL AND i.context IS NOT NULL
            UNION ALL
            SELECT i.seq, i.source_id, i."timestamp", t.key, t.value,
                   CASE WHEN json_type(t.value) = 'NULL' THEN 3 ELSE 1 END AS rank
            FROM identify i, json_each(i.shared) t
            WHERE i.own IS NULL AND i.shared IS NOT NULL
        )
        SELECT p.seq, p.source_id, t.key, t.value, p."timestamp"
        FROM plain p, json_each(coalesce(p.own, p.context)) t
        UNION ALL
        SELECT seq, source_id, key, value, "timestamp" FROM layered
        QUALIFY row_number() OVER (PARTITION BY seq, key ORDER BY rank) = 1
        RETURNING seq
        """,
        {"after": after, "upto": upto},
    ).fetchall()
    return {row[0] for row in observed}


def _ranks(con: duckdb.DuckDBPyConnection, rules: TraitRules) -> pa.Table:
    """(trait or '*', source_id, rank) for the configured priorities; higher wins."""
    names = {row[0]: row[1] for row in con.execute("SELECT name, id FROM sources").fetchall()}
    traits, sources, ranks = [], [], []
    for trait, order in [("*", rules.source_priority), *rules.trait_source_priority.items()]:
        for position, name in enumerate(order):
            if name in names:
                traits.append(trait)
                sources.append(names[name])
                ranks.append(len(order) - position)
    return pa.table({"trait": pa.array(traits, pa.string()),
                     "source_id": pa.array(sources, pa.string()),
                     "rank": pa.array(ranks, pa.int64())})  # fmt: skip


def refresh(
    con: duckdb.DuckDBPyConnection,
    rules: TraitRules,
    profiles: list[str] | None,
    members: pa.Table | None = None,
) -> None:
    """Recompute ``profile_traits`` for ``profiles`` (every profile when None);
    ``members``, when given, are those profiles' events as ``(profile_id, seq)``
    (:func:`membership.events_of_identifiers`)."""
    if profiles is not None and not profiles:
        return
    keep_nulls = "TRUE" if rules.null_clears else "json_type(o.value) <> 'NULL'"
    con.register("trait_ranks", _ranks(con, rules))
    try:
        with membership.replacing(con, "profile_traits", profiles, members) as source:
            con.execute(
                f"""
                INSERT INTO profile_traits
                    (profile_id, trait, value, source_id, seq, "timestamp", profile_hash)
                SELECT profile_id, trait, value, source_id, seq, "timestamp",
                       {membership.PROFILE_HASH}
                FROM (
                    SELECT m.profile_id, o.trait, o.value, o.source_id, o.seq, o."timestamp",
                           row_number() OVER (
                               PARTITION BY m.profile_id, o.trait
                               ORDER BY coalesce(specific.rank, general.rank, 0) DESC,
                                        o."timestamp" DESC, o.seq DESC
                           ) AS position
                    FROM trait_observations o
                    JOIN {source} m ON m.seq = o.seq
                    LEFT JOIN trait_ranks specific
                           ON specific.trait = o.trait AND specific.source_id = o.source_id
                    LEFT JOIN trait_ranks general
                           ON general.trait = '*' AND general.source_id = o.source_id
                    WHERE o.value IS NOT NULL AND {keep_nulls}
                )
                WHERE position = 1 AND json_type(value) <> 'NULL'
                """
            )
    finally:
        con.unregister("trait_ranks")
