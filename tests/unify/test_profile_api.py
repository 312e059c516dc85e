"""Profiles through the management API: lookup by any identifier, timeline across sources."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import orjson

from tests.server import Server


def _send(server: Server, key: str, batch: list[dict]) -> None:
    body = orjson.dumps({"batch": batch})
    assert httpx.post(server.url + "/v1/batch", content=body, auth=(key, "")).is_success


def test_one_profile_whatever_identifier_you_look_it_up_by(server: Server, source):
    run = source["name"]
    till = server.create_source(f"{run}-till", "pos")
    _send(server, source["write_key"], [
        {"type": "page", "anonymousId": f"{run}-laptop", "name": "Home",
         "timestamp": "2026-05-01T10:00:00Z"},
        {"type": "identify", "anonymousId": f"{run}-laptop", "userId": f"{run}-jane",
         "traits": {"email": f"Jane.{run}@Example.com"}, "timestamp": "2026-05-01T10:05:00Z"},
        {"type": "track", "anonymousId": f"{run}-phone", "event": "Product Viewed",
         "timestamp": "2026-05-02T09:00:00Z"},
        {"type": "identify", "anonymousId": f"{run}-phone", "userId": f"{run}-jane",
         "timestamp": "2026-05-02T09:01:00Z"},
    ])  # fmt: skip
    _send(server, till["write_key"], [
        {"type": "track", "anonymousId": f"{run}-receipt-1", "event": "Order Completed",
         "context": {"traits": {"email": f"jane.{run}@example.com", "phone": "612 345 678"},
                     "locale": "es-ES"},
         "properties": {"revenue": 30}, "timestamp": "2026-05-03T12:00:00Z"},
    ])  # fmt: skip
    server.flush()
    with server.admin as admin:
        looked_up = set()
        for identifier in (f"user_id:{run}-jane", f"email:JANE.{run}@example.com ",
                           f"anonymous_id:{run}-phone", f"anonymous_id:{run}-receipt-1",
                           "phone:+34612345678"):  # fmt: skip
            response = admin.get(f"/api/v1/profiles/{quote(identifier)}")
            assert response.status_code == 200, (identifier, response.text)
            looked_up.add(response.json()["profile_id"])
        assert len(looked_up) == 1
        profile = response.json()
        identities = {(i["namespace"], i["value"]) for i in profile["identities"]}
        assert identities == {
            ("anonymous_id", f"{run}-laptop"), ("anonymous_id", f"{run}-phone"),
            ("anonymous_id", f"{run}-receipt-1"), ("user_id", f"{run}-jane"),
            ("email", f"jane.{run}@example.com"), ("phone", "+34612345678"),
        }  # fmt: skip
        email_trait = profile["traits"]["email"]
        assert email_trait["value"] == f"Jane.{run}@Example.com"
        assert email_trait["source"] == run
        sources = {i["source"] for i in profile["identities"]}
        assert sources == {run, f"{run}-till"}
        assert len(profile["merges"]) == 1
        merge = profile["merges"][0]
        assert (merge["namespace"], merge["value"]) == ("anonymous_id", f"{run}-phone")
        assert merge["method"] == "deterministic"
        again = admin.get(f"/api/v1/profiles/profile:{merge['absorbed_id']}")
        assert again.json()["profile_id"] == profile["profile_id"], "old ids redirect"

        timeline = admin.get(f"/api/v1/timeline/user_id:{run}-jane").json()
        assert [e["type"] for e in timeline["events"]] == [
            "track",
            "identify",
            "track",
            "identify",
            "page",
        ]
        assert timeline["events"][0]["source"] == f"{run}-till"
        tracks = admin.get(f"/api/v1/timeline/user_id:{run}-jane", params={"type": "track"})
        assert [e["event"] for e in tracks.json()["events"]] == [
            "Order Completed",
            "Product Viewed",
        ]
        page = admin.get(f"/api/v1/timeline/user_id:{run}-jane", params={"limit": 2}).json()
        rest = admin.get(
            f"/api/v1/timeline/user_id:{run}-jane", params={"before": page["next_before"]}
        ).json()
        seen = [e["seq"] for e in page["events"] + rest["events"]]
        assert seen == [e["seq"] for e in timeline["events"]]


def test_profile_lookup_errors(server: Server):
    with server.admin as admin:
        missing = admin.get("/api/v1/profiles/email:nobody@example.com")
        assert missing.status_code == 404
        assert missing.json()["code"] == "profile_not_found"
        assert admin.get("/api/v1/profiles/no-colon").json()["code"] == "invalid_identifier"
        unknown = admin.get("/api/v1/profiles/fax:123")
        assert unknown.status_code == 400
        assert unknown.json()["code"] == "unknown_namespace"
        bad_cursor = admin.get("/api/v1/timeline/email:x@example.com", params={"before": "x"})
        assert bad_cursor.status_code in (400, 404)
