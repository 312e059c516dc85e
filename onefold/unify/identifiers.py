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
_EMAIL = r"[^@\s]+@[^@\s]+\.[^@\s]+"


def _value_sql(path: str) -> str:
    if path in _TYPED:
        return _TYPED[path]
    return f"json_extract_string(raw, '$.{path}')"


def _normalised_sql(expression: str, normaliser: str) -> str:
    trimmed = f"nullif(trim(CAST({expression} AS VARCHAR)), '')"
    if normaliser == "lower":
        return f"lower({trimmed})"
    if normaliser == "email":
        email = f"lower({trimmed})"
        return f"CASE WHEN regexp_full_match({email}, '{_EMAIL}') THEN {email} END"
    return trimmed


def extraction_sql(rules: IdentityRules, where: str = "seq > $after AND seq <= $upto") -> str:
    """One row per (event, namespace, value) for the events ``where`` selects (by default
    those with ``$after < seq <= $upto``)."""
    selects = []
    for namespace in rules.ordered():
        rule = rules.namespaces[namespace]
        for path in rule.paths:
            value = _normalised_sql(_value_sql(path), rule.normalise)
            selects.append(
                f"SELECT seq, message_id, source_id, locale, '{namespace}' AS namespace, "
                f"{value} AS value FROM batch"
            )
    union = "\nUNION ALL\n".join(selects)
    return f"""
        WITH batch AS (
            SELECT seq, message_id, source_id, raw,
                   json_extract_string(raw, '$.context.locale') AS locale,
                   user_id, anonymous_id, previous_id, group_id
            FROM events WHERE {where}
        )
        SELECT DISTINCT seq, message_id, source_id, locale, namespace, value
        FROM ({union}) WHERE value IS NOT NULL
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


def group_messages(
    rows: list[tuple], rules: IdentityRules, blocked_keys: frozenset[Key] = frozenset()
) -> Extracted:
    """Rows of (seq, message_id, source_id, locale, namespace, value), in seq order, as
    messages with their identifiers strongest first."""
    phone_namespaces = {n for n, r in rules.namespaces.items() if r.normalise == "phone"}
    priority = {n: r.priority for n, r in rules.namespaces.items()}
    blocked_any = {v.lower() for v in rules.blocked}
    blocked_ns = {n: {v.lower() for v in r.blocked} for n, r in rules.namespaces.items()}
    phones: dict[tuple[str, str], str | None] = {}
    per_message: dict[int, tuple[str, str, set[Key]]] = {}
    blocked: dict[Key, tuple[int, int]] = defaultdict(lambda: (0, 0))
    for seq, message_id, source_id, locale, namespace, value in rows:
        entry = per_message.get(seq)
        if entry is None:
            entry = per_message[seq] = (message_id, source_id, set())
        if namespace in phone_namespaces:
            region = _region(locale, rules.default_region)
            cached = (value, region)
            if cached not in phones:
                phones[cached] = normalise_phone(value, region)
            value = phones[cached]
            if value is None:
                continue
        lowered = value.lower()
        if (
            lowered in blocked_any
            or lowered in blocked_ns[namespace]
            or (namespace, value) in blocked_keys
        ):
            count, _ = blocked[(namespace, value)]
            blocked[(namespace, value)] = (count + 1, seq)
            continue
        entry[2].add((namespace, value))
    messages = [
        Message(seq, message_id, source_id,
                tuple(sorted(keys, key=lambda k: (priority[k[0]], k[1]))))
        for seq, (message_id, source_id, keys) in per_message.items()
        if keys
    ]  # fmt: skip
    last = max(per_message) if per_message else None
    return Extracted(messages, dict(blocked), last)


def keys_table(keys: set[Key]) -> pa.Table:
    namespaces, values = zip(*keys, strict=True) if keys else ((), ())
    schema = pa.schema([("namespace", pa.string()), ("value", pa.string())])
    return pa.table({"namespace": list(namespaces), "value": list(values)}, schema=schema)
