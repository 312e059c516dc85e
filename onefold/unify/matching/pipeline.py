"""`match_records`: normalise → block → train → (calibrate) → predict → cluster."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from splink import DuckDBAPI

from onefold.unify.matching import calibration as calib
from onefold.unify.matching.blocking import BlockingKey, blocked_pairs, default_keys
from onefold.unify.matching.clustering import ClusterInput, cluster, connected_components
from onefold.unify.matching.comparisons import date_conflict_sql, first_name_conflict_sql
from onefold.unify.matching.config import DEFAULT_KINDS, Field, MatchConfig
from onefold.unify.matching.junk import find_junk
from onefold.unify.matching.normalise import column_types, normalise_sql, quote
from onefold.unify.matching.prediction import score_candidates, score_labelled
from onefold.unify.matching.reasons import model_description
from onefold.unify.matching.training import make_linker, train

PAIRS_SCHEMA = pa.schema(
    [
        ("record_id_l", pa.string()),
        ("record_id_r", pa.string()),
        ("match_probability", pa.float64()),
        ("match_weight", pa.float64()),
        ("decision", pa.string()),
        ("vetoed_by", pa.string()),
        ("reasons", pa.string()),
    ]
)


@dataclass
class MatchResult:
    """What matching found.

    pairs: every candidate pair with probability ≥ review_low (rejected pairs are left
      out): record_id_l < record_id_r, match_probability, match_weight, decision
      ("merge" when both records ended up in one cluster, else "review"), vetoed_by (the
      strong identifier that forbade an automatic merge, or null) and reasons (JSON: per
      field, the agreement level and its weight).
    clusters: record_id → cluster_id (the smallest record_id in the cluster), every record.
    stats: counts, timings and the trained model.
    """

    pairs: pa.Table
    clusters: pa.Table
    stats: dict = field(default_factory=dict)


def resolve_fields(config: MatchConfig, columns: set[str]) -> list[Field]:
    chosen = config.fields if config.fields is not None else _default_fields(columns)
    fields = list(chosen) + [f for f in config.extra_fields if f not in chosen]
    missing = [f.column for f in fields if f.kind != "name" and f.column not in columns]
    if missing:
        raise ValueError(f"fields name columns the records do not have: {missing}")
    return fields


def _default_fields(columns: set[str]) -> list[Field]:
    fields: list[Field] = []
    if columns & {"first_name", "last_name", "full_name"}:
        fields.append(Field("name", "name"))
    for col, kind in DEFAULT_KINDS.items():
        if col in columns:
            fields.append(Field(col, kind))
    if "user_id" in columns:
        fields.append(Field("user_id", "exact"))
    return fields


def _labels_table(con: duckdb.DuckDBPyConnection, labels: pa.Table, work: str, name: str) -> str:
    """Labels as (l, r, y) on internal ids, l < r; y = is_match or clerical_match_score."""
    score = "is_match" if "is_match" in labels.column_names else "clerical_match_score"
    if score not in labels.column_names:
        raise ValueError("labels need an is_match or a clerical_match_score column")
    con.register(name + "_src", labels)
    try:
        con.execute(
            f"CREATE TEMP TABLE {name} AS SELECT least(a.unique_id, b.unique_id) AS l, "
            f"greatest(a.unique_id, b.unique_id) AS r, avg(CAST(s.{score} AS DOUBLE)) AS y "
            f"FROM {name}_src s "
            f"JOIN {work} a ON CAST(a.record_id AS VARCHAR) = CAST(s.record_id_l AS VARCHAR) "
            f"JOIN {work} b ON CAST(b.record_id AS VARCHAR) = CAST(s.record_id_r AS VARCHAR) "
            f"WHERE a.unique_id <> b.unique_id GROUP BY 1, 2"
        )
    finally:
        con.unregister(name + "_src")
    return name


def match_records(
    con: duckdb.DuckDBPyConnection,
    records: str | pa.Table,
    config: MatchConfig | None = None,
    labels: pa.Table | None = None,
) -> MatchResult:
    """Find records of the same person among `records` (a table name or an Arrow table).

    Columns are all optional except record_id (unique): first_name, last_name, full_name,
    email, phone, birth_date, street, city, postcode, country, gender, user_id, and any
    column a `Field` in the config names. `labels` (record_id_l, record_id_r, is_match),
    if given, calibrate the probabilities. Working tables are temporary and dropped at the
    end; Splink's own tables on `con` too.
    """
    config = config or MatchConfig()
    if not 0 < config.review_low <= config.auto_merge <= 1:
        raise ValueError("need 0 < review_low <= auto_merge <= 1")
    t_start, c_start = time.perf_counter(), time.process_time()
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}
    tag = "__onefold_match_" + uuid.uuid4().hex[:10]
    work, candidates, scored = tag + "_work", tag + "_pairs", tag + "_scored"
    views: list[str] = []
    tables = [work, candidates, scored, tag + "_labels", tag + "_cid"]
    linker = None
    try:
        if isinstance(records, pa.Table):
            con.register(tag + "_src", records)
            views.append(tag + "_src")
            source = quote(tag + "_src")
        else:
            source = records
        types = column_types(con, source)
        if "record_id" not in types:
            raise ValueError("records need a record_id column")
        fields = resolve_fields(config, set(types))
        field_cols = {f.column for f in fields}
        strong = [s for s in config.strong_ids if s in types or s in field_cols]
        keep = [s for s in strong if s not in field_cols]
        con.execute(
            f"CREATE TEMP TABLE {work} AS "
            f"{normalise_sql(source, types, fields, keep, config.phone_region)}"
        )
        junk = find_junk(con, work, fields, config)
        n_records, n_distinct = con.execute(
            f"SELECT count(*), count(DISTINCT record_id) FROM {work}"
        ).fetchall()[0]
        if n_records != n_distinct:
            raise ValueError("record_id values must be unique and not null")
        timings["normalise"] = time.perf_counter() - t_start
        cpu["normalise"] = time.process_time() - c_start

        t, c = time.perf_counter(), time.process_time()
        keys = default_keys(fields) + [
            BlockingKey("extra " + "+".join(k), tuple(k)) for k in config.extra_blocking_keys
        ]
        per_key = blocked_pairs(
            con,
            work,
            keys,
            config.max_block_size,
            max(config.min_pairs_per_key, int(config.max_pairs_per_key_per_record * n_records)),
            candidates,
        )
        n_candidates = sum(per_key.values())
        timings["blocking"] = time.perf_counter() - t
        cpu["blocking"] = time.process_time() - c

        t, c = time.perf_counter(), time.process_time()
        db_api = DuckDBAPI(connection=con)
        linker = make_linker(db_api, work, fields, prior=1e-4)
        train_stats = (
            train(linker, db_api, fields, config, n_records, candidates, n_candidates, work)
            if n_records > 1
            else {}
        )
        timings["training"] = time.perf_counter() - t
        cpu["training"] = time.process_time() - c

        t, c = time.perf_counter(), time.process_time()
        cal = calib.Calibration()
        n_labels = 0
        if labels is not None and labels.num_rows and n_records > 1:
            lt = _labels_table(con, labels, work, tag + "_labels")
            scored_labels = score_labelled(con, linker, db_api, lt)
            cal = calib.fit([w for w, _ in scored_labels], [y for _, y in scored_labels])
            n_labels = len(scored_labels)
        timings["calibration"] = time.perf_counter() - t
        cpu["calibration"] = time.process_time() - c

        t, c = time.perf_counter(), time.process_time()
        guards, guard_stats = guard_conditions(config, fields, linker)
        if n_records > 1:
            score_candidates(
                con,
                linker,
                db_api,
                candidates,
                work,
                strong,
                cal,
                config.review_low,
                scored,
                guards,
            )
        else:
            con.execute(
                f"CREATE TEMP TABLE {scored} (unique_id_l BIGINT, unique_id_r BIGINT, "
                f"match_probability DOUBLE, match_weight DOUBLE, vetoed_by VARCHAR, "
                f"reasons VARCHAR)"
            )
        timings["prediction"] = time.perf_counter() - t
        cpu["prediction"] = time.process_time() - c

        t, c = time.perf_counter(), time.process_time()
        labels_out, merge_count, cluster_stats = _cluster(
            con, work, scored, strong, config, candidates if n_records > 1 else None, guards
        )
        # Cluster id: the smallest record id in the cluster (ids are numbered in order).
        smallest = np.arange(n_records, dtype=np.int64)
        if n_records:
            np.minimum.at(smallest, labels_out, np.arange(n_records, dtype=np.int64))
        cid = smallest[labels_out] if n_records else smallest
        con.register(tag + "_cid_src", pa.table({"c": pa.array(cid, pa.int64())}))
        views.append(tag + "_cid_src")
        con.execute(
            f"CREATE TEMP TABLE {tag}_cid AS SELECT row_number() OVER () - 1 AS unique_id, c "
            f"FROM {tag}_cid_src"
        )
        clusters = con.sql(
            f"SELECT CAST(w.record_id AS VARCHAR) AS record_id, "
            f"CAST(m.record_id AS VARCHAR) AS cluster_id FROM {work} w "
            f"JOIN {tag}_cid x ON x.unique_id = w.unique_id "
            f"JOIN {work} m ON m.unique_id = x.c ORDER BY w.unique_id"
        ).to_arrow_table()
        # A pair's decision is its outcome: "merge" when clustering put both records in one
        # profile (a pair over auto_merge that anti-chaining kept apart goes to review; a
        # pair under it whose records were joined through stronger links is merged).
        over = f"s.match_probability >= {config.auto_merge!r} AND s.vetoed_by IS NULL"
        pairs = con.sql(
            f"SELECT CAST(wa.record_id AS VARCHAR) AS record_id_l, "
            f"CAST(wb.record_id AS VARCHAR) AS record_id_r, s.match_probability, "
            f"s.match_weight, CASE WHEN a.c = b.c THEN 'merge' ELSE 'review' END "
            f"AS decision, s.vetoed_by, s.reasons, {over} AS over_threshold "
            f"FROM {scored} s "
            f"JOIN {tag}_cid a ON a.unique_id = s.unique_id_l "
            f"JOIN {tag}_cid b ON b.unique_id = s.unique_id_r "
            f"JOIN {work} wa ON wa.unique_id = s.unique_id_l "
            f"JOIN {work} wb ON wb.unique_id = s.unique_id_r "
            f"ORDER BY s.match_probability DESC, s.unique_id_l, s.unique_id_r"
        ).to_arrow_table()
        merged = pc.equal(pairs["decision"], "merge")
        over_col = pairs["over_threshold"]
        n_kept_apart = pc.sum(pc.and_(over_col, pc.invert(merged))).as_py() or 0
        n_joined = pc.sum(pc.and_(pc.invert(over_col), merged)).as_py() or 0
        pairs = pairs.drop_columns(["over_threshold"]).cast(PAIRS_SCHEMA)
        timings["clustering"] = time.perf_counter() - t
        cpu["clustering"] = time.process_time() - c

        sizes = np.bincount(labels_out, minlength=max(n_records, 1))
        n_merge = pc.sum(merged).as_py() or 0
        stats = {
            "records": n_records,
            "fields": [f"{f.column}:{f.kind}" for f in fields],
            "candidate_pairs": n_candidates,
            "candidate_pairs_per_key": per_key,
            "scored_pairs": int(pairs.num_rows),
            "merge_pairs": n_merge,
            "review_pairs": int(pairs.num_rows) - n_merge,
            "over_auto_merge_pairs": merge_count,
            "over_auto_merge_kept_apart": n_kept_apart,
            "under_auto_merge_joined": n_joined,
            "vetoed_pairs": pc.sum(pc.is_valid(pairs["vetoed_by"])).as_py() or 0,
            "clusters": int((sizes > 0).sum()),
            "largest_cluster": int(sizes.max()) if n_records else 0,
            "junk_values": junk,
            "guards": guard_stats,
            **cluster_stats,
            **train_stats,
            "labels_used": n_labels,
            "calibration": {"a": cal.a, "b": cal.b},
            "model": model_description(linker) if linker is not None else {},
            "seconds": {k: round(v, 3) for k, v in timings.items()},
        }
        stats["seconds"]["total"] = round(time.perf_counter() - t_start, 3)
        # CPU time of the whole process (all DuckDB threads): a figure that other load
        # on the machine does not inflate.
        stats["cpu_seconds"] = {k: round(v, 3) for k, v in cpu.items()}
        stats["cpu_seconds"]["total"] = round(time.process_time() - c_start, 3)
        return MatchResult(pairs=pairs, clusters=clusters, stats=stats)
    finally:
        if linker is not None:
            linker.table_management.delete_tables_created_by_splink_from_db()
        for name in tables:
            con.execute(f"DROP TABLE IF EXISTS {name}")
        for name in views:
            con.unregister(name)


# The comparison level that a guard's disagreement corresponds to: its trained m says how
# often one person's own records disagree that way.
_GUARD_LEVELS = {"first_name": ("name", "same last name, other first name")}


def guard_conditions(
    config: MatchConfig, fields: list[Field], linker=None
) -> tuple[list[tuple[str, str]], dict]:
    """(name, SQL condition over records a and b) of each guard that applies, and per
    guard its m and whether it is active.

    A guard is active only where the trained model says that one person's records
    disagree that way rarely (m of the matching level below `config.guard_max_m`): on
    data whose errors replace whole first names or dates (FEBRL, the historical persons)
    such a disagreement is no sign of two people.
    """
    by_name = {c.output_column_name: c for c in linker._settings_obj.comparisons} if linker else {}
    out, stats = [], {}
    for name in config.guards:
        if name == "first_name" and any(f.kind == "name" for f in fields):
            cond = first_name_conflict_sql("a", "b")
            comparison, label = _GUARD_LEVELS[name]
        elif any(f.column == name and f.kind == "date" for f in fields):
            cond = date_conflict_sql(name, "a", "b")
            comparison, label = name, "different"
        else:
            continue
        c = by_name.get(comparison)
        level = next(
            (lv for lv in (c.comparison_levels if c else []) if lv.label_for_charts == label), None
        )
        m = level.m_probability if level is not None else None
        active = m is None or m < config.guard_max_m
        stats[name] = {"m": None if m is None else round(float(m), 6), "active": active}
        if active:
            out.append((name, cond))
    return out, stats


def _guard_pairs(
    con: duckdb.DuckDBPyConnection,
    work: str,
    candidates: str,
    components: str,
    guards: list[tuple[str, str]],
) -> dict:
    """Candidate pairs inside one component (table `components`: unique_id, c) that a
    guard forbids, as numpy arrays l, r.

    The pairs are materialised first, each record as a struct named like its table alias
    (so that the guards' conditions read the same): otherwise DuckDB may push the
    condition into a join of every record with every other.
    """
    conds = " OR ".join(f"({cond})" for _, cond in guards)
    cols = ["first_name", "last_name", "first_name_forms"]
    cols += [c for name, _ in guards if name != "first_name" for c in (name, name + "_date")]

    def pack(t: str) -> str:
        fields_sql = ", ".join(f"{quote(c)} := {t}.{quote(c)}" for c in cols)
        return f"struct_pack({fields_sql}) AS {t}"

    return con.execute(
        f"WITH inside AS MATERIALIZED (SELECT c.join_key_l AS l, c.join_key_r AS r "
        f"FROM {candidates} c JOIN {components} x ON x.unique_id = c.join_key_l "
        f"JOIN {components} y ON y.unique_id = c.join_key_r WHERE x.c = y.c), "
        f"p AS MATERIALIZED (SELECT i.l, i.r, {pack('a')}, {pack('b')} FROM inside i "
        f"JOIN {work} a ON a.unique_id = i.l JOIN {work} b ON b.unique_id = i.r) "
        f"SELECT l, r FROM p WHERE {conds}"
    ).fetchnumpy()


def _cluster(
    con: duckdb.DuckDBPyConnection,
    work: str,
    scored: str,
    strong: list[str],
    config: MatchConfig,
    candidates: str | None = None,
    guards: list[tuple[str, str]] | None = None,
) -> tuple[np.ndarray, int, dict]:
    """Cluster label per record (index order), number of merge edges, counters."""
    n = con.execute(f"SELECT count(*) FROM {work}").fetchall()[0][0]
    merge_cond = f"match_probability >= {config.auto_merge!r} AND vetoed_by IS NULL"
    edges = con.execute(
        f"SELECT unique_id_l AS l, unique_id_r AS r, match_probability AS p, "
        f"({merge_cond}) AS merge, vetoed_by IS NULL AS support FROM {scored}"
    ).fetchnumpy()
    codes = []
    if strong:
        cols = ", ".join(
            f"coalesce(CAST(dense_rank() OVER (ORDER BY {quote(s)}) AS BIGINT) - 1 "
            f"+ CASE WHEN {quote(s)} IS NULL THEN NULL ELSE 0 END, -1) AS s{j}"
            for j, s in enumerate(strong)
        )
        values = con.execute(f"SELECT {cols} FROM {work} ORDER BY unique_id").fetchnumpy()
        codes = [np.asarray(values[f"s{j}"], dtype=np.int64) for j in range(len(strong))]
    merge = np.asarray(edges["merge"], dtype=bool)
    support = np.asarray(edges["support"], dtype=bool)
    el = np.asarray(edges["l"], dtype=np.int64)
    er = np.asarray(edges["r"], dtype=np.int64)
    ep = np.asarray(edges["p"], dtype=np.float64)
    cannot_l = cannot_r = None
    if guards and candidates is not None and merge.any():
        # Candidate pairs a guard forbids, scored or not, keep their records apart. Only
        # pairs inside one component of merge pairs (of three records or more) matter:
        # the components are found first, and only their pairs are checked.
        comp = connected_components(int(n), el[merge], er[merge])
        size = np.bincount(comp, minlength=int(n))
        big = size[comp] > 2
        tag = scored + "_comp"
        con.register(
            tag,
            pa.table(
                {
                    "unique_id": pa.array(np.flatnonzero(big), pa.int64()),
                    "c": pa.array(comp[big], pa.int64()),
                }
            ),
        )
        try:
            cannot = _guard_pairs(con, work, candidates, tag, guards)
        finally:
            con.unregister(tag)
        cannot_l = np.asarray(cannot["l"], dtype=np.int64)
        cannot_r = np.asarray(cannot["r"], dtype=np.int64)
    labels, stats = cluster(
        ClusterInput(
            n=int(n),
            merge_l=el[merge],
            merge_r=er[merge],
            merge_p=ep[merge],
            support_l=el[support],
            support_r=er[support],
            strong=codes,
            cannot_l=cannot_l,
            cannot_r=cannot_r,
        ),
        max_cluster_size=config.max_cluster_size,
        min_link_density=config.min_link_density,
    )
    stats["cannot_link_pairs"] = 0 if cannot_l is None else int(len(cannot_l))
    return labels, int(merge.sum()), stats
