"""Identity health and overrides through the management API."""

from __future__ import annotations

import httpx
import orjson

from tests.server import Server


def test_health_report_and_block_override(server: Server, source):
    run = source["name"]
    batch = [
        {"type": "identify", "anonymousId": f"{run}-w{i}",
         "traits": {"email": f"desk.{run}@example.com"}}
        for i in range(4)
    ] + [
        {"type": "identify", "userId": f"{run}-a", "traits": {"email": f"fam.{run}@example.com"}},
        {"type": "identify", "userId": f"{run}-b", "traits": {"email": f"fam.{run}@example.com"}},
        {"type": "identify", "userId": "undefined", "anonymousId": f"{run}-x"},
    ]  # fmt: skip
    body = orjson.dumps({"batch": batch})
    assert httpx.post(server.url + "/v1/batch", content=body, auth=(source["write_key"], ""))
    server.flush()
    with server.admin as admin:
        health = admin.get("/api/v1/identity/health", params={"over": 3}).json()
        assert health["profiles_over"]["profiles"] >= 1
        assert health["largest_profiles"][0]["identifiers"] >= 5
        rules = {(r["rule"], r["namespace"]) for r in health["refused_links"]}
        assert ("merge_protection", "email") in rules
        assert any(
            b["value"] == "undefined" and b["namespace"] == "user_id"
            for b in health["blocked_values"]
        )

        desk = admin.get(f"/api/v1/profiles/anonymous_id:{run}-w0").json()["profile_id"]
        assert admin.get(f"/api/v1/profiles/anonymous_id:{run}-w3").json()["profile_id"] == desk
        created = admin.post("/api/v1/identity/overrides", json={
            "kind": "block", "identifier": f"email:Desk.{run}@example.com",
            "reason": "the front desk's address",
        })  # fmt: skip
        assert created.status_code == 201, created.text
        assert len(created.json()["profiles_after"]) == 4
        split = {
            admin.get(f"/api/v1/profiles/anonymous_id:{run}-w{i}").json()["profile_id"]
            for i in range(4)
        }
        assert len(split) == 4
        bad = admin.post(
            "/api/v1/identity/overrides",
            json={"kind": "never_link", "identifier": "email:x@example.com", "reason": "r"},
        )
        assert bad.status_code == 400
        assert bad.json()["code"] == "invalid_override"
        missing_reason = admin.post(
            "/api/v1/identity/overrides",
            json={"kind": "block", "identifier": "email:x@example.com", "reason": ""},
        )
        assert missing_reason.status_code == 400


def test_dry_run_shows_what_a_rule_change_would_do(server: Server, source):
    run = source["name"]
    shared, one = f"shared.{run}@example.com", f"one.{run}@example.com"
    batch = [
        {"type": "identify", "userId": f"{run}-a", "traits": {"email": shared}},
        {"type": "identify", "userId": f"{run}-b", "traits": {"email": shared}},
        {"type": "identify", "anonymousId": f"{run}-x", "traits": {"email": one}},
        {"type": "identify", "anonymousId": f"{run}-y", "traits": {"email": one}},
    ]  # fmt: skip
    body = orjson.dumps({"batch": batch})
    assert httpx.post(server.url + "/v1/batch", content=body, auth=(source["write_key"], ""))
    server.flush()
    with server.admin as admin:
        rules = admin.get("/api/openapi.json").json()  # the endpoint is documented
        assert "/v1/identity/dry-run" in rules["paths"]
        lifted = {"namespaces": {
            "user_id": {"priority": 10, "paths": ["userId"], "limit": 5, "unique": False},
            "email": {"priority": 20, "paths": ["traits.email"], "normalise": "email"},
            "anonymous_id": {"priority": 90, "paths": ["anonymousId"]},
        }}  # fmt: skip
        merged = admin.post("/api/v1/identity/dry-run", json=lifted).json()
        assert merged["merges"] >= 1, "without merge protection the shared email joins a and b"
        stricter = {"namespaces": {
            "user_id": {"priority": 10, "paths": ["userId"], "limit": 1, "unique": True},
            "anonymous_id": {"priority": 90, "paths": ["anonymousId"]},
        }}  # fmt: skip
        split = admin.post("/api/v1/identity/dry-run", json=stricter).json()
        assert split["splits"] >= 1, "without email, x and y fall apart"
        assert split["identifiers_unlinked"] >= 2
        bad = admin.post("/api/v1/identity/dry-run", json={"namespaces": {"Bad Name": {}}})
        assert bad.status_code == 400
        assert bad.json()["code"] == "invalid_request"
        with server.admin as again:
            profile = again.get(f"/api/v1/profiles/anonymous_id:{run}-x").json()
            assert (
                profile["profile_id"]
                == again.get(f"/api/v1/profiles/anonymous_id:{run}-y").json()["profile_id"]
            ), "a dry run changes nothing"
