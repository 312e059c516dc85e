"""The management API: authentication, sources, and the event debugger's filters."""

from __future__ import annotations

from datetime import datetime

import httpx
import orjson
import pytest

from tests.server import Server


def _send(server: Server, key: str, batch: list[dict]) -> None:
    response = httpx.post(
        server.url + "/v1/batch", content=orjson.dumps({"batch": batch}), auth=(key, "")
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/v1/sources"), ("POST", "/api/v1/sources"), ("GET", "/api/v1/events"),
     ("POST", "/api/v1/flush"), ("GET", "/api/v1/status"),
     ("POST", "/api/v1/sources/x/disable")],
)  # fmt: skip
def test_every_endpoint_needs_the_admin_token(server: Server, method, path):
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = httpx.request(method, server.url + path, headers=headers, json={})
        assert response.status_code == 401
        assert response.json()["code"] == "unauthorized"


def test_a_write_key_is_not_an_admin_token(server: Server, source):
    response = httpx.get(
        server.url + "/api/v1/sources",
        headers={"Authorization": f"Bearer {source['write_key']}"},
    )
    assert response.status_code == 401


def test_openapi_is_published(server: Server):
    schema = httpx.get(server.url + "/api/openapi.json").json()
    assert "/v1/events" in schema["paths"]
    assert "/v1/sources" in schema["paths"]


def test_source_errors_are_clear(server: Server, source):
    with server.admin as admin:
        taken = admin.post("/api/v1/sources", json={"name": source["name"], "type": "web"})
        assert taken.status_code == 409
        assert taken.json()["code"] == "source_exists"
        bad = admin.post("/api/v1/sources", json={"name": "Bad Name!", "type": "web"})
        assert bad.status_code == 400
        assert bad.json()["code"] == "invalid_source_name"
        wrong_type = admin.post("/api/v1/sources", json={"name": "ok-name", "type": "fax"})
        assert wrong_type.json()["code"] == "invalid_source_type"
        missing = admin.post("/api/v1/sources", json={"type": "web"})
        assert missing.status_code == 400
        assert missing.json()["code"] == "invalid_request"
        assert admin.get("/api/v1/sources/nope").status_code == 404
        assert admin.get("/api/v1/events", params={"source": "nope"}).status_code == 404
        assert admin.get("/api/v1/events", params={"limit": 0}).status_code == 400
        assert admin.get("/api/v1/events", params={"type": "bogus"}).status_code == 400


def test_event_debugger_filters_and_pages_newest_first(server: Server, source):
    key = source["write_key"]
    other = server.create_source(source["name"] + "-app", "app")
    batch = [
        {"type": "track", "userId": "ann", "event": "Order Completed", "messageId": "o1",
         "timestamp": "2026-03-01T10:00:00Z"},
        {"type": "track", "userId": "ann", "event": "Product Viewed", "messageId": "v1",
         "timestamp": "2026-03-02T10:00:00Z"},
        {"type": "identify", "anonymousId": "anon-9", "messageId": "i1",
         "timestamp": "2026-03-03T10:00:00Z"},
        {"type": "page", "userId": "bob", "messageId": "p1", "timestamp": "2026-03-04T10:00:00Z"},
    ]  # fmt: skip
    _send(server, key, batch)
    _send(server, other["write_key"], [{**batch[0], "messageId": "o2"}])
    server.flush()
    name = source["name"]
    with server.admin as admin:

        def ids(**params) -> list[str]:
            page = admin.get("/api/v1/events", params={"source": name, **params}).json()
            return [e["message_id"] for e in page["events"]]

        assert ids() == ["p1", "i1", "v1", "o1"]
        assert ids(type="track") == ["v1", "o1"]
        assert ids(event="Order Completed") == ["o1"]
        assert ids(user_id="ann") == ["v1", "o1"]
        assert ids(anonymous_id="anon-9") == ["i1"]
        assert ids(message_id="p1") == ["p1"]
        assert ids(since="2026-03-02T00:00:00Z", until="2026-03-04T00:00:00Z") == ["i1", "v1"]
        assert ids(since="2026-03-02T01:00:00+01:00") == ["p1", "i1", "v1"]

        first = admin.get("/api/v1/events", params={"source": name, "limit": 3}).json()
        assert [e["message_id"] for e in first["events"]] == ["p1", "i1", "v1"]
        rest = admin.get(
            "/api/v1/events", params={"source": name, "limit": 3, "before": first["next_before"]}
        ).json()
        assert [e["message_id"] for e in rest["events"]] == ["o1"]
        assert rest["next_before"] is None
        everything = admin.get("/api/v1/events", params={"event": "Order Completed"}).json()
        assert {"o1", "o2"} <= {e["message_id"] for e in everything["events"]}


def test_status_reports_how_far_behind_unify_is(server: Server, source):
    _send(server, source["write_key"], [{"type": "identify", "userId": "lag-check"}])
    server.flush()
    with server.admin as admin:
        status = admin.get("/api/v1/status").json()
    assert status["unify_error"] is None and status["loader_error"] is None
    lag = status["unify_lag"]
    assert lag["events"] >= 1
    assert 0 <= lag["p50_ms"] <= lag["p99_ms"] < 60_000
    # The last micro-batches and publishes: when, how much, and what each cost.
    for rounds in (status["unify_batches"], status["unify_publishes"]):
        assert 1 <= len(rounds) <= 50
        for round_ in rounds:
            assert round_["count"] >= 1
            assert 0 <= round_["cpu_ms"] <= round_["ms"] + 1  # a thread's CPU within its wall time
            datetime.fromisoformat(round_["ended_at"])
        ended = [round_["ended_at"] for round_ in rounds]
        assert ended == sorted(ended)
    assert status["unify_compactions"] == []  # no table has 50,000 dead rows here
    assert status["unify_pending_events"] == 0  # all resolved and published by the flush
    assert status["unify_pending_profiles"] == 0
    before = sum(round_["count"] for round_ in status["unify_batches"])
    _send(server, source["write_key"], [{"type": "identify", "userId": f"r-{n}"} for n in range(7)])
    server.flush()
    with server.admin as admin:
        after = admin.get("/api/v1/status").json()["unify_batches"]
    assert sum(round_["count"] for round_ in after) - before == 7 or len(after) == 50
