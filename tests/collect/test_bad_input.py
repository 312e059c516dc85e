"""Hostile and broken requests get their documented answer; the server keeps serving and
stored data stays intact."""

from __future__ import annotations

import gzip

import httpx
import orjson
import pytest

from tests.server import Server


def _post(server: Server, path: str, content: bytes, key: str | None, **headers: str):
    return httpx.post(
        server.url + path, content=content, auth=(key, "") if key else None,
        headers=headers, timeout=30,
    )  # fmt: skip


def _track(i: int = 0) -> dict:
    return {"type": "track", "userId": "u", "event": "E", "messageId": f"m{i}"}


BOMB = gzip.compress(b'{"batch": [' + b" " * (50 * 1024 * 1024) + b"]}", compresslevel=9)
CASES = {
    "malformed json": ("/v1/batch", b'{"batch": [', {}, 400, "invalid_json"),
    "empty body": ("/v1/track", b"", {}, 400, "invalid_json"),
    "batch not a list": ("/v1/batch", b'{"batch": {"a": 1}}', {}, 400, "invalid_batch"),
    "body is a list": ("/v1/batch", b"[1, 2]", {}, 400, "invalid_batch"),
    "invalid utf-8": ("/v1/track", b'{"userId": "\xff\xfe", "event": "E"}', {}, 400,
                      "invalid_json"),
    "deeply nested": ("/v1/track", b'{"userId": "u", "event": "E", "properties": '
                      + b"[" * 5000 + b"]" * 5000 + b"}", {}, 400, "invalid_json"),
    "oversize message": ("/v1/track", orjson.dumps(
        {"userId": "u", "event": "E", "properties": {"blob": "x" * 40_000}}), {}, 413,
        "payload_too_large"),
    "oversize message in batch": ("/v1/batch", orjson.dumps({"batch": [
        {**_track(), "properties": {"blob": "x" * 40_000}}]}), {}, 413, "message_too_large"),
    "oversize batch": ("/v1/batch", orjson.dumps(
        {"batch": [{**_track(i), "properties": {"b": "x" * 20_000}} for i in range(30)]}), {},
        413, "payload_too_large"),
    "too many messages": ("/v1/import", orjson.dumps({"batch": [_track(i) for i in range(2501)]}),
                          {}, 413, "batch_too_large"),
    "gzip bomb": ("/v1/batch", BOMB, {"Content-Encoding": "gzip"}, 413, "payload_too_large"),
    "truncated gzip": ("/v1/batch", gzip.compress(b'{"batch": []}')[:-6],
                       {"Content-Encoding": "gzip"}, 400, "invalid_encoding"),
    "not gzip at all": ("/v1/batch", b'{"batch": []}', {"Content-Encoding": "gzip"}, 400,
                        "invalid_encoding"),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_bad_requests_get_their_documented_answer(server: Server, source, case):
    key = source["write_key"]
    good = {"userId": "u", "event": "Before", "messageId": "before"}
    assert _post(server, "/v1/track", orjson.dumps(good), key).status_code == 200

    path, body, headers, status, code = CASES[case]
    response = _post(server, path, body, key, **headers)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert response.json()["message"]

    after = {"userId": "u", "event": "After", "messageId": "after"}
    assert _post(server, "/v1/track", orjson.dumps(after), key).status_code == 200
    stored = server.events(source=source["name"])
    assert sorted(e["message_id"] for e in stored) == ["after", "before"]


def test_rudderstack_bulk_route_takes_batches_over_the_segment_limit(server: Server, source):
    batch = [{**_track(i), "properties": {"b": "x" * 20_000}} for i in range(60)]  # ~1.2 MB
    body = orjson.dumps({"batch": batch})
    assert _post(server, "/v1/batch", body, source["write_key"]).status_code == 413
    assert _post(server, "/v1/import", body, source["write_key"]).status_code == 200
    assert len(server.events(source=source["name"])) == 60


def test_limits_are_configurable(tmp_path):
    server = Server(tmp_path / "data", env={"ONEFOLD_LIMITS__MAX_MESSAGE_BYTES": "500"}).start()
    try:
        key = server.create_source("web")["write_key"]
        small = {"userId": "u", "event": "E"}
        big = {"userId": "u", "event": "E", "properties": {"x": "y" * 600}}
        assert _post(server, "/v1/track", orjson.dumps(small), key).status_code == 200
        response = _post(server, "/v1/track", orjson.dumps(big), key)
        assert response.status_code == 413
    finally:
        server.stop()


def test_backpressure_answers_429_with_retry_after(tmp_path):
    """With the landing backlog over its limit, clients are told to come back later
    instead of the server buffering without bound."""
    env = {
        "ONEFOLD_LANDING__MAX_BACKLOG_BYTES": "2000",
        "ONEFOLD_LANDING__SEGMENT_MAX_AGE_MS": "600000",
    }
    server = Server(tmp_path / "data", env=env).start()
    try:
        key = server.create_source("web")["write_key"]
        body = orjson.dumps({"batch": [_track(i) for i in range(10)]})
        statuses = [_post(server, "/v1/batch", body, key).status_code for _ in range(3)]
        assert statuses[0] == 200
        assert 429 in statuses
        response = _post(server, "/v1/batch", body, key)
        assert response.status_code == 429
        assert response.headers["retry-after"] == "1"
        assert response.json()["code"] == "overloaded"
        server.flush()
        assert _post(server, "/v1/batch", orjson.dumps({"batch": [_track(99)]}), key).is_success
    finally:
        server.stop()
