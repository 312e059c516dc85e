"""Links beyond the rules: probabilistic matches merged or queued for review, manual
"always link" overrides — each undoable, each equal to what a full rebuild gives."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from onefold.collect.importer import run_import
from onefold.demo.generator import generate_demo
from onefold.demo.load import CRM_SPEC, write_csv
from onefold.interfaces.cli import app
from onefold.interfaces.client import LocalClient
from onefold.runtime import Onefold
from onefold.settings import Settings
from onefold.unify.links import LinkError
from tests.unify.http import get_profile, post
from tests.unify.test_serving import assert_served_as_stored

AS_OF = datetime(2026, 6, 1)
SNAPSHOT = {
    "identifiers": "SELECT namespace, value, profile_id FROM identifiers",
    "profiles": "SELECT profile_id, anchor_namespace, anchor_value, merged_into "
    "FROM identity_profiles",
    "merges": "SELECT seq, message_id, surviving_id, absorbed_id, namespace, value, method, "
    "probability FROM identity_merges",
    "refusals": "SELECT seq, message_id, namespace, value, coalesce(p.merged_into, x.profile_id),"
    " rule FROM identity_refusals x LEFT JOIN identity_profiles p USING (profile_id)",
    "events": "SELECT seq, namespace, value FROM event_identity",
    "traits": "SELECT profile_id, trait, value FROM profile_traits",
}


def _snapshot(onefold: Onefold) -> dict[str, set]:
    con = onefold.warehouse.cursor()
    return {name: set(con.execute(sql).fetchall()) for name, sql in SNAPSHOT.items()}


def _owner(onefold: Onefold, namespace: str, value: str) -> str | None:
    rows = (
        onefold.warehouse.cursor()
        .execute(
            "SELECT profile_id FROM identifiers WHERE namespace = ? AND value = ?",
            [namespace, value],
        )
        .fetchall()
    )
    return rows[0][0] if rows else None


def _load(tmp_path: Path, customers: int, crm: bool) -> tuple[LocalClient, object]:
    data = generate_demo(seed=7, customers=customers, now=AS_OF)
    client = LocalClient(Settings(data_dir=tmp_path / "data", admin_token="t"))
    client.onefold.identity.clock = lambda: AS_OF
    keys = {s.name: client.create_source(s.name, s.type)["write_key"] for s in data.sources}
    for name, messages in data.messages.items():
        for start in range(0, len(messages), 500):
            client.send(keys[name], messages[start : start + 500], "test")
    if crm:
        write_csv(data.crm_rows, tmp_path / "crm.csv")
        run_import(client, "crm", tmp_path / "crm.csv", CRM_SPEC,
                   rejects_path=tmp_path / "crm.rejects")  # fmt: skip
    client.flush()
    return client, data


def _truth(data) -> dict[str, str]:
    """Identifier value → the one person it belongs to, from the generator's ground truth
    (every string in a person's record; values two people share are left out)."""
    owners: dict[str, set[str]] = {}

    def walk(value: object, person: str) -> None:
        if isinstance(value, str):
            owners.setdefault(value.strip().lower(), set()).add(person)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item, person)
        elif isinstance(value, list):
            for item in value:
                walk(item, person)

    for person in data.people:
        walk(person, person["person_id"])
    return {value: next(iter(people)) for value, people in owners.items() if len(people) == 1}


def _plain(value: str) -> str:
    """An identifier as the ground truth spells it (newsletter sign-ups add a +tag)."""
    local, at, domain = value.lower().partition("@")
    return local.split("+")[0] + at + domain


