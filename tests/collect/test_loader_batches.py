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
