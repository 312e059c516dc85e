"""The tracking API against a real server: paths, auth, encodings, fields, answers."""

from __future__ import annotations

import base64
import gzip
import zlib
from datetime import datetime

import httpx
import orjson
import pytest

from tests.server import Server


def post(
    server: Server, path: str, body: object, key: str | None = None, **kwargs
) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    auth = (key, "") if key else None
    return httpx.post(server.url + path, content=content, auth=auth, timeout=10, **kwargs)


SINGLE = {
    "identify": {"userId": "u-1", "traits": {"email": "ana@example.com"}},
    "track": {"userId": "u-1", "event": "Order Completed", "properties": {"revenue": 12.5}},
    "page": {"anonymousId": "a-1", "name": "Home"},
    "screen": {"anonymousId": "a-1", "name": "Cart"},
    "group": {"userId": "u-1", "groupId": "acme", "traits": {"name": "Acme"}},
    "alias": {"previousId": "a-1", "userId": "u-1"},
}
SHORT = {"identify": "i", "track": "t", "page": "p", "screen": "s", "group": "g", "alias": "a"}


def test_every_single_message_path_long_and_short_form_is_stored(server, source):
    key = source["write_key"]
    for kind, body in SINGLE.items():
        for path in (kind, SHORT[kind]):
            message = {**body, "messageId": f"{path}-{kind}"}
            response = post(server, f"/v1/{path}", message, key)
            assert response.status_code == 200, response.text
            assert response.json() == {"success": True}
    events = server.events(source=source["name"])
    assert sorted((e["type"], e["message_id"]) for e in events) == sorted(
        (kind, f"{path}-{kind}") for kind in SINGLE for path in (kind, SHORT[kind])
    )
    stored = next(e for e in events if e["message_id"] == "track-track")
    assert stored["event"] == "Order Completed"
    assert stored["user_id"] == "u-1"
    assert stored["raw"] == {**SINGLE["track"], "messageId": "track-track"}
    assert stored["origin"] == "POST /v1/track"


def test_batch_routes_merge_batch_context_and_keep_provenance(server, source):
    key = source["write_key"]
    batch = {
        "batch": [
            {"type": "track", "userId": "u-2", "event": "Product Viewed", "messageId": "b-1"},
            {"type": "identify", "anonymousId": "a-2", "messageId": "b-2",
             "context": {"traits": {"email": "bo@example.com"}, "locale": "es-ES"}},
        ],
        "context": {"library": {"name": "analytics-python"}},
        "integrations": {"All": True},
    }  # fmt: skip
    for path in ("/v1/batch", "/v1/b", "/v1/import", "/beacon/v1/batch"):
        items = [{**m, "messageId": m["messageId"] + path} for m in batch["batch"]]
        response = post(server, path, {**batch, "batch": items}, key)
        assert response.status_code == 200, (path, response.text)
    events = server.events(source=source["name"])
    assert len(events) == 8
    ident = next(e for e in events if e["message_id"] == "b-2/v1/b")
    assert ident["batch"] == {"context": batch["context"], "integrations": {"All": True}}
    assert ident["raw"]["context"]["traits"] == {"email": "bo@example.com"}
    assert ident["origin"] == "POST /v1/b"
    assert len({e["request_id"] for e in events}) == 4


def test_all_auth_forms(server, source):
    key = source["write_key"]
    message = {"userId": "u", "event": "E"}
    assert post(server, "/v1/track", {**message, "messageId": "basic"}, key).status_code == 200
    in_body = {**message, "messageId": "body", "writeKey": key}
    assert post(server, "/v1/track", in_body).status_code == 200
    batch = {"writeKey": key, "batch": [{**message, "type": "track", "messageId": "bbody"}]}
    assert post(server, "/v1/batch", batch).status_code == 200
    beacon = {"batch": [{**message, "type": "track", "messageId": "beacon"}]}
    assert post(server, f"/beacon/v1/batch?writeKey={key}", beacon).status_code == 200
    ids = {e["message_id"] for e in server.events(source=source["name"])}
    assert ids == {"basic", "body", "bbody", "beacon"}
    stored = next(e for e in server.events(source=source["name"]) if e["message_id"] == "body")
    assert "writeKey" not in stored["raw"]