def test_probabilistic_matches_merge_queue_and_undo(tmp_path):
    client, data = _load(tmp_path, customers=400, crm=True)
    onefold = client.onefold
    try:
        con = onefold.warehouse.cursor()
        live = "SELECT count(*) FROM identity_profiles WHERE merged_into IS NULL"
        profiles_before = con.execute(live).fetchone()[0]
        result = client.identity("match", {})
        assert result["merged"] > 5 and result["review"] > 0
        assert con.execute(live).fetchone()[0] == profiles_before - result["merged"]
        health = {(r["kind"], r["status"]): r["links"] for r in client.identity("health")["links"]}
        assert health == {("probabilistic", "active"): result["merged"],
                          ("probabilistic", "review"): result["review"]}  # fmt: skip

        # the merges are recorded as probabilistic, with their probability and reasons,
        # and join records of one person (the generator knows who is who)
        merges = con.execute(
            "SELECT message_id, probability, reasons FROM identity_merges "
            "WHERE method = 'probabilistic'"
        ).fetchall()
        assert len(merges) == result["merged"]
        assert all(p >= 0.95 and r and m.startswith("link:") for m, p, r in merges)
        truth = _truth(data)
        active = client.identity("links", {"status": "active", "limit": 1000})["links"]
        known = [(truth.get(_plain(a["value_a"])), truth.get(_plain(a["value_b"])))
                 for a in active]  # fmt: skip
        judged = [a == b for a, b in known if a and b]
        assert len(judged) >= 5
        assert sum(judged) / len(judged) >= 0.8
        assert all(link["profile_a"] == link["profile_b"] for link in active)

        # the review queue: most probable first, with reasons; accept one, reject another
        queue = client.identity("links", {"status": "review"})["links"]
        assert queue and queue[0]["probability"] >= queue[-1]["probability"]
        assert all(link["probability"] >= 0.5 for link in queue)
        assert all(isinstance(link["reasons"], dict) for link in queue)
        mergeable = [  # the matcher's veto on different user ids is the rules' too
            link
            for link in queue
            if link["profile_a"] != link["profile_b"] and "user_id" not in (link["note"] or "")
        ]
        accepted = client.identity("accept", {"id": mergeable[0]["id"], "note": "same person"})
        assert accepted["status"] == "active"
        first = mergeable[0]
        assert _owner(onefold, first["namespace_a"], first["value_a"]) == _owner(
            onefold, first["namespace_b"], first["value_b"]
        )
        other = next(link for link in queue if link["id"] != first["id"])
        rejected = client.identity("reject", {"id": other["id"]})
        assert rejected["status"] == "rejected"
        with pytest.raises(Exception, match="cannot accept"):
            client.identity("accept", {"id": other["id"]})

        # undo a merge the matcher made: the profiles come apart
        undone = active[0]
        result_undo = client.identity("undo", {"id": undone["id"], "note": "two people"})
        assert result_undo["status"] == "rejected"
        assert _owner(onefold, undone["namespace_a"], undone["value_a"]) != _owner(
            onefold, undone["namespace_b"], undone["value_b"]
        )
        audit = con.execute("SELECT action FROM identity_audit ORDER BY created_at").fetchall()
        assert [a for (a,) in audit][-3:] == ["link:match", "link:accept", "link:undo"]

        # matching again does not propose again what was decided (a merged profile may
        # bring new candidates, which are new links)
        again = client.identity("match", {})
        assert again["known"] > 0
        statuses = {link["id"]: link["status"] for link in client.identity(
            "links", {"limit": 1000})["links"]}  # fmt: skip
        assert statuses[other["id"]] == "rejected" and statuses[undone["id"]] == "rejected"
        assert statuses[first["id"]] == "active"
        assert _owner(onefold, undone["namespace_a"], undone["value_a"]) != _owner(
            onefold, undone["namespace_b"], undone["value_b"]
        )

        # what links did equals a rebuild that replays them among the events
        assert_served_as_stored(onefold)
        before = _snapshot(onefold)
        onefold.identity.rebuild_fast()  # falls back to the replay while links are active
        assert _snapshot(onefold) == before
        assert_served_as_stored(onefold)
    finally:
        client.close()


@pytest.fixture
def small(tmp_path: Path):
    client, _ = _load(tmp_path, customers=60, crm=False)
    web = client.get_source("web-shop")["write_key"]
    client.send(web, [
        {"type": "identify", "anonymousId": "kiosk-1", "traits": {"email": "ines@example.org"}},
        {"type": "identify", "userId": "ines-7", "traits": {"firstName": "Inés"}},
        {"type": "identify", "userId": "other-8", "anonymousId": "tablet-9"},
    ], "test")  # fmt: skip
    client.flush()
    yield client
    client.close()


def test_always_link_merges_and_undo_splits_equal_to_rebuild(small):
    onefold = small.onefold
    assert _owner(onefold, "email", "ines@example.org") != _owner(onefold, "user_id", "ines-7")
    linked = small.identity("link", {
        "identifier": "email:Ines@example.org", "other": "user_id:ines-7", "reason": "same",
    })  # fmt: skip
    assert len(linked["profiles_before"]) == 2 and len(linked["profiles_after"]) == 1
    owner = _owner(onefold, "email", "ines@example.org")
    assert owner == _owner(onefold, "user_id", "ines-7")
    profile = small.get_profile("user_id:ines-7")
    assert profile["traits"]["firstName"]["value"] == "Inés"
    assert [m["method"] for m in profile["merges"]] == ["manual"]
    after_link = _snapshot(onefold)
    onefold.identity.rebuild()
    assert _snapshot(onefold) == after_link

    # merge protection still holds: two user ids are never joined, and the refusal is kept
    refused = small.identity("link", {"identifier": "user_id:ines-7",
                                      "other": "user_id:other-8", "reason": "typo"})  # fmt: skip
    assert len(refused["profiles_after"]) == 2
    rows = (
        onefold.warehouse.cursor()
        .execute(
            "SELECT rule FROM identity_refusals WHERE message_id = ?", ["link:" + refused["id"]]
        )
        .fetchall()
    )
    assert rows == [("merge_protection",)]

    undone = small.identity("undo", {"id": linked["id"]})
    assert undone["status"] == "undone"
    assert _owner(onefold, "email", "ines@example.org") != _owner(onefold, "user_id", "ines-7")
    after_undo = _snapshot(onefold)
    onefold.identity.rebuild()
    assert _snapshot(onefold) == after_undo
    assert_served_as_stored(onefold)


