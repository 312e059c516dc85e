"""The deterministic identity resolver: messages in, profiles out, one message at a time in
``seq`` order, applying the identity rules.

For each message, its identifiers are taken strongest namespace first. The first one picks
the target profile (its owner, or a new profile anchored on it). Every other identifier is
then attached to the target if it is new, or its profile is merged into the target — unless
a rule refuses: the namespace's limit would be exceeded, two different values of a unique
namespace would meet (merge protection), or a "never link" override forbids it. A refused
link is recorded with its rule and the message is still attributed to the target.

Profile ids are derived from a profile's anchor — the identifier that created it — so the
same history always gives the same ids. On a merge the profile whose anchor was seen first
survives (ties broken by namespace priority, then value); the other's identifiers move to it.

This module holds no database code: the same resolver runs the real-time micro-batches
(on the part of the graph a batch touches) and the replays that rebuild or unmerge.
"""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from onefold.unify.rules import IdentityRules

Key = tuple[str, str]  # (namespace, value)


def profile_id_for(anchor: Key, _sha256=hashlib.sha256) -> str:
    return "pr_" + _sha256(f"{anchor[0]}\x1f{anchor[1]}".encode()).hexdigest()[:24]


class Message(NamedTuple):  # a named tuple: immutable, and cheap to create by the million
    seq: int
    message_id: str
    source_id: str
    identifiers: tuple[Key, ...]  # normalised, unblocked, strongest first


@dataclass(slots=True)
class Profile:
    id: str
    anchor: Key
    anchor_seq: int
    values: dict[str, set[str]] = field(default_factory=dict)

    def order(self, priority: dict[str, int]) -> tuple:
        return (self.anchor_seq, priority[self.anchor[0]], self.anchor[1])


@dataclass(frozen=True)
class Merge:
    seq: int
    message_id: str
    surviving_id: str
    absorbed_id: str
    namespace: str
    value: str


@dataclass(frozen=True)
class Refusal:
    seq: int
    message_id: str
    namespace: str
    value: str
    profile_id: str
    other_profile_id: str | None
    rule: str
    detail: str


@dataclass
class Changes:
    """What resolving a run of messages did, for the store to write."""

    new_identifiers: list[tuple[str, str, str, int, str]] = field(default_factory=list)
    # (namespace, value, profile_id, first_seq, source_id)
    merges: list[Merge] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    attributions: list[tuple[int, str, str]] = field(default_factory=list)
    # (seq, namespace, value): the identifier through which the event reaches its profile
    born: dict[str, Profile] = field(default_factory=dict)  # created in this run, alive or not


