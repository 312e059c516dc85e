"""RudderStack merge calls through the real tracking API: each ``mergeProperties`` entry is
an identifier of its namespace, normalised and subject to every identity rule."""

from __future__ import annotations

import tempfile
from pathlib import Path

from onefold.collect.ingest import prepare
from onefold.collect.messages import Envelope, now_utc
from onefold.runtime import Onefold
from onefold.settings import Settings
from onefold.unify.graph import message_types
from onefold.unify.identifiers import (
    MAX_MERGE_PROPERTIES,
    extraction_sql,
    ignored_merge_properties,
    merge_namespaces,
)
from onefold.unify.rules import IdentityRules, NamespaceRule
from tests.server import Server
from tests.unify.http import get_profile, identity_keys, post


def test_a_merge_call_joins_two_profiles_and_the_merge_names_it(server: Server, source):
    run = source["name"]
    email, phone = f"{run}@example.com", "+14155550142"
    post(
        server,
        source,
        "/v1/identify",
        {"type": "identify", "userId": f"{run}-u", "traits": {"email": email}},
    )
    post(server, source, "/v1/identify",
          {"type": "identify", "anonymousId": f"{run}-a", "traits": {"phone": phone}})  # fmt: skip
    server.flush()
    with server.admin as admin:
        user = get_profile(admin, f"user_id:{run}-u")["profile_id"]
        device = get_profile(admin, f"anonymous_id:{run}-a")["profile_id"]
        assert user != device

        merge_id = f"merge-{run}"
        post(server, source, "/v1/merge", {
            "type": "merge", "messageId": merge_id, "anonymousId": f"{run}-m",
            "mergeProperties": [
                # written as people type them: normalised like any identifier
                {"type": "Email", "value": f"  {email.upper()} "},
                {"type": "mobile", "value": "(415) 555-0142"},
                # a type no namespace takes links nothing
                {"type": "shoe_size", "value": "42"},
            ],
        })  # fmt: skip
        server.flush()
        merged = get_profile(admin, f"phone:{phone}")
        assert merged["profile_id"] == user, "the older profile survives"
        assert get_profile(admin, f"anonymous_id:{run}-a")["profile_id"] == user
        assert get_profile(admin, f"profile:{device}")["profile_id"] == user
        assert identity_keys(merged) == {
            ("user_id", f"{run}-u"), ("email", email), ("phone", phone),
            ("anonymous_id", f"{run}-a"), ("anonymous_id", f"{run}-m"),
        }  # fmt: skip
        [merge] = [m for m in merged["merges"] if m["absorbed_id"] == device]
        assert merge["message_id"] == merge_id
        assert merge["method"] == "deterministic"
        assert (merge["namespace"], merge["value"]) == ("phone", phone)
        assert merge["message_received_at"] is not None
        timeline = admin.get(f"/api/v1/timeline/user_id:{run}-u", params={"type": "merge"})
        assert [e["message_id"] for e in timeline.json()["events"]] == [merge_id]
        ignored = admin.get("/api/v1/identity/health").json()["ignored_merge_properties"]
        assert {"type": "shoe_size", "reason": "unknown_type"}.items() <= next(
            row for row in ignored if row["type"] == "shoe_size"
        ).items()


def test_rudderstack_id_types_map_to_namespaces(server: Server, source):
    """``userId``/``user_id`` and ``anonymousId``/``anonymous_id`` name the namespaces; a
    merge call may carry nothing but its mergeProperties."""
    run = source["name"]
    post(server, source, "/v1/identify", {"type": "identify", "userId": f"{run}-u"})
    post(server, source, "/v1/page", {"type": "page", "anonymousId": f"{run}-a1"})
    post(server, source, "/v1/page", {"type": "page", "anonymousId": f"{run}-a2"})
    post(server, source, "/v1/merge", {"type": "merge", "mergeProperties": [
        {"type": "userId", "value": f"{run}-u"}, {"type": "anonymousId", "value": f"{run}-a1"},
    ]})  # fmt: skip
    post(server, source, "/v1/merge", {"type": "merge", "mergeProperties": [
        {"type": "user_id", "value": f"{run}-u"}, {"type": "anonymous_id", "value": f"{run}-a2"},
    ]})  # fmt: skip
    server.flush()
    with server.admin as admin:
        profile = get_profile(admin, f"user_id:{run}-u")
        assert {("anonymous_id", f"{run}-a1"), ("anonymous_id", f"{run}-a2")} <= identity_keys(
            profile
        )
        assert len(profile["merges"]) == 2


