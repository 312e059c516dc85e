"""The batch import, end to end: the CLI on a data directory of its own (embedded) and on
the directory of a running server (through its HTTP API)."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from onefold.collect.events import EventFilter, list_events
from onefold.collect.importer import ImportSpec, Progress, run_import
from onefold.interfaces.cli import app
from onefold.interfaces.client import HttpClient, LocalClient, connect
from onefold.runtime import Onefold
from onefold.settings import Settings
from tests.server import ADMIN_TOKEN, Server

CRM = """\
customer_id,email,First Name,city,internal_note,plan
c-1,ana@example.com,Ana,Madrid,likes cats,007
c-2,bo@example.com,Bo,,call back,
,nobody@example.com,Nobody,Lima,no id,basic
c-4,"two
lines@example.com",Cy,Paris
c-5,dee@example.com,Dee,Oslo,,pro
"""
CRM_OPTIONS = [
    "--kind", "profiles", "--user-id-column", "customer_id",
    "--map", "first_name=First Name", "--map", "address.city=city", "--drop", "internal_note",
]  # fmt: skip


def cli(*args: object) -> object:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def rejects_of(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def stored(data_dir: Path, source: str) -> list[dict]:
    """Every event of ``source`` in an embedded data directory, oldest first."""
    onefold = Onefold(Settings(data_dir=data_dir))
    try:
        source_id = onefold.sources.get(source).id
        events, _ = list_events(onefold.warehouse, EventFilter(source_id=source_id), 10_000)
    finally:
        onefold.close()
    return events[::-1]


@pytest.fixture
def embedded(tmp_path: Path) -> Path:
    """A data directory with the source ``crm`` and no server on it."""
    data_dir = tmp_path / "data"
    assert cli("sources", "create", "crm", "--data-dir", data_dir).exit_code == 0
    return data_dir


@pytest.fixture
def via_server(server: Server, monkeypatch) -> Server:
    """The CLI pointed at the shared server's data directory talks to it over HTTP."""
    monkeypatch.setenv("ONEFOLD_ADMIN_TOKEN", ADMIN_TOKEN)
    return server


# -- embedded -----------------------------------------------------------------------------


def test_csv_profiles_with_mapping_drop_and_rejects(embedded, tmp_path):
    path = tmp_path / "crm.csv"
    path.write_text(CRM)
    result = cli("import", path, "--source", "crm", *CRM_OPTIONS, "--data-dir", embedded)
    assert result.exit_code == 0, result.output
    assert "5 rows read, 3 accepted, 2 rejected" in result.stdout
    assert "crm.csv.rejects.jsonl" in result.stderr

    events = {e["user_id"]: e for e in stored(embedded, "crm")}
    assert set(events) == {"c-1", "c-2", "c-5"}
    ana = events["c-1"]
    assert ana["type"] == "identify"
    # values stay strings ("007"), mapped columns are renamed, dotted targets nest
    assert ana["raw"]["traits"] == {
        "email": "ana@example.com", "plan": "007", "first_name": "Ana",
        "address": {"city": "Madrid"},
    }  # fmt: skip
    # empty cells are left out, not imported as ""
    assert events["c-2"]["raw"]["traits"] == {"email": "bo@example.com", "first_name": "Bo"}
    assert ana["timestamp"] == ana["received_at"]
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert ana["raw"]["context"]["import"] == {"file": "crm.csv", "sha256": sha, "row": 1}
    assert events["c-5"]["raw"]["context"]["import"]["row"] == 5
    assert ana["message_id"].startswith("imp-")

    rejects = rejects_of(tmp_path / "crm.csv.rejects.jsonl")
    assert [(r["row"], r["code"]) for r in rejects] == [(3, "missing_id"), (4, "invalid_row")]
    assert "customer_id" in rejects[0]["reason"]
    assert rejects[0]["data"]["email"] == "nobody@example.com"
    assert rejects[1]["reason"] == "expected 6 columns, found 4"
    assert rejects[1]["text"].startswith("c-4,")


def test_reimport_adds_nothing_and_a_changed_row_adds_one(embedded, tmp_path):
    path = tmp_path / "crm.csv"
    path.write_text(CRM)
    args = ["import", path, "--source", "crm", *CRM_OPTIONS, "--data-dir", embedded]
    assert cli(*args).exit_code == 0
    first = stored(embedded, "crm")
    assert cli(*args).exit_code == 0
    assert stored(embedded, "crm") == first

    path.write_text(CRM.replace("bo@example.com", "bo@example.org"))
    assert cli(*args).exit_code == 0
    after = stored(embedded, "crm")
    assert len(after) == len(first) + 1
    added = after[-1]
    assert added["raw"]["traits"]["email"] == "bo@example.org"
    assert (
        added["raw"]["context"]["import"]["sha256"]
        != first[0]["raw"]["context"]["import"]["sha256"]
    )


