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
    # Junk values (none@none.com, 00000000, a shop's own phone, 1900-01-01) are found by
    # how they spread over the data and count as missing (see junk.py): a contact value
    # held by at least junk_min_people people (told apart by their initials), or on more
    # than junk_max_records records.
    junk_detection: bool = True
    junk_min_people: int = 6
    junk_max_records: int = 1000
    # Region (ISO code, e.g. "GB") for phone numbers written nationally in records whose
    # country column is missing or not an ISO code; None: such numbers stay digits only.
    phone_region: str | None = None
    auto_merge: float = 0.95
    review_low: float = 0.5
    # Columns that veto an automatic merge when both records have a value and they
    # differ (e.g. two different user_ids). "birth_date" may be added where a date of
    # birth is trusted.
    strong_ids: list[str] = field(default_factory=lambda: ["user_id"])
    # Guards: a pair whose records clearly disagree on one of these is not merged
    # automatically (it goes to review with vetoed_by set) and its records are kept apart
    # in clustering, however much else they share. "first_name": both given and neither
    # equal, similar, a nickname, a prefix, one typo away nor swapped with the surname (a
    # household: same address, surname, landline, family e-mail); a date field such as
    # "birth_date": both given and beyond every fuzzy level of the date comparison (a
    # namesake). Unlike strong_ids, typos and nicknames do not count as disagreement.
    # A guard is active only where the trained model says one person's records disagree
    # that way rarely: m of the name level "same last name, other first name" or of the
    # date level "different" below guard_max_m (on FEBRL, whose errors replace whole
    # names, it is about 8%; on customer records 0.5%).
    guards: list[str] = field(default_factory=lambda: ["first_name", "birth_date"])
    guard_max_m: float = 0.02
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
