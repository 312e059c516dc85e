"""Tests for the labelled customer-records generator (onefold.demo.customer_records)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import unicodedata
from collections import defaultdict

import pyarrow as pa
import pytest

from onefold.demo.customer_records import (
    _NICKNAMES,
    SOURCES,
    _phone_keys,
    exact_stitch_baseline,
    generate_customer_records,
    pairwise_scores,
)

PEOPLE = 4_500  # about 10,000 records
SEED = 7
STRING_COLUMNS = (
    "record_id",
    "source",
    "first_name",
    "last_name",
    "email",
    "phone",
    "birth_date",
    "street",
    "city",
    "postcode",
    "country",
    "user_id",
    "crm_id",
    "variant",
)


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return generate_customer_records(PEOPLE, seed=SEED)


@pytest.fixture(scope="module")
def rows(table: pa.Table) -> list[dict]:
    return table.to_pylist()


def tags(row: dict) -> set[str]:
    return set(row["variant"].split(",")) if row["variant"] else set()


def by_person(rows: list[dict]) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = defaultdict(list)
    for row in rows:
        out[row["person_id"]].append(row)
    return out


def digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def edit_distance(a: str, b: str) -> int:
    """Damerau-Levenshtein (optimal string alignment): a transposition is one edit."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(
                d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1])
            )
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[-1][-1]


# ------------------------------------------------------------------------- shape and seed


def test_same_seed_same_table_and_another_seed_another(table: pa.Table) -> None:
    assert generate_customer_records(PEOPLE, seed=SEED).equals(table)
    other = generate_customer_records(PEOPLE, seed=SEED + 1)
    assert not other.equals(table)