def test_a_merge_call_of_blocked_or_protected_values_links_nothing(fresh_server: Server):
    server = fresh_server
    source = server.create_source("merges", "web")
    run = "guarded"
    for person in ("p1", "p2"):
        post(server, source, "/v1/identify", {
            "type": "identify", "userId": f"{run}-{person}",
            "traits": {"email": f"{person}.{run}@example.com"},
        })  # fmt: skip
    server.flush()
    protected_id, blocked_id = f"merge-protected-{run}", f"merge-blocked-{run}"
    # two accounts: different user ids are never merged, whatever the merge call says
    post(server, source, "/v1/merge", {
        "type": "merge", "messageId": protected_id, "userId": f"{run}-p1",
        "mergeProperties": [{"type": "user_id", "value": f"{run}-p2"},
                            {"type": "email", "value": f"p2.{run}@example.com"}],
    })  # fmt: skip
    # junk values never link anything
    post(server, source, "/v1/merge", {
        "type": "merge", "messageId": blocked_id, "anonymousId": f"{run}-x",
        "mergeProperties": [{"type": "email", "value": "TEST@example.com"},
                            {"type": "userId", "value": "undefined"}],
    })  # fmt: skip
    server.flush()
    with server.admin as admin:
        one = get_profile(admin, f"user_id:{run}-p1")
        two = get_profile(admin, f"user_id:{run}-p2")
        assert one["profile_id"] != two["profile_id"]
        assert identity_keys(one) == {("user_id", f"{run}-p1"), ("email", f"p1.{run}@example.com")}
        assert identity_keys(two) == {("user_id", f"{run}-p2"), ("email", f"p2.{run}@example.com")}
        assert not one["merges"] and not two["merges"]
        refused = {(r["rule"], r["namespace"], r["value"], r["other_profile_id"])
                   for r in one["refused_links"] if r["message_id"] == protected_id}  # fmt: skip
        assert refused == {
            ("merge_protection", "user_id", f"{run}-p2", two["profile_id"]),
            ("merge_protection", "email", f"p2.{run}@example.com", two["profile_id"]),
        }

        junk = get_profile(admin, f"anonymous_id:{run}-x")
        assert identity_keys(junk) == {("anonymous_id", f"{run}-x")}
        assert admin.get("/api/v1/profiles/email:test@example.com").status_code == 404
        assert admin.get("/api/v1/profiles/user_id:undefined").status_code == 404
        # a server of its own: its health report holds this test's blocked values only
        health = admin.get("/api/v1/identity/health").json()
        assert sorted(health["blocked_values"], key=lambda b: b["namespace"]) == [
            {"namespace": "email", "value": "test@example.com", "occurrences": 1},
            {"namespace": "user_id", "value": "undefined", "occurrences": 1},
        ]


def test_limits_apply_to_merge_properties(server: Server, source):
    """A profile holds three phone numbers: a merge call giving a fourth is refused, and the
    refusal names the message."""
    run = source["name"]
    merge_id = f"merge-limit-{run}"
    phones = [f"+1212555017{i}" for i in range(1, 5)]
    post(server, source, "/v1/merge", {
        "type": "merge", "messageId": merge_id, "userId": f"{run}-u",
        "mergeProperties": [{"type": "phone", "value": phone} for phone in phones],
    })  # fmt: skip
    server.flush()
    with server.admin as admin:
        profile = get_profile(admin, f"user_id:{run}-u")
        assert identity_keys(profile) == {
            ("user_id", f"{run}-u"),
            *(("phone", p) for p in phones[:3]),
        }
        [refusal] = profile["refused_links"]
        assert (refusal["rule"], refusal["namespace"], refusal["value"]) == (
            "limit", "phone", phones[3],
        )  # fmt: skip
        assert refusal["message_id"] == merge_id


