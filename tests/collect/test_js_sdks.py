"""The official JavaScript SDKs — Node and browser — unchanged, against a real server.

The Node SDKs run under node; the browser SDKs run in headless Chromium on a page served
from another origin, so CORS is exercised for real.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.sdk.browser_harness import run_browser_sdk
from tests.server import Server

SDK_DIR = Path(__file__).parents[1] / "sdk"
TYPES = {"identify", "track", "page", "group", "alias"}


def _check_stored(server: Server, source: dict, run: str) -> list[dict]:
    events = server.events(source=source["name"])
    mine = [e for e in events if run in json.dumps(e["raw"])]
    assert {e["type"] for e in mine} == TYPES
    ids = [e["message_id"] for e in mine]
    assert len(ids) == len(set(ids)) == 5, "each message stored exactly once"
    by_type = {e["type"]: e for e in mine}
    assert by_type["track"]["user_id"] == f"user-{run}"
    assert by_type["alias"]["previous_id"] == f"anon-{run}"
    assert by_type["group"]["group_id"] == f"group-{run}"
    identify = by_type["identify"]["raw"]
    traits = identify.get("traits") or identify["context"]["traits"]
    assert traits["email"] == f"{run}@example.com"
    return mine


@pytest.mark.parametrize("sdk", ["segment", "rudder"])
def test_node_sdk_messages_are_stored_exactly_once(server: Server, source, sdk):
    run = uuid.uuid4().hex[:12]
    result = subprocess.run(
        ["node", str(SDK_DIR / "node_send.mjs"), sdk, server.url, source["write_key"], run],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    stored = _check_stored(server, source, run)
    assert {e["message_id"] for e in stored} == set(report["messageIds"].values())


@pytest.mark.browser
@pytest.mark.parametrize("sdk", ["segment", "rudder"])
def test_browser_sdk_messages_are_stored_exactly_once(server: Server, source, sdk):
    run = uuid.uuid4().hex[:12]
    run_browser_sdk(sdk, server.url, source["write_key"], run, timeout_s=45)
    stored = _check_stored(server, source, run)
    if sdk == "rudder":
        identify = next(e for e in stored if e["type"] == "identify")
        assert identify["original_timestamp"] is not None
