"""The official Python SDKs, unchanged, against a real Onefold server."""

from __future__ import annotations

import uuid

import pytest
from rudderstack.analytics.client import Client as RudderClient
from segment.analytics.client import Client as SegmentClient

from tests.server import Server


def _send_all(client, run: str) -> list[str]:
    user, anon = f"user-{run}", f"anon-{run}"
    calls = [
        client.identify(user, {"email": f"{run}@example.com", "firstName": "Ana"},
                        anonymous_id=anon),
        client.track(user, "Order Completed", {"order_id": run, "revenue": 42.5}),
        client.page(user, "Shop", "Home", {"path": "/"}),
        client.screen(user, "App", "Cart"),
        client.group(user, f"acct-{run}", {"name": "Acme"}),
        client.alias(anon, user),
    ]  # fmt: skip
    client.flush()
    client.shutdown()
    message_ids = []
    for success, message in calls:
        assert success
        message_ids.append(message["messageId"])
    return message_ids


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("segment", lambda key, url, errors: SegmentClient(
            key, host=url, gzip=False, max_retries=2, on_error=lambda e, b: errors.append(e))),
        ("segment-gzip", lambda key, url, errors: SegmentClient(
            key, host=url, gzip=True, max_retries=2, on_error=lambda e, b: errors.append(e))),
        ("rudder", lambda key, url, errors: RudderClient(
            key, host=url, gzip=True, max_retries=2, on_error=lambda e, b: errors.append(e))),
    ],
)  # fmt: skip
def test_python_sdk_messages_are_stored_exactly_once(server: Server, source, name, make):
    errors: list = []
    client = make(source["write_key"], server.url, errors)
    run = uuid.uuid4().hex[:12]
    message_ids = _send_all(client, run)
    assert errors == []
    events = server.events(source=source["name"])
    assert sorted(e["message_id"] for e in events) == sorted(message_ids)
    by_type = {e["type"]: e for e in events}
    assert set(by_type) == {"identify", "track", "page", "screen", "group", "alias"}
    assert by_type["track"]["event"] == "Order Completed"
    assert by_type["track"]["user_id"] == f"user-{run}"
    assert by_type["identify"]["anonymous_id"] == f"anon-{run}"
    assert by_type["alias"]["previous_id"] == f"anon-{run}"
    assert by_type["group"]["group_id"] == f"acct-{run}"
    identify = by_type["identify"]["raw"]
    traits = identify.get("traits") or identify["context"]["traits"]
    assert traits["email"] == f"{run}@example.com"
    for event in events:
        assert event["sent_at"] is not None
        assert event["timestamp"] is not None