class Resolver:
    """Resolver state for the part of the identity graph it has been given."""

    def __init__(
        self,
        rules: IdentityRules,
        never_link: Iterable[tuple[Key, Key]] = (),
    ) -> None:
        self.rules = rules
        self.priority = {name: rule.priority for name, rule in rules.namespaces.items()}
        self.limit = {name: rule.limit for name, rule in rules.namespaces.items()}
        self.unique = {name for name, rule in rules.namespaces.items() if rule.unique}
        self.owner: dict[Key, str] = {}
        self.profiles: dict[str, Profile] = {}
        self.redirect: dict[str, str] = {}  # absorbed id -> surviving id, in this run
        self.never: dict[Key, set[Key]] = {}
        for a, b in never_link:
            self.never.setdefault(a, set()).add(b)
            self.never.setdefault(b, set()).add(a)
        self.changes = Changes()

    # -- loading existing state ------------------------------------------------------

    def load_profile(self, profile_id: str, anchor: Key, anchor_seq: int) -> None:
        self.profiles[profile_id] = Profile(profile_id, anchor, anchor_seq)

    def load_identifier(self, key: Key, profile_id: str) -> None:
        self.owner[key] = profile_id
        self.profiles[profile_id].values.setdefault(key[0], set()).add(key[1])

    # -- resolving -------------------------------------------------------------------

    def resolve(self, messages: Iterable[Message]) -> Changes:
        # A batch allocates many small containers and no reference cycles: pausing the cyclic
        # garbage collector meanwhile saves it from walking them again and again.
        paused = gc.isenabled()
        gc.disable()
        try:
            return self._resolve(messages)
        finally:
            if paused:
                gc.enable()

    def _resolve(self, messages: Iterable[Message]) -> Changes:
        # The real-time graph's hot path, written for speed: state in locals, and the common
        # cases inline (an identifier already on the target, or a new one no rule stops);
        # rules, merges and refusals in methods.
        owner, profiles, changes = self.owner, self.profiles, self.changes
        born, new_identifiers = changes.born, changes.new_identifiers
        attributions = changes.attributions
        limits, unique, never = self.limit, self.unique, self.never
        owner_get = owner.get
        for message in messages:
            identifiers = message.identifiers
            if not identifiers:
                continue
            first = identifiers[0]
            target_id = owner_get(first)
            target = born_now = None
            if target_id is None:  # a new profile, anchored on the strongest identifier
                target_id = born_now = profile_id_for(first)
                target = Profile(target_id, first, message.seq, {first[0]: {first[1]}})
                profiles[target_id] = born[target_id] = target
                owner[first] = target_id
                new_identifiers.append(
                    (first[0], first[1], target_id, message.seq, message.source_id)
                )
            for key in identifiers[1:]:
                current = owner_get(key)
                if current == target_id:
                    continue
                if target is None:
                    target = profiles[target_id]
                if current is None:
                    namespace = key[0]
                    held = target.values.get(namespace)
                    limit = limits[namespace]
                    if (
                        (held and namespace in unique)
                        or (limit is not None and (len(held) if held else 0) >= limit)
                        or (never and key in never)
                    ):
                        refusal = self._attach_refusal(target, key)
                        if refusal:
                            self._refuse(message, key, target_id, None, *refusal)
                            continue
                    if held is None:
                        target.values[namespace] = {key[1]}
                    else:
                        held.add(key[1])
                    owner[key] = target_id
                    new_identifiers.append(
                        (namespace, key[1], target_id, message.seq, message.source_id)
                    )
                else:
                    other = profiles[current]
                    refusal = self._merge_refusal(target, other)
                    if refusal:
                        self._refuse(message, key, target_id, current, *refusal)
                        continue
                    target = self._merge(target, other, message, key, born_now)
                    target_id = target.id
            attributions.append((message.seq, first[0], first[1]))
        return changes

    def link(self, seq: int, message_id: str, a: Key, b: Key) -> None:
        """Join the profiles holding ``a`` and ``b`` as a message holding both would, but
        adding neither: a link between identifiers no profile holds (any more) does
        nothing. The rules apply; a refused link is recorded like any other."""
        owner_a, owner_b = self.owner.get(a), self.owner.get(b)
        if owner_a is None or owner_b is None or owner_a == owner_b:
            return
        target, other = self.profiles[owner_a], self.profiles[owner_b]
        message = Message(seq, message_id, "", (a, b))
        refusal = self._merge_refusal(target, other)
        if refusal:
            self._refuse(message, b, owner_a, owner_b, *refusal)
            return
        self._merge(target, other, message, b, None)

    def surviving(self, profile_id: str) -> str:
        """Where a profile absorbed during this run ended up."""
        while profile_id in self.redirect:
            profile_id = self.redirect[profile_id]
        return profile_id

    def _attach_refusal(self, target: Profile, key: Key) -> tuple[str, str] | None:
        namespace = key[0]
        held = target.values.get(namespace, ())
        if namespace in self.unique and held:
            return "merge_protection", f"the profile already has a different {namespace}"
        limit = self.limit[namespace]
        if limit is not None and len(held) >= limit:
            return "limit", f"the profile already holds {limit} {namespace} values"
        for partner in self.never.get(key, ()):
            if self.owner.get(partner) == target.id:
                return "never_link", f"an override keeps it apart from {partner[0]}:{partner[1]}"
        return None

    def _merge_refusal(self, a: Profile, b: Profile) -> tuple[str, str] | None:
        for namespace in self.unique:
            mine, theirs = a.values.get(namespace), b.values.get(namespace)
            if mine and theirs and mine != theirs:
                return "merge_protection", f"the profiles have different {namespace} values"
        for namespace, values in b.values.items():
            limit = self.limit[namespace]
            if limit is not None:
                combined = len(values | a.values.get(namespace, set()))
                if combined > limit:
                    return "limit", f"merged, the profile would hold {combined} {namespace} values"
        if self.never:
            for namespace, values in b.values.items():
                for value in values:
                    for partner in self.never.get((namespace, value), ()):
                        if self.owner.get(partner) == a.id:
                            return "never_link", (
                                f"an override keeps {namespace}:{value} apart from "
                                f"{partner[0]}:{partner[1]}"
                            )
        return None

    def _merge(
        self, a: Profile, b: Profile, message: Message, key: Key, born_now: str | None
    ) -> Profile:
        survivor, absorbed = (a, b) if a.order(self.priority) <= b.order(self.priority) else (b, a)
        for namespace, values in absorbed.values.items():
            survivor.values.setdefault(namespace, set()).update(values)
            for value in values:
                self.owner[(namespace, value)] = survivor.id
        del self.profiles[absorbed.id]
        self.redirect[absorbed.id] = survivor.id
        if absorbed.id != born_now:  # a profile born by this very message is no merge
            self.changes.merges.append(
                Merge(message.seq, message.message_id, survivor.id, absorbed.id, *key)
            )
        return survivor

    def _refuse(self, message: Message, key: Key, profile_id: str, other: str | None,
                rule: str, detail: str) -> None:  # fmt: skip
        self.changes.refusals.append(
            Refusal(message.seq, message.message_id, *key, profile_id, other, rule, detail)
        )
