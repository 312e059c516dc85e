"""Reading stored messages back: the event debugger's query, newest first, paged by
``seq`` (a keyset cursor, so paging stays fast and stable while new events land)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import orjson

from onefold.store import Warehouse


@dataclass(frozen=True)
class EventFilter:
    source_id: str | None = None
    type: str | None = None
    event: str | None = None
    user_id: str | None = None
    anonymous_id: str | None = None
    message_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


_COLUMNS = (
    "seq", "source_id", "message_id", "type", "event", "user_id", "anonymous_id",
    "group_id", "previous_id", "timestamp", "original_timestamp", "sent_at", "received_at",
    "request_id", "origin", "raw", "batch",
)  # fmt: skip


def list_events(
    warehouse: Warehouse, where: EventFilter, limit: int = 50, before: int | None = None
) -> tuple[list[dict], int | None]:
    """One page of events and the cursor for the next page (None at the end).

    ``since``/``until`` bound the event's ``timestamp`` (inclusive, exclusive).
    """
    clauses = []
    params: list[object] = []
    for column in ("source_id", "type", "event", "user_id", "anonymous_id", "message_id"):
        value = getattr(where, column)
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if where.since is not None:
        clauses.append('"timestamp" >= ?')
        params.append(where.since)
    if where.until is not None:
        clauses.append('"timestamp" < ?')
        params.append(where.until)
    if before is not None:
        clauses.append("seq < ?")
        params.append(before)
    sql = "SELECT " + ", ".join(f'"{c}"' for c in _COLUMNS) + " FROM events"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += " ORDER BY seq DESC LIMIT ?"
    params.append(limit + 1)
    rows = warehouse.cursor().execute(sql, params).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    events = []
    for row in rows:
        item = dict(zip(_COLUMNS, row, strict=True))
        item["raw"] = orjson.loads(item["raw"])
        item["batch"] = orjson.loads(item["batch"]) if item["batch"] else None
        events.append(item)
    return events, (rows[-1][0] if more else None)


def count_events(warehouse: Warehouse) -> int:
    return warehouse.cursor().execute("SELECT count(*) FROM events").fetchall()[0][0]