@pytest.mark.parametrize("mode", ["embedded", "server"])
def test_rows_the_server_refuses_map_back_to_their_row(mode, request, tmp_path):
    """Rows the server's validation refuses (here: an over-long userId) land in the
    rejects file under their own row number, across chunks (one refused whole); rows too
    large to send are refused before sending; the rest loads."""
    if mode == "embedded":
        data_dir, name = request.getfixturevalue("embedded"), "crm"
    else:
        data_dir = request.getfixturevalue("via_server").data_dir
        name = request.getfixturevalue("source")["name"]
    path = tmp_path / "big.csv"
    long_id = "u" * 600
    rows = [
        f"{long_id if n in (3, 4, 7) else f'u-{n}'},{'x' * (40_000 if n == 9 else 5)}"
        for n in range(1, 10)
    ]
    path.write_text("user,blob\n" + "\n".join(rows) + "\n")
    rejects_path = tmp_path / "out" / "refused.jsonl"
    rejects_path.parent.mkdir()
    seen = []
    client = connect(Settings(data_dir=data_dir))
    assert isinstance(client, LocalClient if mode == "embedded" else HttpClient)
    try:
        result = run_import(
            client, name, path,
            ImportSpec(kind="events", user_id_column="user", event="Blob Seen"),
            rejects_path=rejects_path, chunk_rows=2, on_progress=lambda p: seen.append(replace(p)),
        )  # fmt: skip
    finally:
        client.close()
    assert (result.rows, result.accepted, result.rejected) == (9, 5, 4)
    refused = rejects_of(rejects_path)
    assert [(r["row"], r["code"]) for r in refused] == [
        (3, "invalid_field"), (4, "invalid_field"), (7, "invalid_field"), (9, "message_too_large"),
    ]  # fmt: skip
    assert "userId" in refused[0]["reason"]
    assert refused[0]["data"] == {"user": long_id, "blob": "xxxxx"}
    assert len(seen) >= 4 and [p.done for p in seen] == sorted(p.done for p in seen)
    size = path.stat().st_size
    assert seen[-1] == Progress(done=size, total=size, rows=9, accepted=5, rejected=4)
    if mode == "embedded":
        events = stored(data_dir, name)
    else:
        events = request.getfixturevalue("via_server").events(source=name)
    assert sorted(e["user_id"] for e in events) == ["u-1", "u-2", "u-5", "u-6", "u-8"]
    assert {e["event"] for e in events} == {"Blob Seen"}


def test_clear_errors(embedded, tmp_path):
    path = tmp_path / "crm.csv"
    path.write_text(CRM)
    unknown = cli("import", path, "--source", "nope", *CRM_OPTIONS, "--data-dir", embedded)
    assert unknown.exit_code == 1
    assert "no source named 'nope'" in unknown.stderr
    assert "onefold sources create nope" in unknown.stderr

    missing = cli("import", tmp_path / "absent.csv", "--source", "crm", *CRM_OPTIONS,
                  "--data-dir", embedded)  # fmt: skip
    assert missing.exit_code == 1 and "no such file" in missing.stderr

    no_event = cli("import", path, "--source", "crm", "--kind", "events",
                   "--user-id-column", "customer_id", "--data-dir", embedded)  # fmt: skip
    assert no_event.exit_code == 1 and "--event" in no_event.stderr

    typo = cli("import", path, "--source", "crm", "--kind", "profiles",
               "--user-id-column", "customer", "--data-dir", embedded)  # fmt: skip
    assert typo.exit_code == 1
    assert "'customer'" in typo.stderr and "customer_id" in typo.stderr
    assert stored(embedded, "crm") == []
    assert not (tmp_path / "crm.csv.rejects.jsonl").exists()


# -- through a running server ------------------------------------------------------------