@pytest.mark.parametrize(
    ("auth", "status", "code"),
    [
        (None, 401, "missing_write_key"),
        (("wrong", ""), 401, "invalid_write_key"),
        ("Basic !!!notbase64", 401, "missing_write_key"),
    ],
)
def test_bad_or_missing_keys_are_refused(server, source, auth, status, code):
    headers = {"Authorization": auth} if isinstance(auth, str) else {}
    response = httpx.post(
        server.url + "/v1/track",
        content=orjson.dumps({"userId": "u", "event": "E"}),
        auth=auth if isinstance(auth, tuple) else None,
        headers=headers,
    )
    assert response.status_code == status
    assert response.json()["code"] == code
    assert server.events(source=source["name"]) == []


def test_disabled_source_is_refused_and_keeps_its_data(server, source):
    key = source["write_key"]
    assert post(server, "/v1/track", {"userId": "u", "event": "E"}, key).status_code == 200
    with server.admin as admin:
        disabled = admin.post(f"/api/v1/sources/{source['name']}/disable").json()
        assert disabled["enabled"] is False
    response = post(server, "/v1/track", {"userId": "u", "event": "E"}, key)
    assert response.status_code == 403
    assert response.json()["code"] == "source_disabled"
    assert len(server.events(source=source["name"])) == 1


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "x-gzip"])
@pytest.mark.parametrize(
    "content_type", ["application/json", "text/plain", "application/x-www-form-urlencoded"]
)
def test_decoding_follows_content_encoding_not_content_type(server, source, encoding, content_type):
    body = orjson.dumps({"batch": [{"type": "track", "userId": "u", "event": "Zipped"}]})
    data = gzip.compress(body) if "gzip" in encoding else zlib.compress(body)
    headers = {"Content-Encoding": encoding, "Content-Type": content_type}
    response = post(server, "/v1/batch", data, source["write_key"], headers=headers)
    assert response.status_code == 200, response.text
    assert [e["event"] for e in server.events(source=source["name"])] == ["Zipped"]


def test_unknown_content_encoding_is_refused(server, source):
    response = post(server, "/v1/track", b"{}", source["write_key"],
                    headers={"Content-Encoding": "br"})  # fmt: skip
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_encoding"


