"""Which identifiers each message carries, normalised, as the resolver needs them.

Extraction is one set-based query over a range of events: every path of every namespace is
read (``userId`` and friends from their typed columns, the rest from the raw JSON), values
are trimmed and normalised in SQL, and blocked values are set aside. Phone numbers are
normalised to E.164 with ``phonenumbers``, once per distinct (value, region), using the
region of the message's ``context.locale`` when it has one.

Two sources beyond the namespaces' paths:

- **The batch envelope.** A batch's top-level ``context`` (and ``integrations``) apply to
  each of its messages; they are stored once per message in ``events.batch``. A path under
  them reads the message's own value and, when the message has none (missing or null), the
  batch's: the message wins, field by field.
- **RudderStack merge calls.** Each entry of a ``merge`` message's ``mergeProperties``
  (``{"type": "email", "value": "..."}``) is an identifier of the namespace its type names
  (:func:`merge_namespaces`), normalised and ruled like any other; so the resolver links
  them with the message's own ``userId``/``anonymousId``. Entries of types no namespace
  takes are ignored (:func:`ignored_merge_properties` counts them).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import duckdb
import phonenumbers
import pyarrow as pa

from onefold.store.json_paths import extract_once
from onefold.unify.resolver import Key, Message
from onefold.unify.rules import IdentityRules

_TYPED = {"userId": "user_id", "anonymousId": "anonymous_id", "previousId": "previous_id",
          "groupId": "group_id"}  # fmt: skip
# Anchored with \A and \z and matched with regexp_matches (RLIKE on Spark), which DuckDB's RE2
# and Java's regex read alike; ``$`` would also match before a final newline in Java, and
# Java's \s also holds the vertical tab, so it is named explicitly for both.
_EMAIL = r"\A[^@\s\x0B]+@[^@\s\x0B]+\.[^@\s\x0B]+\z"


# Fields a batch envelope may give all its messages (``events.batch``).
_BATCH_FIELDS = ("context", "integrations")
# The entries of a merge call's mergeProperties that are read (RudderStack sends two).
MAX_MERGE_PROPERTIES = 10
# RudderStack's names for identifier types, lower-cased, beyond the namespaces' own names.
MERGE_TYPE_ALIASES = {"userid": "user_id", "anonymousid": "anonymous_id", "mobile": "phone"}


def _value_sql(path: str) -> str:
    """One path of a message as text: a typed column, the raw JSON, or for a path under the
    batch envelope's fields the message's value, else (missing or null) the batch's."""
    if path in _TYPED:
        return _TYPED[path]
    own = f"json_extract_string(raw, '$.{path}')"
    if path.split(".", 1)[0] in _BATCH_FIELDS:
        return f"coalesce({own}, json_extract_string(batch, '$.{path}'))"
    return own


def merge_namespaces(rules: IdentityRules) -> dict[str, str]:
    """Which namespace each ``mergeProperties`` type (trimmed, lower-cased) names: every
    namespace its own name (``email``, ``phone``, ``user_id``, ``anonymous_id``, custom
    ones), and RudderStack's ``userId``, ``anonymousId`` and ``mobile`` their namespaces
    when the rules have them and no namespace has that name itself."""
    mapping = {alias: ns for alias, ns in MERGE_TYPE_ALIASES.items() if ns in rules.namespaces}
    mapping.update((name, name) for name in rules.namespaces)
    return mapping


