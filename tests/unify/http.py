"""Talking to a test server as the SDKs and the management API's users do."""

from __future__ import annotations

import httpx
import orjson

from tests.server import Server


def post(server: Server, source: dict, path: str, body: dict) -> None:
    """As RudderStack's SDKs send: Basic auth with the write key; the answer must be 200
    with nothing rejected."""
    response = httpx.post(
        server.url + path, content=orjson.dumps(body), auth=(source["write_key"], "")
    )
    assert response.status_code == 200, response.text
    assert not response.json().get("rejected"), response.text


def get_profile(admin: httpx.Client, identifier: str) -> dict:
    response = admin.get(f"/api/v1/profiles/{identifier}")
    assert response.status_code == 200, response.text
    return response.json()


def identity_keys(found: dict) -> set[tuple[str, str]]:
    """A profile's identities as (namespace, value)."""
    return {(i["namespace"], i["value"]) for i in found["identities"]}