def test_link_errors(small):
    graph = small.onefold.identity
    cases = [
        (("fax", "1"), ("email", "a@example.com"), "x", "unknown_namespace"),
        (("email", "nobody@example.com"), ("user_id", "ines-7"), "x", "identifier_not_found"),
        (("user_id", "ines-7"), ("user_id", "ines-7"), "x", "invalid_link"),
        (("user_id", "ines-7"), ("anonymous_id", "kiosk-1"), " ", "invalid_link"),
    ]
    for a, b, reason, code in cases:
        with pytest.raises(LinkError) as error:
            graph.always_link(a, b, reason)
        assert error.value.code == code
    with pytest.raises(LinkError) as error:
        graph.decide_link("lk_missing", "accept")
    assert error.value.code == "link_not_found"


def test_link_commands(small, tmp_path):
    data = str(small.onefold.settings.data_dir)
    small.close()
    small.close = lambda: None  # closed: the commands open the data directory themselves
    runner = CliRunner()
    linked = runner.invoke(app, [
        "identity", "always-link", "anonymous_id:kiosk-1", "user_id:ines-7", "--reason", "same",
        "--data-dir", data,
    ])  # fmt: skip
    assert linked.exit_code == 0, linked.output
    assert "2 profile(s) became 1" in linked.output
    listed = runner.invoke(app, ["identity", "links", "--status", "active", "--data-dir", data])
    assert listed.exit_code == 0 and "manual" in listed.output
    link_id = linked.output.split("link ")[1].split(":")[0]
    undone = runner.invoke(app, ["identity", "undo", link_id, "--data-dir", data])
    assert undone.exit_code == 0, undone.output
    assert "undone" in undone.output
    again = runner.invoke(app, ["identity", "undo", link_id, "--data-dir", data])
    assert again.exit_code == 1 and "cannot undo" in again.output


def test_links_over_http_answer_errors_as_code_and_message(server, source):
    """The link routes through the real server: an always-link and its undo, and each
    refusal answered as documented with the stored graph unchanged."""
    run = source["name"]
    post(server, source, "/v1/batch", {"batch": [
        {"type": "identify", "anonymousId": f"{run}-kiosk", "traits": {"email": f"{run}@x.org"}},
        {"type": "identify", "userId": f"{run}-u"},
    ]})  # fmt: skip
    server.flush()
    with server.admin as admin:
        body = {"identifier": f"anonymous_id:{run}-kiosk", "other": f"user_id:{run}-u",
                "reason": "told us at the desk"}  # fmt: skip
        linked = admin.post("/api/v1/identity/links", json=body)
        assert linked.status_code == 201, linked.text
        link_id = linked.json()["id"]
        joined = get_profile(admin, f"user_id:{run}-u")
        assert joined == get_profile(admin, f"anonymous_id:{run}-kiosk")
        assert [m["method"] for m in joined["merges"]] == ["manual"]

        for path, payload, status, code in [
            ("/api/v1/identity/links", body, 400, "link_exists"),
            ("/api/v1/identity/links", {**body, "other": "user_id:nobody-at-all"}, 400,
             "identifier_not_found"),
            ("/api/v1/identity/links", {**body, "other": "fax:1"}, 400, "unknown_namespace"),
            ("/api/v1/identity/links/lk_missing/accept", {}, 404, "link_not_found"),
            (f"/api/v1/identity/links/{link_id}/accept", {}, 409, "invalid_state"),
            ("/api/v1/identity/match", {"auto_merge": 0.6, "review_low": 0.9}, 400,
             "invalid_thresholds"),
        ]:  # fmt: skip
            response = admin.post(path, json=payload)
            assert response.status_code == status, (path, response.text)
            assert response.json()["code"] == code, (path, response.text)
        assert get_profile(admin, f"user_id:{run}-u") == joined  # nothing changed

        undone = admin.post(f"/api/v1/identity/links/{link_id}/undo", json={"note": "oops"})
        assert undone.status_code == 200 and undone.json()["status"] == "undone"
        assert (
            get_profile(admin, f"user_id:{run}-u")["profile_id"]
            != get_profile(admin, f"anonymous_id:{run}-kiosk")["profile_id"]
        )
        again = admin.post(f"/api/v1/identity/links/{link_id}/undo", json={})
        assert again.status_code == 409 and again.json()["code"] == "invalid_state"
        listed = admin.get("/api/v1/identity/links", params={"status": "undone"}).json()
        assert link_id in {link["id"] for link in listed["links"]}
