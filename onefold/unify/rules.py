"""Identity rules: which identifiers a message carries, how their values are normalised,
and how they may link (priority, limits per profile, blocked values, merge protection).

Rules are data — settings under ``[identity]`` — so a changed rule can be previewed with a
dry run before it is applied.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field, field_validator

Normaliser = Literal["email", "phone", "lower", "trim"]
_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class NamespaceRule(BaseModel):
    """How one namespace of identifiers behaves."""

    priority: int = Field(
        description="Lower is stronger: when a message's identifiers cannot all link, the "
        "strongest decides which profile the message belongs to."
    )
    paths: list[str] = Field(
        default_factory=list,
        description="Where in a message the value is, e.g. 'traits.email'; first found wins.",
    )
    normalise: Normaliser = "trim"
    limit: int | None = Field(
        default=None, description="Most values of this namespace one profile may hold."
    )
    unique: bool = Field(
        default=False,
        description="Merge protection: two profiles with different values are never merged.",
    )
    blocked: list[str] = Field(default_factory=list, description="Values that never link.")

    @field_validator("paths")
    @classmethod
    def _paths(cls, paths: list[str]) -> list[str]:
        for path in paths:
            if not _PATH.match(path):
                raise ValueError(f"a path is dot-separated field names, not {path!r}")
        return paths


def _default_namespaces() -> dict[str, NamespaceRule]:
    return {
        "user_id": NamespaceRule(
            priority=10, paths=["userId"], limit=1, unique=True, normalise="trim"
        ),
        "email": NamespaceRule(
            priority=20,
            paths=["traits.email", "context.traits.email", "properties.email"],
            normalise="email",
            limit=5,
        ),
        "phone": NamespaceRule(
            priority=30,
            paths=["traits.phone", "context.traits.phone"],
            normalise="phone",
            limit=3,
        ),
        "anonymous_id": NamespaceRule(
            priority=90, paths=["anonymousId", "previousId"], limit=200, normalise="trim"
        ),
    }


DEFAULT_BLOCKED = [
    "", "null", "none", "nil", "undefined", "nan", "0", "-1", "unknown", "n/a", "na",
    "test", "anonymous", "guest", "test@example.com", "test@test.com", "none@none.com",
    "noemail@noemail.com", "no@email.com", "email@example.com", "user@example.com",
]  # fmt: skip


class IdentityRules(BaseModel):
    namespaces: dict[str, NamespaceRule] = Field(default_factory=_default_namespaces)
    blocked: list[str] = Field(
        default_factory=lambda: list(DEFAULT_BLOCKED),
        description="Values (after normalisation, compared lower-cased) that never link in "
        "any namespace.",
    )
    default_region: str = Field(
        default="US",
        description="Region for phone numbers written without a country code, when the "
        "message's context.locale does not name one.",
    )

    @field_validator("namespaces")
    @classmethod
    def _names(cls, namespaces: dict[str, NamespaceRule]) -> dict[str, NamespaceRule]:
        for name in namespaces:
            if not _NAME.match(name):
                raise ValueError(f"a namespace name is lower-case letters, digits, _: {name!r}")
        priorities = [rule.priority for rule in namespaces.values()]
        if len(set(priorities)) != len(priorities):
            raise ValueError("every namespace needs its own priority")
        return namespaces

    def ordered(self) -> list[str]:
        """Namespaces, strongest first."""
        return sorted(self.namespaces, key=lambda name: self.namespaces[name].priority)

    def is_blocked(self, namespace: str, value: str) -> bool:
        lowered = value.lower()
        rule = self.namespaces[namespace]
        return lowered in self._blocked_set or lowered in {v.lower() for v in rule.blocked}

    @property
    def _blocked_set(self) -> frozenset[str]:
        return frozenset(v.lower() for v in self.blocked)
