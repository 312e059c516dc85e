"""What a changed identity rule would do, before it is applied.

The whole stored history is resolved again in memory under the proposed rules (nothing is
written) and the resulting profiles are compared with today's: which profiles would merge,
which would split, and how the counts change.
"""

from __future__ import annotations

from collections import defaultdict

import duckdb

from onefold.unify import overrides
from onefold.unify.identifiers import extraction_sql, group_messages
from onefold.unify.resolver import Key, Resolver
from onefold.unify.rules import IdentityRules


def dry_run(con: duckdb.DuckDBPyConnection, proposed: IdentityRules, examples: int = 10) -> dict:
    blocked, never = overrides.active(con)
    rows = con.execute(extraction_sql(proposed, where="TRUE")).fetchall()
    extracted = group_messages(rows, proposed, blocked)
    resolver = Resolver(proposed, never)
    changes = resolver.resolve(extracted.messages)
    current: dict[Key, str] = {
        (ns, v): p
        for ns, v, p in con.execute(
            "SELECT namespace, value, profile_id FROM identifiers"
        ).fetchall()
    }
    new_to_current: dict[str, set[str]] = defaultdict(set)
    current_to_new: dict[str, set[str]] = defaultdict(set)
    for key, new_profile in resolver.owner.items():
        old = current.get(key)
        if old is not None:
            new_to_current[new_profile].add(old)
            current_to_new[old].add(new_profile)
    merging = {n: sorted(olds) for n, olds in new_to_current.items() if len(olds) > 1}
    splitting = {o: sorted(news) for o, news in current_to_new.items() if len(news) > 1}
    linked_now = {key for key in current if key not in resolver.owner}
    refusals: dict[str, int] = defaultdict(int)
    for refusal in changes.refusals:
        refusals[refusal.rule] += 1
    return {
        "profiles_now": len(set(current.values())),
        "profiles_after": len(set(resolver.owner.values())),
        "identifiers_now": len(current),
        "identifiers_after": len(resolver.owner),
        "identifiers_unlinked": len(linked_now),
        "merges": len(merging),
        "splits": len(splitting),
        "refused_links_after": dict(refusals),
        "merge_examples": [{"profiles_now": olds} for olds in list(merging.values())[:examples]],
        "split_examples": [
            {"profile_now": old, "into": len(news)}
            for old, news in list(splitting.items())[:examples]
        ],
    }
