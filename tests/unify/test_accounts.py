"""Accounts from group calls: traits, members, and the profile's accounts."""

from __future__ import annotations

import httpx
import orjson

from tests.server import Server


def test_group_calls_make_accounts_with_traits_and_members(server: Server, source):
    run = source["name"]
    acme = f"acme-{run}"
    batch = [
        {"type": "group", "userId": f"{run}-ana", "groupId": acme,
         "traits": {"name": "Acme", "plan": "basic"}, "timestamp": "2026-01-01T00:00:00Z"},
        {"type": "group", "anonymousId": f"{run}-dev", "groupId": acme,
         "traits": {"plan": "pro", "employees": 40}, "timestamp": "2026-02-01T00:00:00Z"},
        {"type": "group", "userId": f"{run}-ana", "groupId": f"other-{run}",
         "timestamp": "2026-02-01T00:00:00Z"},
    ]  # fmt: skip
    body = orjson.dumps({"batch": batch})
    assert httpx.post(server.url + "/v1/batch", content=body, auth=(source["write_key"], ""))
    server.flush()
    with server.admin as admin:
        account = admin.get(f"/api/v1/accounts/{acme}").json()
        assert account["traits"] == {"name": "Acme", "plan": "pro", "employees": 40}
        assert len(account["members"]) == 2
        ana = admin.get(f"/api/v1/profiles/user_id:{run}-ana").json()
        assert ana["accounts"] == sorted([acme, f"other-{run}"])
        assert ana["profile_id"] in {m["profile_id"] for m in account["members"]}
        missing = admin.get("/api/v1/accounts/nobody-at-all")
        assert missing.status_code == 404
        assert missing.json()["code"] == "account_not_found"
