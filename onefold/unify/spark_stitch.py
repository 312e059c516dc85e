"""Identity stitching and computed traits on Spark, from the same code the DuckDB path runs.

1. **Extract**: :func:`onefold.unify.identifiers.extraction_sql`, the very query the
   micro-batches run on DuckDB, transpiled by SQLGlot to Spark SQL — so merge calls'
   ``mergeProperties`` and the batch-level context (``events.batch``) count here exactly
   as there.
2. **Clean**: each row through :class:`~onefold.unify.identifiers.KeyCleaner` (phone
   numbers to E.164, blocked values set aside), in ``mapInPandas``.
3. **Components**: the raw connected components of the message–identifier graph, by min-label
   propagation in DataFrames until nothing changes (bounded). Each active link
   (:mod:`onefold.unify.links`) is one more node, joined to its two identifiers, as the
   message holding both that it stands for. Links the rules will refuse still connect
   here: a component is everything one message's (or link's) resolution can depend on.
4. **Resolve**: ``groupBy(component).applyInPandas``: the same
   :class:`~onefold.unify.resolver.Resolver` over each component's messages in ``seq``
   order, with the component's links applied right after the event at their position
   (:func:`onefold.unify.links.resolve_with_links`), so independent components resolve in
   parallel. Because no message reaches outside its component, this gives what resolving
   every event in order on DuckDB gives.
5. **Computed traits**: :func:`onefold.unify.computed.computed_sql` in Spark's dialect
   over ``events``, the stitched ``event_identity`` and ``identifiers``.

This is a full (re)build from the raw events, the Spark counterpart of ``IdentityGraph
.rebuild()``; real-time micro-batches stay on the embedded path.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from itertools import groupby
from typing import TYPE_CHECKING, Any

import orjson
import sqlglot

from onefold.unify.computed import ComputedTrait, computed_sql, parameters
from onefold.unify.identifiers import KeyCleaner, extraction_sql
from onefold.unify.links import Link, merge_details, resolve_with_links
from onefold.unify.resolver import Key, Message, Resolver
from onefold.unify.rules import IdentityRules

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame

    from onefold.store.spark import SparkEngine

MAX_ITERATIONS = 64

_EDGES = "seq long, message_id string, source_id string, namespace string, value string"
_CLEANED = _EDGES + ", blocked boolean"
# One schema for everything a component's resolution produces, told apart by ``kind``.
_RESOLVED = (
    "kind string, seq long, message_id string, namespace string, value string, "
    "profile_id string, other_id string, rule string, detail string, source_id string, "
    "method string, probability double, reasons string"
)
_RESOLVED_COLUMNS = [part.split()[0] for part in _RESOLVED.split(", ")]


class NoFixpoint(RuntimeError):
    """Connected components did not settle within the iteration bound."""


@dataclass
class Stitched:
    """The identity graph built on Spark, one DataFrame per warehouse table (without the
    ``created_at`` columns, which only say when a row was written)."""

    identifiers: DataFrame
    identity_profiles: DataFrame
    identity_merges: DataFrame
    identity_refusals: DataFrame
    event_identity: DataFrame
    identity_blocked: DataFrame
    labels: DataFrame  # (seq, component): the raw connected component of each message
    links: int  # active links given, each applied at its position
    iterations: int  # label propagation rounds until nothing changed

    def register(self, engine: SparkEngine) -> None:
        """Make the graph queryable by its table names, e.g. for :func:`computed_frame`."""
        for name in ("identifiers", "identity_profiles", "identity_merges",
                     "identity_refusals", "event_identity", "identity_blocked"):  # fmt: skip
            engine.register(name, getattr(self, name))


def extraction_frame(engine: SparkEngine, rules: IdentityRules) -> DataFrame:
    """The extraction query over every stored event, on Spark (no global sort: the
    resolver sorts each component)."""
    tree = sqlglot.parse_one(extraction_sql(rules, where="TRUE", parse_once=False), read="duckdb")
    tree.set("order", None)
    return engine.sql(tree.sql("duckdb"))


def _cleaner(rules: IdentityRules, blocked_keys: frozenset[Key]):
    def clean(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import pandas as pd

        cleaner = KeyCleaner(rules, blocked_keys)
        for batch in batches:
            values, blocked = [], []
            for namespace, value, locale in zip(
                batch["namespace"].tolist(), batch["value"].tolist(), batch["locale"].tolist(),
                strict=True,
            ):  # fmt: skip
                cleaned, is_blocked = cleaner.clean(namespace, value, locale)
                values.append(cleaned)
                blocked.append(is_blocked)
            out = batch[["seq", "message_id", "source_id", "namespace"]].copy()
            out["value"] = pd.Series(values, index=batch.index, dtype=object)
            out["blocked"] = pd.Series(blocked, index=batch.index, dtype=bool)
            yield out[out["value"].notna()]

    return clean


def components(edges: DataFrame, max_iterations: int = MAX_ITERATIONS) -> tuple[DataFrame, int]:
    """(seq, component) for every message in ``edges`` (distinct seq, namespace, value):
    the least seq of its connected component (links' nodes included: see
    :func:`link_edges`), by min-label propagation to a fixpoint.

    Each round takes every identifier's least label over its messages, then every
    message's least label over its identifiers; one round crosses two edges of the
    message–identifier graph, so rounds ≈ half the component's diameter."""
    from pyspark.sql import functions as F

    labels = edges.select("seq", F.col("seq").alias("label"))
    for iteration in range(1, max_iterations + 1):
        key_labels = (
            edges.join(labels, "seq").groupBy("namespace", "value").agg(F.min("label").alias("k"))
        )
        updated = (
            edges.join(key_labels, ["namespace", "value"])
            .groupBy("seq")
            .agg(F.min("k").alias("label"))
            .join(labels.withColumnRenamed("label", "before"), "seq")
            .select("seq", "label", (F.col("label") != F.col("before")).alias("changed"))
            .localCheckpoint()
        )
        labels = updated.select("seq", "label")
        if updated.where("changed").isEmpty():
            return labels.withColumnRenamed("label", "component"), iteration
    raise NoFixpoint(f"connected components still changing after {max_iterations} rounds")