def test_jsonl_events_with_event_column_and_timestamps(via_server, source, tmp_path):
    lines = [
        {"uid": "u-1", "kind": "Order Completed", "at": "2026-03-01T10:00:00+01:00",
         "total": 42.5, "items": [{"sku": "A", "qty": 2}], "note": ""},
        {"anon": "a-2", "kind": "Order Refunded", "at": 1772359200000, "total": 10},
        {"uid": 77, "kind": "Order Completed", "at": "1772359200000"},
        {"uid": "u-4", "kind": "", "at": "2026-03-01T10:00:00Z"},
        {"uid": "u-5", "kind": "Order Completed", "at": "yesterday"},
    ]  # fmt: skip
    text = "\n".join(orjson.dumps(line).decode() for line in lines)
    text += '\n\n{"uid": "u-8", "kind": broken\n[1, 2]\n'
    path = tmp_path / "till.jsonl"
    path.write_text(text)
    result = cli(
        "import", path, "--source", source["name"], "--kind", "events",
        "--user-id-column", "uid", "--anonymous-id-column", "anon",
        "--event-column", "kind", "--timestamp-column", "at",
        "--data-dir", via_server.data_dir,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "7 rows read, 3 accepted, 4 rejected" in result.stdout

    events = {e["raw"]["context"]["import"]["row"]: e for e in via_server.events(
        source=source["name"])}  # fmt: skip
    assert set(events) == {1, 2, 3}
    first = events[1]
    assert (first["type"], first["event"], first["user_id"]) == ("track", "Order Completed", "u-1")
    assert first["timestamp"] == "2026-03-01T09:00:00"
    # JSONL keeps its types; an explicit "" is a value, only nulls are left out
    assert first["raw"]["properties"] == {
        "total": 42.5,
        "items": [{"sku": "A", "qty": 2}],
        "note": "",
    }
    assert events[2]["anonymous_id"] == "a-2" and events[2]["user_id"] is None
    assert events[2]["timestamp"] == "2026-03-01T10:00:00"
    assert events[3]["user_id"] == "77" and events[3]["timestamp"] == "2026-03-01T10:00:00"
    assert events[1]["origin"] == "POST /v1/import"

    rejects = rejects_of(tmp_path / "till.jsonl.rejects.jsonl")
    assert [(r["row"], r["code"]) for r in rejects] == [
        (4, "missing_event"), (5, "invalid_timestamp"), (7, "invalid_json"), (8, "invalid_row"),
    ]  # fmt: skip
    assert "yesterday" in rejects[1]["reason"]
    assert rejects[2]["text"] == '{"uid": "u-8", "kind": broken'


def test_parquet_events_and_reimport(via_server, source, tmp_path):
    table = pa.table({
        "customer": ["c-1", "c-2", "c-1", "c-1", None],
        "amount": pa.array([Decimal("19.99"), Decimal("5.00"), Decimal("19.99"),
                            Decimal("19.99"), Decimal("1.00")], pa.decimal128(10, 2)),
        "ordered_at": [datetime(2026, 1, 5, 12, 30)] * 5,
        "ship_on": [date(2026, 1, 7), None, date(2026, 1, 7), date(2026, 1, 7), None],
        "qty": [1, 2, 1, 1, 1],
    })  # fmt: skip
    path = tmp_path / "orders.parquet"
    pq.write_table(table, path)
    args = [
        "import", path, "--source", source["name"], "--kind", "events",
        "--event", "Order Completed", "--user-id-column", "customer",
        "--timestamp-column", "ordered_at", "--map", "revenue=amount",
        "--data-dir", via_server.data_dir,
    ]  # fmt: skip
    result = cli(*args)
    assert result.exit_code == 0, result.output
    assert "5 rows read, 4 accepted, 1 rejected" in result.stdout
    events = via_server.events(source=source["name"])
    assert len(events) == 4  # rows 1, 3 and 4 are identical: three events all the same
    by_row = {e["raw"]["context"]["import"]["row"]: e for e in events}
    assert by_row[1]["raw"]["properties"] == {"ship_on": "2026-01-07", "qty": 1, "revenue": 19.99}
    assert by_row[2]["raw"]["properties"] == {"qty": 2, "revenue": 5}
    assert by_row[1]["timestamp"] == "2026-01-05T12:30:00"
    ids = [by_row[n]["message_id"] for n in (1, 3, 4)]
    assert ids[1] == ids[0] + "-2" and ids[2] == ids[0] + "-3"
    assert [r["row"] for r in rejects_of(tmp_path / "orders.parquet.rejects.jsonl")] == [5]

    assert cli(*args).exit_code == 0
    assert len(via_server.events(source=source["name"])) == 4
    changed = table.set_column(4, "qty", pa.array([1, 3, 1, 1, 1]))
    pq.write_table(changed, path)
    assert cli(*args).exit_code == 0
    after = via_server.events(source=source["name"])
    assert len(after) == 5
    assert sorted(e["raw"]["properties"]["qty"] for e in after) == [1, 1, 1, 2, 3]


def test_csv_profiles_through_the_server(via_server, source, tmp_path):
    path = tmp_path / "crm.csv"
    path.write_text(CRM)
    args = ["import", path, "--source", source["name"], *CRM_OPTIONS,
            "--data-dir", via_server.data_dir]  # fmt: skip
    result = cli(*args)
    assert result.exit_code == 0, result.output
    events = via_server.events(source=source["name"])
    assert sorted(e["user_id"] for e in events) == ["c-1", "c-2", "c-5"]
    assert cli(*args).exit_code == 0
    assert len(via_server.events(source=source["name"])) == 3
    unknown = cli("import", path, "--source", "no-such-source", *CRM_OPTIONS,
                  "--data-dir", via_server.data_dir)  # fmt: skip
    assert unknown.exit_code == 1 and "no-such-source" in unknown.stderr
