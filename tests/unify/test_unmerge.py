"""Overrides re-derive the affected component; the result equals a full rebuild."""

from __future__ import annotations

from pathlib import Path

import pytest

from onefold.runtime import Onefold
from onefold.unify.overrides import OverrideError
from onefold.unify.profiles import Lookup, find_profile
from tests.unify.households import load_households

SNAPSHOT = {
    "identifiers": "SELECT namespace, value, profile_id, first_seq, source_id FROM identifiers",
    "profiles": "SELECT profile_id, anchor_namespace, anchor_value, anchor_seq, merged_into "
    "FROM identity_profiles",
    "merges": "SELECT seq, message_id, surviving_id, absorbed_id, namespace, value "
    "FROM identity_merges WHERE method = 'deterministic'",
    "refusals": "SELECT seq, namespace, value, coalesce(p.merged_into, x.profile_id), rule "
    "FROM identity_refusals x LEFT JOIN identity_profiles p USING (profile_id)",
    "events": "SELECT seq, namespace, value FROM event_identity",
    "traits": "SELECT profile_id, trait, value, seq FROM profile_traits",
    "computed": "SELECT profile_id, name, value FROM computed_traits",
}


def _snapshot(onefold: Onefold) -> dict[str, set]:
    con = onefold.warehouse.cursor()
    return {name: set(con.execute(sql).fetchall()) for name, sql in SNAPSHOT.items()}


@pytest.fixture
def onefold(tmp_path: Path):
    instance = load_households(tmp_path, limit=800)
    yield instance
    instance.close()


def _owner(onefold: Onefold, namespace: str, value: str) -> str | None:
    return find_profile(onefold.warehouse.cursor(), Lookup(namespace, value))


def test_block_splits_what_a_junk_identifier_joined_and_equals_a_rebuild(onefold):
    assert _owner(onefold, "anonymous_id", "walk-in-1") == _owner(
        onefold, "anonymous_id", "walk-in-2"
    )
    result = onefold.identity.add_override(
        "block", ("email", "shop@example.com"), None, "the shop's own address"
    )
    assert len(result["profiles_before"]) == 1
    assert len(result["profiles_after"]) == 2
    assert result["events_replayed"] >= 2
    assert _owner(onefold, "anonymous_id", "walk-in-1") != _owner(
        onefold, "anonymous_id", "walk-in-2"
    )
    assert _owner(onefold, "email", "shop@example.com") is None
    after_override = _snapshot(onefold)
    onefold.identity.rebuild()
    assert _snapshot(onefold) == after_override
    con = onefold.warehouse.cursor()
    (action, before, after) = con.execute(
        "SELECT action, profiles_before, profiles_after FROM identity_audit"
    ).fetchone()
    assert action == "override:block" and "walk-in-2" in before and "walk-in-2" in after


def test_never_link_splits_a_profile_and_equals_a_rebuild(onefold):
    pc = _owner(onefold, "anonymous_id", "family-pc")
    assert pc == _owner(onefold, "user_id", "parent-1")
    onefold.identity.add_override(
        "never_link", ("anonymous_id", "family-pc"), ("user_id", "parent-1"), "shared computer"
    )
    assert _owner(onefold, "anonymous_id", "family-pc") != _owner(onefold, "user_id", "parent-1")
    after_override = _snapshot(onefold)
    onefold.identity.rebuild()
    assert _snapshot(onefold) == after_override


def test_overrides_are_validated(onefold):
    with pytest.raises(OverrideError):
        onefold.identity.add_override("never_link", ("email", "a@example.com"), None, "x")
    with pytest.raises(OverrideError):
        onefold.identity.add_override("block", ("fax", "1"), None, "x")
    with pytest.raises(OverrideError):
        onefold.identity.add_override("block", ("email", "a@example.com"), None, " ")