def test_cors_preflight_and_response_reflect_origin(server, source):
    origin = "http://shop.example:3000"
    preflight = httpx.options(
        server.url + "/v1/batch",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,anonymousid,sentat",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == origin
    allowed = preflight.headers["access-control-allow-headers"].lower()
    for header in ("authorization", "content-type", "anonymousid", "sentat"):
        assert header in allowed
    response = post(server, "/v1/t", {"anonymousId": "a", "event": "E"}, source["write_key"],
                    headers={"Origin": origin, "Content-Type": "text/plain"})  # fmt: skip
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == origin
    management = httpx.options(
        server.url + "/api/v1/sources",
        headers={"Origin": origin, "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in management.headers


def test_timestamps_follow_the_skew_rule(server, source):
    key = source["write_key"]
    batch = {
        "sentAt": "2026-01-01T00:00:10Z",
        "batch": [
            # client clock 10 s after its own event: timestamp = receivedAt - 10 s
            {"type": "track", "anonymousId": "a", "event": "Skewed", "messageId": "skew",
             "originalTimestamp": "2026-01-01T00:00:00Z"},
            # an explicit timestamp is kept
            {"type": "track", "anonymousId": "a", "event": "Explicit", "messageId": "explicit",
             "timestamp": "2025-12-31T23:00:00+01:00"},
            {"type": "track", "anonymousId": "a", "event": "None", "messageId": "none"},
        ],
    }  # fmt: skip
    assert post(server, "/v1/batch", batch, key).status_code == 200
    events = {e["message_id"]: e for e in server.events(source=source["name"])}
    skew = events["skew"]
    received = datetime.fromisoformat(skew["received_at"])
    assert (received - datetime.fromisoformat(skew["timestamp"])).total_seconds() == 10
    assert skew["original_timestamp"] == "2026-01-01T00:00:00"
    assert skew["sent_at"] == "2026-01-01T00:00:10"
    assert events["explicit"]["timestamp"] == "2025-12-31T22:00:00"
    assert events["none"]["timestamp"] == events["none"]["received_at"]


@pytest.mark.parametrize(
    ("path", "message", "code"),
    [
        ("/v1/track", {"event": "E"}, "missing_id"),
        ("/v1/track", {"userId": "u"}, "missing_event"),
        ("/v1/track", {"userId": "u", "event": ""}, "missing_event"),
        ("/v1/track", {"userId": "u", "event": 5}, "missing_event"),
        ("/v1/track", {"userId": {"x": 1}, "event": "E"}, "invalid_field"),
        ("/v1/track", {"userId": "u", "event": "E", "properties": [1]}, "invalid_field"),
        ("/v1/track", {"userId": "u", "event": "E", "timestamp": "yesterday"},
         "invalid_timestamp"),
        ("/v1/track", {"userId": "u", "event": "E", "messageId": "x" * 101}, "invalid_field"),
        ("/v1/track", {"userId": "u", "type": "purchase"}, "unknown_type"),
        ("/v1/group", {"userId": "u"}, "missing_id"),
        ("/v1/alias", {"userId": "u"}, "missing_id"),
        ("/v1/track", [1, 2], "invalid_message"),
    ],
)  # fmt: skip
def test_invalid_messages_get_precise_errors(server, source, path, message, code):
    response = post(server, path, message, source["write_key"])
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert response.json()["message"]
    assert server.events(source=source["name"]) == []


def test_batch_with_some_bad_messages_stores_the_good_ones(server, source):
    batch = {"batch": [
        {"type": "track", "userId": "u", "event": "Good", "messageId": "g1"},
        {"type": "track", "userId": "u", "messageId": "bad1"},
        {"type": "teleport", "userId": "u", "messageId": "bad2"},
        "not an object",
        {"type": "identify", "anonymousId": "a", "messageId": "g2"},
    ]}  # fmt: skip
    response = post(server, "/v1/batch", batch, source["write_key"])
    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 2
    assert [(r["index"], r["code"]) for r in body["rejected"]] == [
        (1, "missing_event"), (2, "unknown_type"), (3, "invalid_message"),
    ]  # fmt: skip
    assert sorted(e["message_id"] for e in server.events(source=source["name"])) == ["g1", "g2"]


def test_batch_with_only_bad_messages_is_a_400(server, source):
    response = post(server, "/v1/batch", {"batch": [{"type": "track", "userId": "u"}]},
                    source["write_key"])  # fmt: skip
    assert response.status_code == 400
    assert response.json()["code"] == "missing_event"
    assert response.json()["rejected"][0]["index"] == 0


def test_context_traits_and_numbers_as_ids(server, source):
    message = {"userId": 42, "context": {"traits": {"email": "x@example.com"}}}
    assert post(server, "/v1/identify", message, source["write_key"]).status_code == 200
    (stored,) = server.events(source=source["name"])
    assert stored["user_id"] == "42"
    assert stored["raw"]["context"]["traits"]["email"] == "x@example.com"


def test_merge_telemetry_pixel_and_info_endpoints(server, source):
    key = source["write_key"]
    merge = {"mergeProperties": [{"type": "email", "value": "a@example.com"},
                                 {"type": "phone", "value": "+34600000000"}]}  # fmt: skip
    assert post(server, "/v1/merge", merge, key).status_code == 200
    assert post(server, "/v1/m", {"series": []}).status_code == 200
    pixel = httpx.get(
        server.url + "/pixel/v1/track",
        params={"writeKey": key, "anonymousId": "px", "event": "Email Opened",
                "properties.campaign": "spring"},
    )  # fmt: skip
    assert pixel.status_code == 200
    assert pixel.headers["content-type"] == "image/gif"
    page = httpx.get(server.url + "/pixel/v1/page", params={"writeKey": key, "anonymousId": "p"})
    assert page.status_code == 200
    assert httpx.get(server.url + "/pixel/v1/track", params={"anonymousId": "x"}).status_code == 401
    events = {e["type"]: e for e in server.events(source=source["name"])}
    assert set(events) == {"merge", "track", "page"}
    assert events["track"]["raw"]["properties"] == {"campaign": "spring"}
    assert httpx.get(server.url + "/health").json()["server"] == "UP"
    assert "version" in httpx.get(server.url + "/version").json()
    settings = httpx.get(f"{server.url}/v1/projects/{key}/settings").json()
    assert settings["integrations"]["Segment.io"]["apiKey"] == key
    assert settings["integrations"]["Segment.io"]["apiHost"].endswith("/v1")
    config = httpx.get(f"{server.url}/sourceConfig/", params={"writeKey": key}).json()
    assert config["source"]["writeKey"] == key and config["source"]["enabled"]
    assert httpx.get(f"{server.url}/sourceConfig/", params={"writeKey": "no"}).status_code == 404


def test_basic_header_forms(server, source):
    token = base64.b64encode(f"{source['write_key']}:".encode()).decode()
    response = httpx.post(server.url + "/v1/t", content=b'{"userId":"u","event":"E"}',
                          headers={"Authorization": f"basic {token}"})  # fmt: skip
    assert response.status_code == 200
