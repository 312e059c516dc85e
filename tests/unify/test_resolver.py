"""The deterministic resolver's rules, message by message."""

from __future__ import annotations

from onefold.unify.resolver import Message, Resolver, profile_id_for
from onefold.unify.rules import IdentityRules, NamespaceRule

RULES = IdentityRules()


def msg(seq: int, *keys: tuple[str, str]) -> Message:
    priority = {n: r.priority for n, r in RULES.namespaces.items()}
    ordered = tuple(sorted(keys, key=lambda k: (priority[k[0]], k[1])))
    return Message(seq, f"m{seq}", "src", ordered)


def partition(resolver: Resolver) -> dict[str, set[tuple[str, str]]]:
    groups: dict[str, set] = {}
    for key, owner in resolver.owner.items():
        groups.setdefault(owner, set()).add(key)
    return groups


def test_anonymous_visitor_becomes_known_across_devices():
    r = Resolver(RULES)
    r.resolve([
        msg(1, ("anonymous_id", "laptop")),
        msg(2, ("anonymous_id", "phone")),
        msg(3, ("anonymous_id", "laptop"), ("user_id", "ana")),
        msg(4, ("anonymous_id", "phone"), ("user_id", "ana")),
    ])  # fmt: skip
    (profile,) = partition(r).values()
    assert profile == {("anonymous_id", "laptop"), ("anonymous_id", "phone"), ("user_id", "ana")}
    # the profile first seen survives, and its id comes from its anchor
    assert r.owner[("user_id", "ana")] == profile_id_for(("anonymous_id", "laptop"))
    (merge,) = r.changes.merges
    assert merge.seq == 4
    assert merge.absorbed_id == profile_id_for(("anonymous_id", "phone"))


def test_merge_protection_keeps_two_user_ids_apart_and_records_why():
    r = Resolver(RULES)
    r.resolve([
        msg(1, ("user_id", "ana"), ("email", "family@example.com")),
        msg(2, ("user_id", "ben"), ("email", "family@example.com")),
    ])  # fmt: skip
    assert len(partition(r)) == 2
    (refusal,) = r.changes.refusals
    assert refusal.rule == "merge_protection"
    assert (refusal.namespace, refusal.value) == ("email", "family@example.com")
    assert r.changes.attributions[1] == (2, "user_id", "ben")


def test_limit_refuses_the_link_over_it():
    rules = IdentityRules(namespaces={
        **IdentityRules().namespaces,
        "email": NamespaceRule(priority=20, paths=["traits.email"], normalise="email", limit=2),
    })  # fmt: skip
    r = Resolver(rules)
    r.resolve([msg(i, ("user_id", "ana"), ("email", f"e{i}@example.com")) for i in range(1, 4)])
    emails = {v for (ns, v) in partition(r)[r.owner[("user_id", "ana")]] if ns == "email"}
    assert emails == {"e1@example.com", "e2@example.com"}
    assert [(x.rule, x.value) for x in r.changes.refusals] == [("limit", "e3@example.com")]


def test_strongest_identifier_decides_when_links_conflict():
    r = Resolver(RULES)
    r.resolve([
        msg(1, ("anonymous_id", "shared-pc"), ("user_id", "ana")),
        msg(2, ("anonymous_id", "shared-pc"), ("user_id", "ben")),
    ])  # fmt: skip
    ben = r.owner[("user_id", "ben")]
    assert ben != r.owner[("user_id", "ana")]
    assert r.changes.attributions[-1] == (2, "user_id", "ben")
    assert r.changes.refusals[0].other_profile_id == r.owner[("user_id", "ana")]


def test_never_link_override():
    a, b = ("anonymous_id", "kiosk"), ("user_id", "ana")
    r = Resolver(RULES, never_link=[(a, b)])
    r.resolve([msg(1, a), msg(2, a, b)])
    assert r.owner[a] != r.owner[b]
    assert r.changes.refusals[0].rule == "never_link"


def test_same_history_same_profiles_whatever_the_batching():
    history = [
        msg(1, ("anonymous_id", "a1")),
        msg(2, ("anonymous_id", "a2"), ("email", "x@example.com")),
        msg(3, ("anonymous_id", "a1"), ("email", "x@example.com")),
        msg(4, ("user_id", "u1"), ("anonymous_id", "a2")),
        msg(5, ("user_id", "u2"), ("anonymous_id", "a1")),
        msg(6, ("phone", "+34600000000"), ("user_id", "u1")),
    ]
    whole = Resolver(RULES)
    whole.resolve(history)
    again = Resolver(RULES)
    again.resolve(history)
    assert whole.owner == again.owner
    assert [m.absorbed_id for m in whole.changes.merges] == [
        m.absorbed_id for m in again.changes.merges
    ]