def ordered_links(active_links: Iterable[Link]) -> list[Link]:
    """Active links in the order they apply (position, then id, as
    :func:`onefold.unify.links.active_between` gives them, which also leaves out a link
    without a position); a link's node in the component graph is numbered by its place
    here (see :func:`link_edges`)."""
    placed = [link for link in active_links if link.position is not None]
    return sorted(placed, key=lambda link: (link.position, link.id))


def link_edges(engine: SparkEngine, ordered: list[Link]) -> DataFrame:
    """The edges of the links' nodes, in the schema of the message edges: link ``i`` of
    ``ordered`` is the node ``seq = -(i + 1)`` (below every event's seq, so never taken for
    one), with an edge to each of its identifiers."""
    rows = [
        (-(index + 1), link.message_id, None, namespace, value)
        for index, link in enumerate(ordered)
        for namespace, value in (link.a, link.b)
    ]
    return engine.session.createDataFrame(rows, _EDGES)


def _resolver(rules: IdentityRules, never_link: list[tuple[Key, Key]], ordered: list[Link]):
    def resolve(rows: pd.DataFrame) -> pd.DataFrame:
        import pandas as pd

        cleaner = KeyCleaner(rules)
        nodes = sorted(zip(
            rows["seq"].tolist(), rows["message_id"].tolist(), rows["source_id"].tolist(),
            rows["namespace"].tolist(), rows["value"].tolist(), strict=True,
        ))  # fmt: skip
        first_event = next((i for i, node in enumerate(nodes) if node[0] >= 0), len(nodes))
        placed = [ordered[i] for i in sorted({-node[0] - 1 for node in nodes[:first_event]})]
        events = nodes[first_event:]
        messages = [
            Message(seq, message_id, source_id,
                    cleaner.strongest_first({(r[3], r[4]) for r in group}))
            for (seq, message_id, source_id), group in groupby(events, key=lambda r: r[:3])
        ]  # fmt: skip
        resolver = Resolver(rules, never_link)
        changes = resolve_with_links(resolver, messages, placed)
        details = merge_details(placed)
        plain = ("deterministic", None, None)
        surviving = resolver.surviving
        out: dict[str, list] = {column: [] for column in _RESOLVED_COLUMNS}

        def emit(kind: str, seq: int, namespace: str, value: str, **fields: Any) -> None:
            fields.update(kind=kind, seq=seq, namespace=namespace, value=value)
            for column, values in out.items():
                values.append(fields.get(column))

        for namespace, value, profile_id, first_seq, source_id in changes.new_identifiers:
            emit("identifier", first_seq, namespace, value, profile_id=surviving(profile_id),
                 source_id=source_id)  # fmt: skip
        for profile in changes.born.values():
            into = surviving(profile.id)
            emit("profile", profile.anchor_seq, *profile.anchor, profile_id=profile.id,
                 other_id=into if into != profile.id else None)  # fmt: skip
        for m in changes.merges:
            method, probability, reasons = details.get(m.message_id, plain)
            emit("merge", m.seq, m.namespace, m.value, message_id=m.message_id,
                 profile_id=m.surviving_id, other_id=m.absorbed_id, method=method,
                 probability=probability, reasons=reasons)  # fmt: skip
        for r in changes.refusals:
            emit("refusal", r.seq, r.namespace, r.value, message_id=r.message_id,
                 profile_id=r.profile_id, other_id=r.other_profile_id, rule=r.rule,
                 detail=r.detail)  # fmt: skip
        for seq, namespace, value in changes.attributions:
            emit("event", seq, namespace, value)
        frame = pd.DataFrame({c: pd.Series(v, dtype=object) for c, v in out.items()})
        frame["seq"] = pd.array(out["seq"], dtype="Int64")
        frame["probability"] = pd.array(out["probability"], dtype="Float64")
        return frame

    return resolve


