"""The demo reaches a real server through the tracking API and the import path."""

from __future__ import annotations

import time
from collections import Counter

import httpx

from onefold.demo.load import load_demo
from tests.server import ADMIN_TOKEN, Server


def test_demo_loads_every_message_and_export_row(fresh_server: Server, tmp_path):
    lines: list[str] = []
    data = load_demo(fresh_server.url, ADMIN_TOKEN, tmp_path / "demo", 120, lines.append)
    with fresh_server.admin as admin:
        sources = {s["name"]: s["id"] for s in admin.get("/api/v1/sources").json()}
    events = fresh_server.events()
    per_source = Counter(e["source_id"] for e in events)
    for name, messages in data.messages.items():
        assert per_source[sources[name]] >= len(messages), name
    crm = [e for e in events if e["source_id"] == sources["crm"]]
    assert len(crm) == len(data.crm_rows)
    assert all(e["origin"] == "POST /v1/import" for e in crm)
    assert crm[0]["raw"]["context"]["import"]["file"] == "crm-export.csv"
    pos_imported = [e for e in events if e["origin"] == "POST /v1/import"
                    and e["source_id"] == sources["pos"]]  # fmt: skip
    assert len(pos_imported) == len(data.pos_rows)
    assert any("loaded" in line for line in lines)
    with fresh_server.admin as admin:
        links = admin.get("/api/v1/identity/links", params={"limit": 1000}).json()["links"]
    assert links and {link["kind"] for link in links} == {"probabilistic"}
    assert any("matching merged" in line for line in lines)

    again = load_demo(fresh_server.url, ADMIN_TOKEN, tmp_path / "demo", 120, lines.append)
    assert len(fresh_server.events()) == len(events), "loading twice adds nothing"
    assert again.messages.keys() == data.messages.keys()


def test_serve_demo_loads_in_the_background(tmp_path):
    server = Server(tmp_path / "data", env={"ONEFOLD_DEMO_CUSTOMERS": "60"})
    server.args = ["--demo"]
    server.start()
    try:
        deadline = time.monotonic() + 90
        while not (tmp_path / "data" / "demo" / "loaded").exists():
            assert time.monotonic() < deadline, server.log_path.read_text()[-2000:]
            time.sleep(0.3)
        with server.admin as admin:
            names = {s["name"] for s in admin.get("/api/v1/sources").json()}
        assert {"web-shop", "mobile-app", "pos", "email", "support", "crm"} <= names
        assert len(server.events(type="identify")) > 0
        count = len(server.events())
        server.restart()
        time.sleep(1)
        assert len(server.events()) == count, "the demo loads once per data directory"
        assert httpx.get(server.url + "/health").status_code == 200
    finally:
        server.stop()
