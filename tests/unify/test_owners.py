"""The owner index as loaded from the warehouse: every identifier's profile, and every live
profile's anchor and identifiers, whatever shape the graph is in."""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import pytest

from onefold.store import Warehouse
from onefold.unify.owners import OwnerIndex


@pytest.fixture
def con(tmp_path) -> Iterator[duckdb.DuckDBPyConnection]:
    """The warehouse's own identity tables, empty."""
    warehouse = Warehouse(tmp_path / "w.duckdb")
    yield warehouse.cursor()
    warehouse.close()


def test_load_reads_every_identifier_and_every_live_profile(con):
    con.execute(
        """
        INSERT INTO profile_anchors
            (profile_id, anchor_namespace, anchor_value, anchor_seq, created_at)
        SELECT *, now() FROM (VALUES
            ('pr_a', 'email', 'a@x.com', 3),      -- anchor among its identifiers
            ('pr_b', 'anonymous_id', 'b0', 5),    -- anchor moved away (an unmerge)
            ('pr_c', 'user_id', 'c', 7),          -- no identifiers left
            ('pr_d', 'anonymous_id', 'd0', 9));   -- absorbed
        INSERT INTO absorbed_profiles VALUES ('pr_d', 'pr_a');
        INSERT INTO identifiers (namespace, value, profile_id, first_seq) VALUES
            ('anonymous_id', 'a1', 'pr_a', 1), ('email', 'a@x.com', 'pr_a', 3),
            ('user_id', 'a', 'pr_a', 4), ('anonymous_id', 'd0', 'pr_a', 9),
            ('user_id', 'b', 'pr_b', 6), ('anonymous_id', 'b1', 'pr_b', 8),
            ('email', 'ghost@x.com', 'pr_gone', 2);     -- a profile that is not live
        """
    )
    index = OwnerIndex.load(con)
    assert index.owner == {
        ("anonymous_id", "a1"): "pr_a",
        ("email", "a@x.com"): "pr_a",
        ("user_id", "a"): "pr_a",
        ("anonymous_id", "d0"): "pr_a",
        ("user_id", "b"): "pr_b",
        ("anonymous_id", "b1"): "pr_b",
        ("email", "ghost@x.com"): "pr_gone",
    }
    assert set(index.profiles) == {"pr_a", "pr_b", "pr_c"}
    anchor, seq, keys = index.profiles["pr_a"]
    assert (anchor, seq) == (("email", "a@x.com"), 3)
    assert sorted(keys) == sorted(k for k, p in index.owner.items() if p == "pr_a")
    assert any(key is anchor for key in keys)  # the anchor is the identifier's own tuple
    assert index.profiles["pr_b"][:2] == (("anonymous_id", "b0"), 5)
    assert sorted(index.profiles["pr_b"][2]) == [("anonymous_id", "b1"), ("user_id", "b")]
    assert index.profiles["pr_c"] == (("user_id", "c"), 7, ())
    # the identifiers of a profile share one id string
    ids = [profile_id for key, profile_id in index.owner.items() if profile_id == "pr_a"]
    assert all(profile_id is ids[0] for profile_id in ids)
    assert len(index) == 7


def test_load_of_an_empty_graph(con):
    index = OwnerIndex.load(con)
    assert index.owner == {} and index.profiles == {}
