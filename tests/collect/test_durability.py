"""Acknowledged means stored: retries, restarts and SIGKILL under load."""

from __future__ import annotations

import random
import threading
import time
import uuid

import httpx
import orjson
import pytest

from tests.server import Server


def _batch(prefix: str, n: int) -> tuple[list[str], bytes]:
    ids = [f"{prefix}-{i}" for i in range(n)]
    batch = [
        {"type": "track", "userId": f"u{i % 7}", "event": "Product Viewed", "messageId": mid,
         "properties": {"product_id": f"p{i}", "price": 9.99}}
        for i, mid in enumerate(ids)
    ]  # fmt: skip
    return ids, orjson.dumps({"batch": batch})


def test_same_message_id_is_stored_once_also_across_a_restart(fresh_server: Server):
    source = fresh_server.create_source("web", "web")
    key = source["write_key"]
    message = {"userId": "u", "event": "Order Completed", "messageId": "retry-1"}
    for _ in range(3):
        response = httpx.post(fresh_server.url + "/v1/track", json=message, auth=(key, ""))
        assert response.status_code == 200
    assert len(fresh_server.events(message_id="retry-1")) == 1
    fresh_server.restart()
    response = httpx.post(fresh_server.url + "/v1/track", json=message, auth=(key, ""))
    assert response.status_code == 200
    other_source = fresh_server.create_source("app", "app")
    response = httpx.post(
        fresh_server.url + "/v1/track", json=message, auth=(other_source["write_key"], "")
    )
    assert response.status_code == 200
    stored = fresh_server.events(message_id="retry-1")
    assert sorted(e["source_id"] for e in stored) == sorted([source["id"], other_source["id"]])


def test_acknowledged_messages_survive_an_unloaded_restart(fresh_server: Server):
    """Messages acknowledged but not yet loaded into the warehouse are loaded after a
    restart: they were durable in the landing log."""
    key = fresh_server.create_source("web", "web")["write_key"]
    ids, body = _batch("early", 50)
    assert httpx.post(fresh_server.url + "/v1/batch", content=body, auth=(key, "")).is_success
    fresh_server.kill()
    fresh_server.start()
    stored = fresh_server.events(source="web")
    assert sorted(e["message_id"] for e in stored) == sorted(ids)


@pytest.mark.slow
def test_sigkill_under_concurrent_load_loses_no_acknowledged_message(fresh_server: Server):
    key = fresh_server.create_source("web", "web")["write_key"]
    acked: list[str] = []
    lock = threading.Lock()
    rng = random.Random()

    def client(worker: int, stop: threading.Event) -> None:
        with httpx.Client(auth=(key, ""), timeout=5) as http:
            n = 0
            while not stop.is_set():
                ids, body = _batch(f"w{worker}-{uuid.uuid4().hex[:8]}-{n}", 50)
                n += 1
                try:
                    response = http.post(fresh_server.url + "/v1/batch", content=body)
                except httpx.HTTPError:
                    time.sleep(0.01)
                    continue
                if response.status_code == 200:
                    with lock:
                        acked.extend(ids)

    for _round in range(3):
        stop = threading.Event()
        threads = [threading.Thread(target=client, args=(w, stop)) for w in range(6)]
        for thread in threads:
            thread.start()
        time.sleep(rng.uniform(0.5, 2.0))
        fresh_server.kill()
        stop.set()
        for thread in threads:
            thread.join()
        fresh_server.start()

    assert len(acked) > 1000
    stored = [e["message_id"] for e in fresh_server.events(source="web")]
    assert len(stored) == len(set(stored)), "a message was stored twice"
    missing = set(acked) - set(stored)
    assert not missing, f"{len(missing)} acknowledged messages lost"
