"""Later stages read new messages incrementally and exactly once, across restarts."""

from __future__ import annotations

import orjson
import pytest

from onefold.collect.cursor import EventCursor
from onefold.collect.ingest import prepare
from onefold.collect.messages import Envelope, now_utc
from onefold.runtime import Onefold
from onefold.settings import Settings


def _land(onefold: Onefold, source_id: str, ids: list[str]) -> None:
    envelope = Envelope(source_id, "req", "test", now_utc())
    messages = [{"type": "track", "userId": "u", "event": "E", "messageId": i} for i in ids]
    onefold.log.append_blocking(prepare(messages, envelope).data)
    onefold.flush()


def _collect_into(con, batch) -> None:
    con.execute("CREATE TABLE IF NOT EXISTS seen (message_id VARCHAR)")
    con.register("incoming", batch)
    con.execute("INSERT INTO seen SELECT message_id FROM incoming")
    con.unregister("incoming")


def test_cursor_reads_each_event_once_across_restarts(tmp_path):
    settings = Settings(data_dir=tmp_path, admin_token="t")
    onefold = Onefold(settings)
    source = onefold.sources.create("web", "web")
    _land(onefold, source.id, [f"a{i}" for i in range(10)])
    cursor = EventCursor(onefold.warehouse, "test")
    assert cursor.consume(_collect_into, limit=4) == 4
    assert cursor.consume(_collect_into) == 6
    assert cursor.consume(_collect_into) == 0

    def crash(con, batch) -> None:
        _collect_into(con, batch)
        raise RuntimeError("crash mid-batch")

    _land(onefold, source.id, ["b1", "b2", "a1"])  # a1 is a retry: not stored again
    with pytest.raises(RuntimeError):
        cursor.consume(crash)
    onefold.close()

    onefold = Onefold(settings)
    cursor = EventCursor(onefold.warehouse, "test")
    assert cursor.consume(_collect_into) == 2
    seen = onefold.warehouse.cursor().execute("SELECT message_id FROM seen").fetchall()
    assert sorted(r[0] for r in seen) == sorted([f"a{i}" for i in range(10)] + ["b1", "b2"])
    raw = onefold.warehouse.cursor().execute("SELECT raw FROM events LIMIT 1").fetchone()[0]
    assert orjson.loads(raw)["type"] == "track"
    onefold.close()