def _merge_sql(rules: IdentityRules, where: str) -> str:
    """(seq, message_id, source_id, locale, namespace, normalise, v) of the mergeProperties
    entries of the merge calls ``where`` selects whose type names a namespace."""
    n = MAX_MERGE_PROPERTIES
    fields = "".join(
        f", json_extract_string(raw, '$.mergeProperties[{i}].type') AS t{i}"
        f", json_extract_string(raw, '$.mergeProperties[{i}].value') AS v{i}"
        for i in range(n)
    )
    kind = " ".join(f"WHEN {i} THEN m.t{i}" for i in range(n))
    value = " ".join(f"WHEN {i} THEN m.v{i}" for i in range(n))
    positions = ", ".join(f"({i})" for i in range(n))
    normalise = {name: rule.normalise for name, rule in rules.namespaces.items()}
    types = ", ".join(
        f"('{alias}', '{ns}', '{normalise[ns]}')"
        for alias, ns in sorted(merge_namespaces(rules).items())
    )
    return f"""
            SELECT e.seq, e.message_id, e.source_id, e.locale, t.namespace, t.normalise, e.v
            FROM (
                SELECT m.seq, m.message_id, m.source_id, m.locale,
                       lower(trim(CASE i.slot {kind} END)) AS kind,
                       CAST(CASE i.slot {value} END AS VARCHAR) AS v
                FROM (
                    SELECT seq, message_id, source_id, {_LOCALE} AS locale{fields}
                    FROM events WHERE ({where}) AND type = 'merge'
                ) m CROSS JOIN (VALUES {positions}) AS i(slot)
            ) e JOIN (VALUES {types}) AS t(kind, namespace, normalise) ON t.kind = e.kind
    """


_LOCALE = _value_sql("context.locale")


def _values_parsed_once(paths: list[str]) -> tuple[str, dict[str, str]]:
    """:func:`_value_sql` for several paths with each JSON column parsed once per event
    (:func:`onefold.store.json_paths.extract_once`): the columns to add to a ``SELECT *``
    of the events, and each path's expression over them."""
    in_json = [path for path in paths if path not in _TYPED]
    in_batch = [path for path in in_json if path.split(".", 1)[0] in _BATCH_FIELDS]
    columns = ""
    values = dict(_TYPED)
    if in_json:
        item, own = extract_once("raw", in_json, "raw_values")
        columns += f", {item}"
        values.update(zip(in_json, own, strict=True))
    if in_batch:
        item, shared = extract_once("batch", in_batch, "batch_values")
        columns += f", {item}"
        for path, fallback in zip(in_batch, shared, strict=True):
            values[path] = f"coalesce({values[path]}, {fallback})"
    return columns, {path: values[path] for path in paths}