def stitch(
    engine: SparkEngine,
    rules: IdentityRules,
    blocked_keys: frozenset[Key] = frozenset(),
    never_link: Iterable[tuple[Key, Key]] = (),
    active_links: Iterable[Link] = (),
    max_iterations: int = MAX_ITERATIONS,
) -> Stitched:
    """Resolve every event of the ``events`` view into an identity graph, on Spark.
    ``blocked_keys`` and ``never_link`` are the active overrides
    (:func:`onefold.unify.overrides.active`), ``active_links`` the active links
    (:func:`onefold.unify.links.active`), each applied right after the event at its
    position, as a rebuild on DuckDB applies them."""
    from pyspark.sql import functions as F

    cleaned = (
        extraction_frame(engine, rules)
        .mapInPandas(_cleaner(rules, frozenset(blocked_keys)), _CLEANED)
        .localCheckpoint()
    )
    blocked = (
        cleaned.where("blocked")
        .groupBy("namespace", "value")
        .agg(F.count("*").alias("occurrences"), F.max("seq").alias("last_seq"))
    )
    linking = cleaned.where("NOT blocked").drop("blocked").distinct()
    ordered = ordered_links(active_links)
    if ordered:
        linking = linking.unionByName(link_edges(engine, ordered))
    linking = linking.localCheckpoint()
    labels, iterations = components(linking, max_iterations)
    resolved = (
        linking.join(labels, "seq")
        .groupBy("component")
        .applyInPandas(_resolver(rules, list(never_link), ordered), _RESOLVED)
        .localCheckpoint()
    )
    kind = F.col("kind")
    return Stitched(
        identifiers=resolved.where(kind == "identifier").select(
            "namespace", "value", "profile_id", F.col("seq").alias("first_seq"), "source_id"
        ),
        identity_profiles=resolved.where(kind == "profile").select(
            "profile_id",
            F.col("namespace").alias("anchor_namespace"),
            F.col("value").alias("anchor_value"),
            F.col("seq").alias("anchor_seq"),
            F.col("other_id").alias("merged_into"),
        ),
        identity_merges=resolved.where(kind == "merge").select(
            "seq",
            "message_id",
            F.col("profile_id").alias("surviving_id"),
            F.col("other_id").alias("absorbed_id"),
            "namespace",
            "value",
            "method",
            "probability",
            "reasons",
        ),
        identity_refusals=resolved.where(kind == "refusal").select(
            "seq",
            "message_id",
            "namespace",
            "value",
            "profile_id",
            F.col("other_id").alias("other_profile_id"),
            "rule",
            "detail",
        ),
        event_identity=resolved.where(kind == "event").select("seq", "namespace", "value"),
        identity_blocked=blocked,
        labels=labels.where(F.col("seq") >= 0) if ordered else labels,
        links=len(ordered),
        iterations=iterations,
    )


def computed_frame(engine: SparkEngine, traits: list[ComputedTrait], as_of: datetime) -> DataFrame:
    """One row per profile, one column per trait: the query the DuckDB path runs, in
    Spark's dialect, over the ``events``, ``event_identity`` and ``identifiers`` views."""
    return engine.session.sql(computed_sql(traits, dialect="spark"), args=parameters(as_of))


def json_text(value: Any) -> str | None:
    """A computed value as DuckDB's ``to_json`` writes it into ``computed_traits``."""
    if value is None:
        return None
    if isinstance(value, datetime):
        text = value.strftime("%Y-%m-%d %H:%M:%S")
        if value.microsecond:
            text += f".{value.microsecond:06d}".rstrip("0")
        return orjson.dumps(text).decode()
    if isinstance(value, date):
        return orjson.dumps(value.isoformat()).decode()
    return orjson.dumps(value).decode()


def computed_rows(
    engine: SparkEngine, traits: list[ComputedTrait], as_of: datetime
) -> list[tuple[str, str, str | None]]:
    """(profile_id, name, value as JSON text): the rows of ``computed_traits``, where a
    null value has no row."""
    rows = []
    for row in computed_frame(engine, traits, as_of).toArrow().to_pylist():
        for trait in traits:
            value = json_text(row[trait.name])
            if value is not None:
                rows.append((row["profile_id"], trait.name, value))
    return rows
