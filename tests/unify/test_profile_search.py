"""Finding profiles by traits and computed traits, through the API and the CLI."""

from __future__ import annotations

import httpx
import orjson
from typer.testing import CliRunner

from onefold.interfaces.cli import app
from tests.server import ADMIN_TOKEN, Server


def _send(server: Server, key: str, batch: list[dict]) -> None:
    body = orjson.dumps({"batch": batch})
    assert httpx.post(server.url + "/v1/batch", content=body, auth=(key, "")).is_success


def _search(server: Server, *where: str, **params) -> httpx.Response:
    with server.admin as admin:
        return admin.get("/api/v1/profiles", params={"where": list(where), **params})


def test_search_by_traits_and_computed_traits(server: Server, source):
    run = source["name"]
    people = [  # (user, country, age, orders)
        ("ana", "ES", 34, 2),
        ("bea", "es", 51, 0),
        ("carl", "DE", 29, 1),
        ("dani", "ES", 19, 3),
    ]
    batch = []
    for user, country, age, orders in people:
        batch.append({"type": "identify", "userId": f"{run}-{user}",
                      "traits": {"cohort": run, "country": country, "age": age,
                                 "email": f"{user}@{run}.example.com"}})  # fmt: skip
        batch += [{"type": "track", "userId": f"{run}-{user}", "event": "Order Completed",
                   "properties": {"revenue": 10}} for _ in range(orders)]  # fmt: skip
    for index, message in enumerate(batch):
        message.setdefault("messageId", f"{run}-{index}")
    _send(server, source["write_key"], batch)
    server.flush()

    found = _search(server, f"cohort={run}", "country=es")
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["total"] == 3  # case-insensitive: ES and es
    users = {p["traits"]["email"].split("@")[0] for p in body["profiles"]}
    assert users == {"ana", "bea", "dani"}
    assert all(p["traits"]["cohort"] == run for p in body["profiles"])

    older = _search(server, f"cohort={run}", "country=ES", "age>=30").json()
    assert {p["traits"]["email"].split("@")[0] for p in older["profiles"]} == {"ana", "bea"}
    buyers = _search(server, f"cohort={run}", "orders>=2").json()  # a computed trait
    assert {p["traits"]["email"].split("@")[0] for p in buyers["profiles"]} == {"ana", "dani"}
    contains = _search(server, f"email~@{run}.EXAMPLE", "country!=de").json()
    assert contains["total"] == 3
    has = _search(server, f"cohort={run}", "age?").json()
    assert has["total"] == 4

    # paging: two pages of two, in profile id order, nothing repeated
    first = _search(server, f"cohort={run}", limit=2).json()
    assert first["total"] == 4 and len(first["profiles"]) == 2 and first["next_after"]
    second = _search(server, f"cohort={run}", limit=2, after=first["next_after"]).json()
    ids = [p["profile_id"] for p in first["profiles"] + second["profiles"]]
    assert ids == sorted(ids) and len(set(ids)) == 4 and second["next_after"] is None

    runner = CliRunner()
    shown = runner.invoke(app, ["profiles", "search", f"cohort={run}", "country=ES",
                                "--data-dir", str(server.data_dir)],
                           env={"ONEFOLD_ADMIN_TOKEN": ADMIN_TOKEN})  # fmt: skip
    assert shown.exit_code == 0, shown.output
    assert "3 profiles" in shown.output and "ana@" in shown.output


def test_search_errors(server: Server):
    for where, code in [
        ("country", "invalid_condition"),
        ("age>=old", "invalid_condition"),
        ("plan?gold", "invalid_condition"),
        ("country=", "invalid_condition"),
    ]:
        response = _search(server, where)
        assert response.status_code == 400, where
        assert response.json()["code"] == code
    with server.admin as admin:
        assert admin.get("/api/v1/profiles").status_code in (400, 422)
