"""What to compare, how to block, and when a pair is merged: `MatchConfig` and `Field`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

FieldKind = Literal[
    "name",  # first_name + last_name (+ full_name) compared together as one person name
    "date",  # a date of birth: exact, one typo, month/year off, ten years off
    "email",
    "phone",
    "postcode",
    "street",
    "city",
    "id",  # an identifier that may carry typos (e.g. a social-security number)
    "exact",  # any other attribute: equal or not, weighted by how common the value is
]

# Columns that `match_records` understands; each is optional except record_id.
KNOWN_COLUMNS = (
    "record_id",
    "first_name",
    "last_name",
    "full_name",
    "email",
    "phone",
    "birth_date",
    "street",
    "city",
    "postcode",
    "country",
    "gender",
    "user_id",
)

# The comparison used for each known column when `MatchConfig.fields` is not given.
DEFAULT_KINDS: dict[str, FieldKind] = {
    "birth_date": "date",
    "email": "email",
    "phone": "phone",
    "postcode": "postcode",
    "street": "street",
    "city": "city",
    "gender": "exact",
    "country": "exact",
}


@dataclass(frozen=True)
class Field:
    """One comparison: `column` of the records, compared as `kind`.

    The "name" kind uses first_name, last_name and full_name together (its `column` is
    just its label, "name"); every other kind reads one column.
    """

    column: str
    kind: FieldKind


@dataclass
class MatchConfig:
    """How records are compared, which pairs are looked at, and what happens to them.

    Thresholds are on the calibrated match probability of a pair:
    `auto_merge` and above → "merge"; `review_low` up to `auto_merge` → "review";
    below → "reject" (and not returned).
    """

    # None: every known column present in the records, with its default kind.
    fields: list[Field] | None = None
    # Compared as well, e.g. [Field("occupation", "exact"), Field("ssn", "id")].
    extra_fields: list[Field] = field(default_factory=list)
    # Extra blocking keys, each a tuple of SQL expressions over normalised columns that
    # must all be equal (e.g. ("last_name", "substr(birth_date, 1, 4)")); the defaults
    # built from the columns present are always used.
    extra_blocking_keys: list[tuple[str, ...]] = field(default_factory=list)
    # A blocking-key value shared by more records than this generates no pairs (common
    # values like a popular surname + city are left to other, more specific keys).
    max_block_size: int = 50
    # And each key yields at most max(this × records, min_pairs_per_key) pairs (its largest
    # blocks are dropped first): small data sets are blocked generously, big ones tightly.
    max_pairs_per_key_per_record: float = 0.5
    min_pairs_per_key: int = 200_000
    auto_merge: float = 0.95
    review_low: float = 0.5
    # Columns that veto an automatic merge when both records have a value and they
    # differ (e.g. two different user_ids). "birth_date" may be added where a date of
    # birth is trusted.
    strong_ids: list[str] = field(default_factory=lambda: ["user_id"])
    # Anti-chaining: no cluster grows past this many records, and two groups of records
    # are joined only when this fraction of their cross pairs scored at least review_low.
    max_cluster_size: int = 100
    min_link_density: float = 0.2
    # Training: u from this many random pairs; m by EM on at most this many pairs; the
    # prior by EM over (a sample of at most this many) candidate pairs.
    u_sample_pairs: int = 1_000_000
    em_max_pairs: int = 500_000
    prior_sample_pairs: int = 200_000
    seed: int = 42