def extraction_sql(
    rules: IdentityRules,
    where: str = "seq > $after AND seq <= $upto",
    parse_once: bool = True,
    merges: bool = True,
) -> str:
    """One row per (event, namespace, value) for the events ``where`` selects (by default
    those with ``$after < seq <= $upto``).

    Each path is read once per event (one JSON extraction each, two under the batch
    envelope's fields); every (namespace, path) of the rules then picks its value through
    a cross join with a small VALUES list. The merge calls among the events add their
    ``mergeProperties`` entries (:func:`_merge_sql`). Every value is then normalised.
    Written in DuckDB's dialect with only constructs SQLGlot transpiles to Spark
    (``json_extract_string`` → ``get_json_object``, ``regexp_matches`` → ``RLIKE``,
    ``coalesce``, ``VALUES``, ``UNION ALL``), so :mod:`onefold.unify.spark_stitch` runs
    the same query on Spark, with ``parse_once`` off; on, the paths of each message are
    read with one parse of its JSON (:func:`_values_parsed_once`), in DuckDB only.
    Without ``merges`` the events are known to hold no merge call, and the query leaves
    that part out: DuckDB plans it at every call, which took as long as running the
    rest on a micro-batch of a few hundred events."""
    paths: list[str] = []
    picks: list[tuple[int, str, str]] = []  # (path column, namespace, normaliser)
    for namespace in rules.ordered():
        rule = rules.namespaces[namespace]
        for path in rule.paths:
            if path not in paths:
                paths.append(path)
            picks.append((paths.index(path), namespace, rule.normalise))
    if not rules.namespaces or not (picks or merges):
        return """
            SELECT seq, message_id, source_id, CAST(NULL AS VARCHAR) AS locale,
                   CAST(NULL AS VARCHAR) AS namespace, CAST(NULL AS VARCHAR) AS value
            FROM events WHERE FALSE
        """
    merge_rows = _merge_sql(rules, where) if merges else None
    found = merge_rows
    if picks:
        if parse_once:
            parsed, values = _values_parsed_once(["context.locale", *paths])
            events = f"(SELECT *{parsed} FROM events WHERE {where})"
        else:
            values = {path: _value_sql(path) for path in ["context.locale", *paths]}
            events = f"events WHERE {where}"
        columns = "".join(f", {values[path]} AS p{i}" for i, path in enumerate(paths))
        pick = " ".join(f"WHEN {n} THEN b.p{column}" for n, (column, _, _) in enumerate(picks))
        rows = ", ".join(f"({n}, '{ns}', '{norm}')" for n, (_, ns, norm) in enumerate(picks))
        found = f"""
            SELECT b.seq, b.message_id, b.source_id, b.locale, k.namespace, k.normalise,
                   CAST(CASE k.pick {pick} END AS VARCHAR) AS v
            FROM (
                SELECT seq, message_id, source_id, {values["context.locale"]} AS locale{columns}
                FROM {events}
            ) b CROSS JOIN (VALUES {rows}) AS k(pick, namespace, normalise)
        """
        if merge_rows:
            found += f"UNION ALL {merge_rows}"
    return f"""
        WITH found AS ({found}),
        picked AS (
            SELECT seq, message_id, source_id, locale, namespace, normalise,
                   nullif(trim(v), '') AS v
            FROM found
        )
        SELECT DISTINCT seq, message_id, source_id, locale, namespace, value FROM (
            SELECT seq, message_id, source_id, locale, namespace,
                   CASE normalise
                       WHEN 'email' THEN
                           CASE WHEN regexp_matches(lower(v), '{_EMAIL}') THEN lower(v) END
                       WHEN 'lower' THEN lower(v)
                       ELSE v
                   END AS value
            FROM picked
        ) WHERE value IS NOT NULL
        ORDER BY seq
    """


def ignored_merge_properties(con: duckdb.DuckDBPyConnection, rules: IdentityRules) -> list[dict]:
    """The ``mergeProperties`` entries of stored merge calls that link nothing because no
    namespace takes their type (``unknown_type``) or they come after the first
    :data:`MAX_MERGE_PROPERTIES` (``beyond_limit``): per type and reason, how many and the
    last message's ``seq``, most frequent first."""
    known = pa.table({"kind": pa.array(sorted(merge_namespaces(rules)), pa.string())})
    con.register("merge_known_types", known)
    try:
        rows = con.execute(
            f"""
            SELECT kind AS type, reason, count(*) AS occurrences, max(seq) AS last_seq FROM (
                SELECT seq, lower(trim(json_extract_string(entry, '$.type'))) AS kind,
                       CASE WHEN position >= {MAX_MERGE_PROPERTIES} THEN 'beyond_limit'
                            ELSE 'unknown_type' END AS reason
                FROM (
                    SELECT seq, unnest(entries) AS entry,
                           unnest(range(len(entries))) AS position
                    FROM (
                        SELECT seq, CAST(raw -> '$.mergeProperties' AS JSON[]) AS entries
                        FROM events
                        WHERE type = 'merge'
                          AND json_type(raw -> '$.mergeProperties') = 'ARRAY'
                    )
                )
            )
            WHERE reason = 'beyond_limit'
               OR kind IS NULL OR kind NOT IN (SELECT kind FROM merge_known_types)
            GROUP BY ALL ORDER BY occurrences DESC, type, reason
            """
        )
        names = [d[0] for d in rows.description]
        return [dict(zip(names, row, strict=True)) for row in rows.fetchall()]
    finally:
        con.unregister("merge_known_types")


def _region(locale: str | None, default: str) -> str:
    if locale:
        parts = locale.replace("_", "-").split("-")
        if len(parts) >= 2 and len(parts[-1]) == 2 and parts[-1].isalpha():
            return parts[-1].upper()
    return default


