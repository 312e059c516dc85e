"""Which identifiers each message carries, normalised, as the resolver needs them.

Extraction is one set-based query over a range of events: every path of every namespace is
read (``userId`` and friends from their typed columns, the rest from the raw JSON), values
are trimmed and normalised in SQL, and blocked values are set aside. Phone numbers are
normalised to E.164 with ``phonenumbers``, once per distinct (value, region), using the
region of the message's ``context.locale`` when it has one.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import duckdb
import phonenumbers
import pyarrow as pa

from onefold.unify.resolver import Key, Message
from onefold.unify.rules import IdentityRules

_TYPED = {"userId": "user_id", "anonymousId": "anonymous_id", "previousId": "previous_id",
          "groupId": "group_id"}  # fmt: skip
# Anchored with \A and \z and matched with regexp_matches (RLIKE on Spark), which DuckDB's RE2
# and Java's regex read alike; ``$`` would also match before a final newline in Java, and
# Java's \s also holds the vertical tab, so it is named explicitly for both.
_EMAIL = r"\A[^@\s\x0B]+@[^@\s\x0B]+\.[^@\s\x0B]+\z"


def _value_sql(path: str) -> str:
    if path in _TYPED:
        return _TYPED[path]
    return f"json_extract_string(raw, '$.{path}')"


def extraction_sql(rules: IdentityRules, where: str = "seq > $after AND seq <= $upto") -> str:
    """One row per (event, namespace, value) for the events ``where`` selects (by default
    those with ``$after < seq <= $upto``).

    Each path is read once per event (one JSON extraction each); every (namespace, path) of
    the rules then picks its value through a cross join with a small VALUES list, and
    normalises it. Written in DuckDB's dialect with only constructs SQLGlot transpiles to
    Spark (``json_extract_string`` → ``get_json_object``, ``regexp_matches`` → ``RLIKE``),
    so :mod:`onefold.unify.spark_stitch` runs the same query on Spark."""
    paths: list[str] = []
    picks: list[tuple[int, str, str]] = []  # (path column, namespace, normaliser)
    for namespace in rules.ordered():
        rule = rules.namespaces[namespace]
        for path in rule.paths:
            if path not in paths:
                paths.append(path)
            picks.append((paths.index(path), namespace, rule.normalise))
    if not picks:
        return """
            SELECT seq, message_id, source_id, CAST(NULL AS VARCHAR) AS locale,
                   CAST(NULL AS VARCHAR) AS namespace, CAST(NULL AS VARCHAR) AS value
            FROM events WHERE FALSE
        """
    columns = "".join(f", {_value_sql(path)} AS p{i}" for i, path in enumerate(paths))
    pick = " ".join(f"WHEN {n} THEN b.p{column}" for n, (column, _, _) in enumerate(picks))
    rows = ", ".join(f"({n}, '{ns}', '{norm}')" for n, (_, ns, norm) in enumerate(picks))
    return f"""
        WITH batch AS (
            SELECT seq, message_id, source_id,
                   json_extract_string(raw, '$.context.locale') AS locale{columns}
            FROM events WHERE {where}
        ),
        picked AS (
            SELECT b.seq, b.message_id, b.source_id, b.locale, k.namespace, k.normalise,
                   nullif(trim(CAST(CASE k.pick {pick} END AS VARCHAR)), '') AS v
            FROM batch b CROSS JOIN (VALUES {rows}) AS k(pick, namespace, normalise)
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
) -> Extracted:
    rows = con.execute(extraction_sql(rules), {"after": after, "upto": upto}).fetchall()
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
