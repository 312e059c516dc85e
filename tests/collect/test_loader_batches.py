"""Loading several landing segments in one transaction stores exactly what loading them
one by one would: the same events, the same seq, the same landed counts."""

from __future__ import annotations

import random
import shutil
from datetime import datetime
from pathlib import Path

import pytest

from onefold.collect.landing import segment_path
from onefold.collect.loader import load_segment, load_segments
from onefold.collect.messages import Envelope, land_message
from onefold.store import Warehouse


def _write_segments(directory: Path, seed: int, duplicates: bool) -> None:
    rng = random.Random(seed)
    directory.mkdir()
    counter = 0
    for number in range(10):
        if rng.random() < 0.2:
            counter = rng.randint(0, 30)  # a restart: the record counter starts over
        records = []
        for k in range(rng.randint(0, 30)):
            envelope = Envelope(
                rng.choice(["src_a", "src_b"]), f"r{number}-{k}", "POST /v1/batch",
                datetime(2025, 1, 1, 12, 0, k),
            )  # fmt: skip
            message_id = f"m{rng.randint(0, 80)}" if duplicates else f"m{number}-{k}"
            message = {"type": "track", "event": "E", "userId": f"u{k}", "messageId": message_id}
            records.append(land_message(message, envelope, counter))
            counter += 1
        rng.shuffle(records)  # file order need not be counter order
        segment_path(directory, number).write_bytes(b"".join(records))


def _load(directory: Path, database: Path, batches: list[int] | None) -> tuple:
    warehouse = Warehouse(database)
    paths = sorted(directory.glob("*.ndjson"))
    if batches is None:
        results = [load_segment(warehouse, path) for path in paths]
    else:
        results, start = [], 0
        for size in batches:
            results += load_segments(warehouse, paths[start : start + size])
            start += size
        again = load_segments(warehouse, paths)
        assert all(r.messages == 0 and r.stored == 0 for r in again)
    con = warehouse.cursor()
    events = con.execute("SELECT * FROM events ORDER BY seq").fetchall()
    landed = con.execute(
        "SELECT segment, messages, stored FROM landed_segments ORDER BY segment"
    ).fetchall()
    keys = con.execute("SELECT count(*) FROM message_keys").fetchone()[0]
    warehouse.close()
    return [(r.segment, r.messages, r.stored) for r in results], events, landed, keys


@pytest.mark.parametrize("duplicates", [True, False])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batched_loads_store_what_one_by_one_loads_store(tmp_path, seed, duplicates):
    _write_segments(tmp_path / "segments", seed, duplicates)
    shutil.copytree(tmp_path / "segments", tmp_path / "copy")
    one_by_one = _load(tmp_path / "segments", tmp_path / "a.duckdb", None)
    batched = _load(tmp_path / "copy", tmp_path / "b.duckdb", [3, 1, 4, 2])
    assert batched == one_by_one
    results, events, _, _ = one_by_one
    assert sum(stored for _, _, stored in results) == len(events)
    if duplicates:
        assert len(events) < sum(messages for _, messages, _ in results)


def test_a_message_stored_before_is_skipped_and_the_rest_of_its_load_is_kept(tmp_path):
    """Loads take their messages as new and fall back to skipping stored ones when one
    comes again (a retried batch): the segment's other messages are all stored, once."""
    directory = tmp_path / "segments"
    directory.mkdir()

    def segment(number: int, message_ids: list[str]) -> Path:
        envelope = Envelope("src_a", f"r{number}", "POST /v1/batch", datetime(2025, 1, 1))
        records = [
            land_message({"type": "track", "event": "E", "userId": "u", "messageId": m},
                         envelope, k)
            for k, m in enumerate(message_ids)
        ]  # fmt: skip
        path = segment_path(directory, number)
        path.write_bytes(b"".join(records))
        return path

    warehouse = Warehouse(tmp_path / "w.duckdb")
    try:
        first = load_segments(warehouse, [segment(0, ["m1", "m2"])])
        again = load_segments(warehouse, [segment(1, ["m3", "m2", "m4", "m3"])])
        assert [(r.messages, r.stored) for r in first + again] == [(2, 2), (4, 2)]
        con = warehouse.cursor()
        stored = con.execute("SELECT message_id FROM events ORDER BY seq").fetchall()
        assert [row[0] for row in stored] == ["m1", "m2", "m3", "m4"]
        assert con.execute("SELECT count(*) FROM message_keys").fetchall() == [(4,)]
    finally:
        warehouse.close()