def normalise_phone(value: str, region: str) -> str | None:
    """E.164, or None when the value is not a possible phone number."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@dataclass
class Extracted:
    messages: list[Message]
    blocked: dict[Key, tuple[int, int]]  # (occurrences, last seq)
    last_seq: int | None


def extract(
    con: duckdb.DuckDBPyConnection,
    rules: IdentityRules,
    after: int,
    upto: int,
    blocked_keys: frozenset[Key] = frozenset(),
    merges: bool = True,
) -> Extracted:
    """The identifiers of the events in ``(after, upto]``, by message; without
    ``merges``, the caller knows that none of them is a merge call."""
    sql = extraction_sql(rules, merges=merges)
    rows = con.execute(sql, {"after": after, "upto": upto}).fetchall()
    return group_messages(rows, rules, blocked_keys)


class KeyCleaner:
    """What follows the extraction query, one row at a time: phone numbers to E.164 (once
    per distinct value and region) and blocked values set aside. The DuckDB path and the
    Spark path (:mod:`onefold.unify.spark_stitch`) both clean rows with it."""

    def __init__(self, rules: IdentityRules, blocked_keys: frozenset[Key] = frozenset()):
        self.rules = rules
        self.blocked_keys = blocked_keys
        self.phone_namespaces = {n for n, r in rules.namespaces.items() if r.normalise == "phone"}
        self.priority = {n: r.priority for n, r in rules.namespaces.items()}
        self.blocked_any = {v.lower() for v in rules.blocked}
        self.blocked_ns = {n: {v.lower() for v in r.blocked} for n, r in rules.namespaces.items()}
        self._phones: dict[tuple[str, str], str | None] = {}

    def clean(self, namespace: str, value: str, locale: str | None) -> tuple[str | None, bool]:
        """(value, blocked): the value to link on, or None when it is no identifier (a
        phone number that is not possible); blocked when a rule or an override blocks it."""
        if namespace in self.phone_namespaces:
            region = _region(locale, self.rules.default_region)
            cached = (value, region)
            if cached not in self._phones:
                self._phones[cached] = normalise_phone(value, region)
            value = self._phones[cached]
            if value is None:
                return None, False
        lowered = value.lower()
        blocked = (
            lowered in self.blocked_any
            or lowered in self.blocked_ns[namespace]
            or (namespace, value) in self.blocked_keys
        )
        return value, blocked

    def strongest_first(self, keys: set[Key]) -> tuple[Key, ...]:
        return tuple(sorted(keys, key=lambda k: (self.priority[k[0]], k[1])))


def group_messages(
    rows: list[tuple], rules: IdentityRules, blocked_keys: frozenset[Key] = frozenset()
) -> Extracted:
    """Rows of (seq, message_id, source_id, locale, namespace, value), in seq order, as
    messages with their identifiers strongest first."""
    cleaner = KeyCleaner(rules, blocked_keys)
    per_message: dict[int, tuple[str, str, set[Key]]] = {}
    blocked: dict[Key, tuple[int, int]] = defaultdict(lambda: (0, 0))
    for seq, message_id, source_id, locale, namespace, raw_value in rows:
        entry = per_message.get(seq)
        if entry is None:
            entry = per_message[seq] = (message_id, source_id, set())
        value, is_blocked = cleaner.clean(namespace, raw_value, locale)
        if value is None:
            continue
        if is_blocked:
            count, _ = blocked[(namespace, value)]
            blocked[(namespace, value)] = (count + 1, seq)
            continue
        entry[2].add((namespace, value))
    messages = [
        Message(seq, message_id, source_id, cleaner.strongest_first(keys))
        for seq, (message_id, source_id, keys) in per_message.items()
        if keys
    ]
    last = max(per_message) if per_message else None
    return Extracted(messages, dict(blocked), last)


def keys_table(keys: set[Key]) -> pa.Table:
    namespaces, values = zip(*keys, strict=True) if keys else ((), ())
    schema = pa.schema([("namespace", pa.string()), ("value", pa.string())])
    return pa.table({"namespace": list(namespaces), "value": list(values)}, schema=schema)