def test_merge_types_name_declared_namespaces_and_the_rest_is_counted():
    rules = IdentityRules()
    rules.namespaces["loyalty_card"] = NamespaceRule(priority=15, normalise="lower", limit=1)
    mapping = merge_namespaces(rules)
    assert mapping["userid"] == mapping["user_id"] == "user_id"
    assert mapping["anonymousid"] == mapping["anonymous_id"] == "anonymous_id"
    assert mapping["email"] == "email" and mapping["mobile"] == mapping["phone"] == "phone"
    assert mapping["loyalty_card"] == "loyalty_card"
    assert "shoe_size" not in mapping

    with tempfile.TemporaryDirectory() as directory:
        onefold = Onefold(Settings(data_dir=Path(directory), admin_token="t",
                                   unify_interval_ms=10**9, identity=rules))  # fmt: skip
        created = onefold.sources.create("app", "other")
        many = [{"type": "email", "value": f"m{i}@example.com"} for i in range(12)]
        messages = [
            {"type": "merge", "userId": "u1", "mergeProperties": [
                {"type": "Loyalty_Card", "value": " LC-77 "},
                {"type": "shoe_size", "value": "42"},
                {"type": "shoe_size", "value": "43"},
                {"value": "no type"},
            ]},
            {"type": "merge", "userId": "u2", "mergeProperties": many},
            # mergeProperties of other messages are not read
            {"type": "identify", "userId": "u3",
             "mergeProperties": [{"type": "email", "value": "u3@example.com"}]},
        ]  # fmt: skip
        onefold.log.append_blocking(
            prepare(messages, Envelope(created.id, "r", "t", now_utc())).data
        )
        onefold.flush()
        con = onefold.warehouse.cursor()
        rows = con.execute(extraction_sql(rules, where="TRUE")).fetchall()
        keys = {(row[0], row[4], row[5]) for row in rows}
        seq1, seq2, seq3 = sorted({row[0] for row in rows})
        assert {k[1:] for k in keys if k[0] == seq1} == {
            ("user_id", "u1"),
            ("loyalty_card", "lc-77"),
        }
        assert {k[1:] for k in keys if k[0] == seq3} == {("user_id", "u3")}
        # a batch known to hold no merge call leaves the entries out, and nothing else
        without = con.execute(extraction_sql(rules, where="TRUE", merges=False)).fetchall()
        assert {(row[0], row[4], row[5]) for row in without} == {
            key for key in keys if key[0] == seq3 or key[1] == "user_id"
        }
        assert message_types(con, 0, seq3) == {"merge", "identify"}
        assert message_types(con, seq2, seq3) == {"identify"}
        emails = {k[2] for k in keys if k[0] == seq2 and k[1] == "email"}
        assert emails == {f"m{i}@example.com" for i in range(MAX_MERGE_PROPERTIES)}
        assert (
            con.execute(
                "SELECT profile_id FROM identifiers WHERE namespace = 'loyalty_card'"
            ).fetchall()
            == con.execute(
                "SELECT profile_id FROM identifiers WHERE namespace = 'user_id' AND value = 'u1'"
            ).fetchall()
        )
        ignored = ignored_merge_properties(con, rules)
        assert ignored == [
            {"type": "email", "reason": "beyond_limit", "occurrences": 2, "last_seq": seq2},
            {"type": "shoe_size", "reason": "unknown_type", "occurrences": 2, "last_seq": seq1},
            {"type": None, "reason": "unknown_type", "occurrences": 1, "last_seq": seq1},
        ]
        onefold.close()