def test_same_seed_same_table_in_another_process() -> None:
    """Nothing depends on Python's per-process string hashing (Faker's it_IT cities once
    did)."""
    code = (
        "import sys; from onefold.demo.customer_records import generate_customer_records as g;"
        "sys.stdout.write(repr(g(300, seed=3, countries=('IT',)).to_pydict()))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert other == repr(generate_customer_records(300, seed=3, countries=("IT",)).to_pydict())


def test_columns_and_types(table: pa.Table) -> None:
    assert table.column_names == [
        "record_id",
        "source",
        "person_id",
        "household_id",
        "first_name",
        "last_name",
        "email",
        "phone",
        "birth_date",
        "street",
        "city",
        "postcode",
        "country",
        "user_id",
        "crm_id",
        "junk",
        "variant",
    ]
    for name in STRING_COLUMNS:
        assert table.schema.field(name).type == pa.string(), name
    assert table.schema.field("person_id").type == pa.int64()
    assert table.schema.field("household_id").type == pa.int64()
    assert table.schema.field("junk").type == pa.bool_()
    for name in ("record_id", "source", "person_id", "household_id", "junk", "variant"):
        assert table.column(name).null_count == 0, name


def test_record_ids_sources_and_counts(table: pa.Table, rows: list[dict]) -> None:
    ids = table.column("record_id").to_pylist()
    assert len(set(ids)) == len(ids)
    for row in rows:
        source, _, n = row["record_id"].rpartition("-")
        assert source == row["source"] and n.isdigit()
    assert {row["source"] for row in rows} == set(SOURCES)
    people = by_person(rows)
    assert len(people) == PEOPLE
    assert 1.5 <= len(rows) / PEOPLE <= 3.0
    counts = [len(v) for v in people.values()]
    assert min(counts) == 1 and max(counts) >= 6
    # records are shuffled: a person's records are not side by side
    pids = table.column("person_id").to_pylist()
    assert sum(a == b for a, b in zip(pids, pids[1:], strict=False)) < len(pids) * 0.01


def test_values_look_like_what_they_are(rows: list[dict]) -> None:
    for row in rows:
        if row["birth_date"] is not None:
            assert re.fullmatch(r"(19|20)\d\d-\d\d-\d\d", row["birth_date"])
        assert row["country"] in {None, "ES", "DE", "FR", "GB", "IT", "NL", "US"}
        if row["email"] is not None:
            assert "@" in row["email"]
        if row["phone"] is not None:
            assert re.fullmatch(r"[+0-9 ()./-]{8,22}", row["phone"]), row["phone"]
        if not row["junk"] and row["email"] and "@" in row["email"]:
            domain = row["email"].strip().lower().rpartition("@")[2]
            assert domain.endswith(".example"), row["email"]


def test_ids_per_source(rows: list[dict]) -> None:
    owners: dict[str, set[int]] = defaultdict(set)
    accounts: dict[int, set[str]] = defaultdict(set)
    crm_ids = []
    for row in rows:
        if row["source"] in ("web", "marketplace"):
            assert row["user_id"] is not None
            owners[row["user_id"]].add(row["person_id"])
            accounts[row["person_id"]].add(row["user_id"])
        else:
            assert row["user_id"] is None
        if row["source"] == "crm":
            crm_ids.append(row["crm_id"])
        else:
            assert row["crm_id"] is None
    assert all(len(p) == 1 for p in owners.values())  # never shared
    assert all(len(u) == 1 for u in accounts.values())  # at most one per person
    assert None not in crm_ids and len(set(crm_ids)) == len(crm_ids)


def test_missing_fields_per_source(rows: list[dict]) -> None:
    def share(source: str, column: str) -> float:
        sel = [r for r in rows if r["source"] == source]
        return sum(r[column] is not None for r in sel) / len(sel)

    assert share("newsletter", "email") == 1.0
    assert share("newsletter", "phone") < 0.1
    assert share("newsletter", "street") == 0.0
    assert share("till", "phone") > 0.9
    assert share("till", "street") == 0.0
    assert share("till", "email") < 0.3
    assert share("till", "first_name") < 0.6
    assert share("crm", "street") > 0.8 and share("crm", "birth_date") > 0.4
    assert share("marketplace", "street") > 0.9
    for row in rows:
        if row["source"] == "support":
            assert row["email"] is not None or row["phone"] is not None


# --------------------------------------------------------------------------- ground truth


def test_households_and_people_are_consistent(rows: list[dict]) -> None:
    household_of: dict[int, int] = {}
    members: dict[int, set[int]] = defaultdict(set)
    for row in rows:
        assert household_of.setdefault(row["person_id"], row["household_id"]) == row["household_id"]
        members[row["household_id"]].add(row["person_id"])
    sizes = [len(m) for m in members.values()]
    assert max(sizes) == 5 and min(sizes) == 1
    assert sum(s > 1 for s in sizes) / len(sizes) > 0.1
    # household members are different people with their own records
    assert sum(s for s in sizes if s > 1) > 0.3 * PEOPLE


def test_genuine_contacts_stay_within_a_household(rows: list[dict]) -> None:
    """Apart from junk and mistyped digits, no e-mail or phone links two households."""
    emails: dict[str, set[int]] = defaultdict(set)
    phones: dict[str, set[int]] = defaultdict(set)
    for row in rows:
        t = tags(row)
        if row["email"] and "junk:email" not in t:
            local, _, domain = row["email"].strip().lower().partition("@")
            emails[local.split("+")[0] + "@" + domain].add(row["household_id"])
    for row, key in zip(
        rows, _phone_keys([r["phone"] for r in rows], [r["country"] for r in rows]), strict=True
    ):
        if key and not tags(row) & {"junk:phone", "junk:shop_phone", "phone:typo"}:
            phones[key].add(row["household_id"])
    assert emails and phones
    assert max(len(h) for h in emails.values()) == 1
    assert max(len(h) for h in phones.values()) == 1


# ------------------------------------------------------------------------------ hard cases


def test_every_hard_case_is_present(rows: list[dict]) -> None:
    seen = set().union(*(tags(r) for r in rows))
    expected = {
        "nickname",
        "surname1",
        "initial",
        "ascii",
        "translit",
        "typo:first",
        "typo:last",
        "typo:street",
        "upper",
        "lower",
        "swapped",
        "email:case",
        "email:dots",
        "email:tag",
        "email:family",
        "email:relay",
        "phone:landline",
        "phone:typo",
        "birth:swapped",
        "street:abbrev",
        "postcode:nospace",
        "moved",
        "new_phone",
        "new_email",
        "namesake",
        "junk:email",
        "junk:phone",
        "junk:shop_phone",
        "junk:name",
        "junk:birth",
    } | {f"phone:{s}" for s in ("e164", "intl", "intl00", "national", "digits", "local")}
    assert expected <= seen, expected - seen


def fold(text: str, german: bool = False) -> str:
    if german:
        for a, b in (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("Ä", "Ae"), ("Ö", "Oe"), ("Ü", "Ue")):
            text = text.replace(a, b)
    text = unicodedata.normalize("NFKD", text.replace("ß", "ss"))
    return "".join(ch for ch in text if not unicodedata.combining(ch))


def test_nicknames_and_dropped_diacritics(rows: list[dict]) -> None:
    nicknames = {n for table in _NICKNAMES.values() for _, nicks in table.values() for n in nicks}
    first_changes = {"upper", "lower", "ascii", "translit", "typo:first", "swapped", "initial"}
    nicked = [r for r in rows if "nickname" in tags(r) and not tags(r) & first_changes]
    assert len(nicked) > 50
    assert all(r["first_name"] in nicknames for r in nicked)
    assert len({r["first_name"] for r in nicked}) > 20
    stripped = transliterated = 0
    for records in by_person(rows).values():
        names = {r["last_name"] for r in records if r["last_name"]}
        for name in names:
            if not name.isascii():
                stripped += fold(name) in names
                transliterated += fold(name, german=True) in names and "ß" not in name
    assert stripped > 50 and transliterated > 5


def test_typos_are_one_edit(rows: list[dict]) -> None:
    other_changes = {
        "upper",
        "lower",
        "ascii",
        "translit",
        "swapped",
        "surname1",
        "junk:name",
        "typo:last",
    }
    checked = 0
    for records in by_person(rows).values():
        clean = {r["last_name"] for r in records if r["last_name"] and not tags(r) & other_changes}
        if len(clean) != 1:
            continue
        (original,) = clean
        for r in records:
            t = tags(r)
            if "typo:last" in t and not t & (other_changes - {"typo:last"}):
                assert edit_distance(r["last_name"], original) == 1, (r["last_name"], original)
                checked += 1
    assert checked >= 20


def test_households_share_landlines_and_family_emails(rows: list[dict]) -> None:
    phone_people: dict[str, set[int]] = defaultdict(set)
    email_people: dict[str, set[int]] = defaultdict(set)
    for r in rows:
        if "phone:landline" in tags(r):
            phone_people[digits(r["phone"])[-9:]].add(r["person_id"])
        if "email:family" in tags(r):
            email_people[r["email"].strip().lower()].add(r["person_id"])
    assert sum(len(p) > 1 for p in phone_people.values()) >= 20
    assert sum(len(p) > 1 for p in email_people.values()) >= 10


def test_namesakes_movers_and_swaps(rows: list[dict]) -> None:
    names: dict[tuple, set[int]] = defaultdict(set)
    for r in rows:
        if "namesake" in tags(r) and r["first_name"] and r["last_name"] and r["city"]:
            names[(r["first_name"], r["last_name"], r["city"])].add(r["person_id"])
    assert sum(len(p) > 1 for p in names.values()) >= 5
    moved_streets = 0
    for records in by_person(rows).values():
        after = {r["street"] for r in records if r["street"] and "moved" in tags(r)}
        before = {r["street"] for r in records if r["street"] and "moved" not in tags(r)}
        moved_streets += bool(after and before and not after & before)
    assert moved_streets >= 10
    swapped = 0
    for records in by_person(rows).values():
        lasts = {r["last_name"] for r in records if r["last_name"] and "swapped" not in tags(r)}
        swapped += any(r["first_name"] in lasts for r in records if "swapped" in tags(r))
    assert swapped >= 20


def test_email_and_phone_variants(rows: list[dict]) -> None:
    emails = [r["email"] for r in rows if r["email"]]
    assert sum(e != e.lower() for e in emails) > 100
    assert sum("+" in e.partition("@")[0] for e in emails) > 50
    assert sum(e != e.strip() for e in emails) > 5
    dotted = 0
    for records in by_person(rows).values():
        gmail = {
            r["email"].strip().lower().replace(".", "")
            for r in records
            if r["email"] and "email:dots" in tags(r)
        }
        plain = {r["email"].strip().lower() for r in records if r["email"]}
        dotted += bool(gmail & {p.replace(".", "") for p in plain if p.replace(".", "") in gmail})
    assert dotted > 20
    phones = [r["phone"] for r in rows if r["phone"] and not r["junk"]]
    assert any(p.startswith("+") and p[1:].isdigit() for p in phones)
    assert any(p.startswith("00") for p in phones)
    assert any(" " in p for p in phones)
    assert any("-" in p for p in phones)
    assert any("/" in p for p in phones)
    assert any(p.isdigit() for p in phones)


# ------------------------------------------------------------------------------------ junk


def test_junk_is_frequent_enough_to_find_by_frequency(rows: list[dict]) -> None:
    """Keys a detector might use: the trimmed lower-case e-mail, the phone's last 8 digits.
    Nearly every junk value is shared by more people than any genuine value is."""
    share = sum(r["junk"] for r in rows) / len(rows)
    assert 0.02 < share < 0.1
    for column, key, junk_tags in (
        ("email", lambda v: v.strip().lower(), {"junk:email"}),
        ("phone", lambda v: digits(v)[-8:], {"junk:phone", "junk:shop_phone"}),
    ):
        people: dict[str, set[int]] = defaultdict(set)
        junk_keys: list[str] = []
        for r in rows:
            if r[column]:
                people[key(r[column])].add(r["person_id"])
                if tags(r) & junk_tags:
                    junk_keys.append(key(r[column]))
        genuine = max(len(p) for k, p in people.items() if k not in set(junk_keys))
        assert genuine <= 5
        above = sum(len(people[k]) > genuine for k in junk_keys) / len(junk_keys)
        assert above > 0.85, (column, above)
    shop = [r for r in rows if "junk:shop_phone" in tags(r)]
    assert len({r["country"] for r in shop}) == 7
    assert len({r["person_id"] for r in shop}) > 50


# -------------------------------------------------------------------------- baseline, score


def test_exact_baseline_is_sensible(table: pa.Table) -> None:
    clusters = exact_stitch_baseline(table)
    assert clusters.column_names == ["record_id", "cluster_id"]
    assert clusters.schema.field("cluster_id").type == pa.int64()
    assert clusters.num_rows == table.num_rows
    naive = pairwise_scores(clusters, table)
    assert 0 < naive["precision"] < 0.5  # junk chains many people together
    assert 0.5 < naive["recall"] < 0.95  # variants and movers stay apart
    assert 0.7 < naive["bcubed_f1"] < 0.95
    capped = pairwise_scores(exact_stitch_baseline(table, max_records_per_value=20), table)
    assert naive["precision"] < capped["precision"] < 1  # family e-mails and landlines
    assert capped["recall"] < 0.95
    assert capped["f1"] > naive["f1"]


def test_pairwise_scores_by_hand() -> None:
    truth = pa.table({"record_id": list("abcdef"), "person_id": [1, 1, 1, 2, 2, 3]})

    def score(clusters: list[int], ids: str = "abcdef") -> dict:
        return pairwise_scores(pa.table({"record_id": list(ids), "cluster_id": clusters}), truth)

    perfect = score([7, 7, 7, 8, 8, 9])
    assert perfect["precision"] == perfect["recall"] == perfect["f1"] == 1.0
    assert perfect["bcubed_f1"] == perfect["cluster_f1"] == 1.0
    assert perfect["true_pairs"] == 4 and perfect["persons"] == 3
    singletons = score([1, 2, 3, 4, 5, 6])
    assert singletons["precision"] == 1.0 and singletons["recall"] == 0.0
    assert singletons["f1"] == 0.0
    assert singletons["bcubed_recall"] == pytest.approx((3 * 1 / 3 + 2 * 1 / 2 + 1) / 6)
    assert singletons["cluster_precision"] == pytest.approx(1 / 6)
    assert singletons["cluster_recall"] == pytest.approx(1 / 3)
    one = score([0] * 6)
    assert one["recall"] == 1.0 and one["precision"] == pytest.approx(4 / 15)
    assert one["bcubed_precision"] == pytest.approx((3 * 3 / 6 + 2 * 2 / 6 + 1 / 6) / 6)
    # a record left out of the clustering counts as a singleton
    assert score([7, 7, 7, 8, 8], ids="abcde")["f1"] == 1.0
    assert score([7, 7, 8, 9, 9], ids="abcde")["recall"] == pytest.approx(2 / 4)
    with pytest.raises(ValueError):
        score([1, 1], ids="az")


# ---------------------------------------------------------------------------------- limits


def test_countries_and_limits() -> None:
    gb = generate_customer_records(200, seed=1, countries=("GB",))
    assert set(gb.column("country").to_pylist()) <= {"GB", None}
    assert generate_customer_records(0).num_rows == 0
    with pytest.raises(ValueError):
        generate_customer_records(10, countries=("XX",))
    with pytest.raises(ValueError):
        generate_customer_records(-1)


def test_ten_thousand_records_in_a_second(table: pa.Table) -> None:
    start = time.perf_counter()
    generate_customer_records(PEOPLE, seed=SEED + 2)
    assert time.perf_counter() - start < 1.0


def test_baseline_without_scipy_or_phonenumbers(
    table: pa.Table, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Union-find gives the same clusters as scipy; bare digits stand in for E.164."""
    with_all = exact_stitch_baseline(table)
    monkeypatch.setitem(sys.modules, "scipy.sparse", None)
    monkeypatch.setitem(sys.modules, "scipy.sparse.csgraph", None)
    union_find = exact_stitch_baseline(table)
    as_truth = with_all.rename_columns(["record_id", "person_id"])
    assert pairwise_scores(union_find, as_truth)["cluster_f1"] == 1.0
    monkeypatch.setitem(sys.modules, "phonenumbers", None)
    digits_only = pairwise_scores(exact_stitch_baseline(table), table)
    assert 0.4 < digits_only["recall"] < 0.95
