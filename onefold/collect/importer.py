"""Batch import: a CSV, JSONL or Parquet file of profiles or events, one message a row.

Each row becomes an ``identify`` (profiles) or a ``track`` (events) message that goes
through the same durable path as the tracking API. The file is streamed, so its size is
not bounded by memory. A row that cannot become a valid message is written to a rejects
file (JSON lines, with its row number and the reason) while the valid rows load.

Row numbers are 1-based: for CSV the first record after the header is row 1 (a quoted
value spanning lines is still one row); for JSONL a row is a line, blank lines included
in the count; for Parquet it is the row's position in the file.

The ``messageId`` of a row is derived from its content, so importing the same file twice
adds nothing (messages are deduplicated per source on ``messageId``) and importing it
again with one row changed adds exactly that row.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import math
import os
import re
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Protocol

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from onefold.collect.messages import MessageError, parse_timestamp
from onefold.settings import Limits

KINDS = ("profiles", "events")
FORMATS = ("csv", "jsonl", "parquet")
CHUNK_ROWS = 500
# The server takes at most 4 MB per /v1/import request; stay well below.
CHUNK_BYTES = 3 * 1024 * 1024
ORIGIN = "onefold import"
CSV_BLOCK_BYTES = 256 * 1024
_EXTENSIONS = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_EPOCH_MS = re.compile(r"-?\d+(\.\d+)?")


class ImportFailed(RuntimeError):
    """The import cannot go on (bad options, unreadable file, unknown source)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class RowError(ValueError):
    """Why one row does not become a message."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Client(Protocol):
    def get_source(self, name: str) -> dict: ...
    def send(self, write_key: str, messages: list[dict], origin: str) -> dict: ...
    def flush(self) -> None: ...


# -- the mapping ------------------------------------------------------------------------


def parse_mapping(items: list[str] | None) -> dict[str, str]:
    """``["target=column", ...]`` as ``{target: column}``."""
    mapping: dict[str, str] = {}
    for item in items or []:
        target, sep, column = item.partition("=")
        target, column = target.strip(), column.strip()
        if not sep or not target or not column:
            raise ImportFailed("invalid_option", f"--map takes target=column, not {item!r}")
        if target in mapping:
            raise ImportFailed("invalid_option", f"--map names the target {target!r} twice")
        mapping[target] = column
    return mapping


@dataclass(frozen=True)
class ImportSpec:
    """How the rows of a file become messages."""

    kind: str
    user_id_column: str | None = None
    anonymous_id_column: str | None = None
    event: str | None = None
    event_column: str | None = None
    timestamp_column: str | None = None
    mapping: dict[str, str] = field(default_factory=dict)  # target -> column
    drop: frozenset[str] = frozenset()

    def validate(self) -> None:
        if self.kind not in KINDS:
            raise ImportFailed("invalid_option", f"--kind must be one of {', '.join(KINDS)}")
        if not self.user_id_column and not self.anonymous_id_column:
            raise ImportFailed(
                "invalid_option",
                "name the identifier column: --user-id-column and/or --anonymous-id-column",
            )
        if self.kind == "events":
            if bool(self.event) == bool(self.event_column):
                raise ImportFailed(
                    "invalid_option", "events need exactly one of --event or --event-column"
                )
        elif self.event or self.event_column:
            raise ImportFailed("invalid_option", "--event and --event-column are for events")
        targets = sorted(self.mapping)
        for target in targets:
            if any(not part for part in target.split(".")):
                raise ImportFailed("invalid_option", f"--map target {target!r} is not valid")
        for shorter, longer in zip(targets, targets[1:], strict=False):
            if longer.startswith(shorter + "."):
                raise ImportFailed(
                    "invalid_option", f"--map targets {shorter!r} and {longer!r} overlap"
                )
        clash = sorted(self.drop & set(self.mapping.values()))
        if clash:
            raise ImportFailed("invalid_option", f"column {clash[0]!r} is both mapped and dropped")

    @property
    def special_columns(self) -> dict[str, str]:
        """Columns that make the message's own fields, by option name."""
        named = {
            "--user-id-column": self.user_id_column,
            "--anonymous-id-column": self.anonymous_id_column,
            "--event-column": self.event_column,
            "--timestamp-column": self.timestamp_column,
        }
        return {option: column for option, column in named.items() if column}

    def check_columns(self, columns: list[str]) -> None:
        """Every column the options name must be in the file (when its header is known)."""
        present = set(columns)
        named = [(o, c) for o, c in self.special_columns.items()]
        named += [(f"--map {t}", c) for t, c in self.mapping.items()]
        named += [("--drop", c) for c in sorted(self.drop)]
        for option, column in named:
            if column not in present:
                shown = ", ".join(columns[:30]) + (", ..." if len(columns) > 30 else "")
                raise ImportFailed(
                    "unknown_column",
                    f"{option} names the column {column!r}, which the file does not have; "
                    f"its columns are: {shown}",
                )


def _identifier(value: object, field_name: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise RowError("invalid_id", f"{field_name} must be a string or a number")
    return str(value) or None


def _timestamp(value: object, column: str) -> str:
    if isinstance(value, str) and _EPOCH_MS.fullmatch(value.strip()):
        value = float(value)
    try:
        moment = parse_timestamp(value, f"the timestamp column {column!r}")
    except MessageError as error:
        raise RowError(error.code, error.message) from error
    return moment.isoformat() + "Z"


class RowMapper:
    """Turns one row into its message (without ``messageId`` and ``context``).

    A missing value (null; for CSV also an empty cell) is left out of the message.
    """

    def __init__(self, spec: ImportSpec, empty_is_missing: bool) -> None:
        self.spec = spec
        self.empty_is_missing = empty_is_missing
        self.type = "identify" if spec.kind == "profiles" else "track"
        self.fields_key = "traits" if spec.kind == "profiles" else "properties"
        self.taken = set(spec.special_columns.values()) | set(spec.mapping.values()) | spec.drop
        self.targets = [(target.split("."), column) for target, column in spec.mapping.items()]
        ids = " or ".join(repr(c) for c in (spec.user_id_column, spec.anonymous_id_column) if c)
        self.missing_id = f"the row has no identifier: no value for {ids}"

    def _value(self, row: dict, column: str | None) -> object:
        if column is None:
            return None
        found = row.get(column)
        if found is None or (self.empty_is_missing and found == ""):
            return None
        return found

    def __call__(self, row: dict) -> dict:
        spec = self.spec
        message: dict[str, Any] = {"type": self.type}
        user_id = _identifier(self._value(row, spec.user_id_column), "userId")
        anonymous_id = _identifier(self._value(row, spec.anonymous_id_column), "anonymousId")
        if user_id is None and anonymous_id is None:
            raise RowError("missing_id", self.missing_id)
        if user_id is not None:
            message["userId"] = user_id
        if anonymous_id is not None:
            message["anonymousId"] = anonymous_id
        if self.type == "track":
            event = spec.event or self._value(row, spec.event_column)
            if isinstance(event, int | float) and not isinstance(event, bool):
                event = str(event)
            if not isinstance(event, str) or not event.strip():
                raise RowError(
                    "missing_event",
                    f"the row has no event name: no value for {spec.event_column!r}",
                )
            message["event"] = event
        if spec.timestamp_column:
            moment = self._value(row, spec.timestamp_column)
            if moment is not None:
                message["timestamp"] = _timestamp(moment, spec.timestamp_column)

        empty = "" if self.empty_is_missing else None
        taken = self.taken
        fields = {
            column: found
            for column, found in row.items()
            if found is not None and found != empty and column not in taken
        }
        for path, column in self.targets:
            found = self._value(row, column)
            if found is not None:
                node = fields
                for part in path[:-1]:
                    child = node.get(part)
                    if not isinstance(child, dict):
                        child = node[part] = {}
                    node = child
                node[path[-1]] = found
        message[self.fields_key] = fields
        return message


def canonical_json(message: dict) -> bytes:
    return orjson.dumps(message, option=orjson.OPT_SORT_KEYS)


def base_message_id(kind: str, canonical: bytes) -> str:
    """``imp-`` and a hash of the kind and the message's canonical JSON (without
    ``messageId`` and ``context``): the same row always gets the same id."""
    return "imp-" + hashlib.sha256(kind.encode() + b"\n" + canonical).hexdigest()[:40]


# -- reading the file --------------------------------------------------------------------


def jsonable(value: object) -> object:
    """A value read from Parquet as something JSON holds."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return str(value)


@dataclass
class Row:
    number: int
    data: dict


@dataclass
class BadRow:
    number: int | None
    code: str
    reason: str
    text: str


class Reader:
    """Rows of one file, in order, and how far through the file the reading is."""

    empty_is_missing = False
    columns: list[str] | None = None  # known up front for CSV and Parquet
    total = 0

    def position(self) -> int:
        raise NotImplementedError

    def rows(self) -> Iterator[Row | BadRow]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _csv_error(path: Path, exc: Exception, after_row: int | None = None) -> str:
    where = f" after row {after_row}" if after_row else ""
    message = f"cannot read {path.name} as CSV{where}: {exc}"
    if "UTF8" in str(exc):
        message += " (the file must be UTF-8; convert it first, e.g. with iconv)"
    return message


class CsvReader(Reader):
    """Every column as a string: the values are imported as written, without guessing."""

    empty_is_missing = True

    def __init__(self, path: Path) -> None:
        self.path = path
        self.total = path.stat().st_size
        self.gzipped = path.suffix.lower() == ".gz"
        self.bad: dict[int, BadRow] = {}
        self.finished = False
        with path.open("rb") as probe_file:
            probe = self._open(probe_file, lambda row: "skip", None)
            self.columns = probe.schema.names
        self.consumed = float(sum(len(name.encode()) + 1 for name in self.columns))
        duplicates = sorted({c for c in self.columns if self.columns.count(c) > 1})
        if duplicates:
            raise ImportFailed(
                "unreadable_file", f"the CSV header repeats columns: {', '.join(duplicates)}"
            )
        self.raw = path.open("rb")
        types = {name: pa.string() for name in self.columns}
        try:
            self.reader = self._open(self.raw, self._invalid_row, types)
        except ImportFailed:
            self.raw.close()
            raise

    def _open(self, raw: IO[bytes], handler, types):
        stream = pa.input_stream(raw, compression="gzip" if self.gzipped else None)
        try:
            return pa_csv.open_csv(
                stream,
                read_options=pa_csv.ReadOptions(use_threads=False, block_size=CSV_BLOCK_BYTES),
                parse_options=pa_csv.ParseOptions(
                    newlines_in_values=True, invalid_row_handler=handler
                ),
                convert_options=pa_csv.ConvertOptions(
                    column_types=types, strings_can_be_null=False, quoted_strings_can_be_null=False
                ),
            )
        except (pa.ArrowInvalid, OSError) as exc:
            raise ImportFailed("unreadable_file", _csv_error(self.path, exc)) from exc

    def _invalid_row(self, row) -> str:
        # ``row.number`` counts the header as row 1.
        number = row.number - 1 if row.number is not None and row.number > 0 else None
        reason = f"expected {row.expected_columns} columns, found {row.actual_columns}"
        bad = BadRow(number, "invalid_row", reason, row.text)
        self.bad[number if number is not None else -len(self.bad) - 1] = bad
        return "skip"

    def position(self) -> int:
        if self.finished:
            return self.total
        if self.gzipped:  # compressed bytes read so far (pyarrow reads ahead)
            return self.total if self.raw.closed else self.raw.tell()
        return min(int(self.consumed), self.total)

    def rows(self) -> Iterator[Row | BadRow]:
        number = 0
        while True:
            try:
                batch = self.reader.read_next_batch()
            except StopIteration:
                break
            except (pa.ArrowInvalid, OSError) as exc:
                raise ImportFailed("unreadable_file", _csv_error(self.path, exc, number)) from exc
            # pyarrow reads well ahead of the rows it hands out, so the progress is the
            # size of the rows handed out: their values and a separator after each
            values = sum(pc.sum(pc.binary_length(column)).as_py() or 0 for column in batch.columns)
            per_row = (values + batch.num_rows * batch.num_columns) / max(batch.num_rows, 1)
            for data in batch.to_pylist():
                number += 1
                self.consumed += per_row
                while number in self.bad:
                    yield self.bad.pop(number)
                    number += 1
                yield Row(number, data)
        yield from sorted(self.bad.values(), key=lambda b: b.number or 0)
        self.bad.clear()
        self.finished = True

    def close(self) -> None:
        self.raw.close()


class JsonlReader(Reader):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.total = path.stat().st_size
        self.raw = path.open("rb")
        gzipped = path.suffix.lower() == ".gz"
        self.lines: IO[bytes] = gzip.GzipFile(fileobj=self.raw) if gzipped else self.raw

    def position(self) -> int:
        return self.raw.tell()

    def rows(self) -> Iterator[Row | BadRow]:
        try:
            for number, line in enumerate(self.lines, 1):
                if number == 1 and line.startswith(b"\xef\xbb\xbf"):
                    line = line[3:]
                if not line.strip():
                    continue
                text = line.decode("utf-8", "replace").rstrip("\r\n")
                try:
                    data = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    yield BadRow(number, "invalid_json", f"the line is not valid JSON: {exc}", text)
                    continue
                if not isinstance(data, dict):
                    yield BadRow(number, "invalid_row", "the line is not a JSON object", text)
                    continue
                yield Row(number, data)
        except (OSError, EOFError) as exc:
            raise ImportFailed("unreadable_file", f"cannot read {self.path.name}: {exc}") from exc

    def close(self) -> None:
        self.raw.close()


class ParquetReader(Reader):
    def __init__(self, path: Path, batch_rows: int = CHUNK_ROWS) -> None:
        self.path = path
        try:
            self.file = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise ImportFailed(
                "unreadable_file", f"cannot read {path.name} as Parquet: {exc}"
            ) from exc
        self.columns = self.file.schema_arrow.names
        self.total = self.file.metadata.num_rows
        self.batch_rows = batch_rows
        self.done = 0

    def position(self) -> int:
        return self.done

    def rows(self) -> Iterator[Row | BadRow]:
        try:
            for batch in self.file.iter_batches(batch_size=self.batch_rows):
                for data in batch.to_pylist():
                    self.done += 1
                    yield Row(self.done, jsonable(data))
        except (pa.ArrowInvalid, OSError) as exc:
            raise ImportFailed(
                "unreadable_file", f"cannot read {self.path.name} past row {self.done}: {exc}"
            ) from exc

    def close(self) -> None:
        self.file.close()


def detect_format(path: Path, explicit: str | None = None) -> str:
    if explicit:
        if explicit not in FORMATS:
            raise ImportFailed("invalid_option", f"--format must be one of {', '.join(FORMATS)}")
        return explicit
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    found = _EXTENSIONS.get(suffixes[-1]) if suffixes else None
    if found is None:
        raise ImportFailed(
            "unknown_format",
            f"cannot tell the format of {path.name} from its extension; "
            f"use --format ({', '.join(FORMATS)})",
        )
    return found


def open_reader(path: Path, fmt: str) -> Reader:
    if fmt == "parquet" and path.suffix.lower() == ".gz":
        raise ImportFailed("unknown_format", "Parquet files are compressed inside; do not gzip")
    if fmt == "csv":
        return CsvReader(path)
    if fmt == "jsonl":
        return JsonlReader(path)
    return ParquetReader(path)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def default_rejects_path(path: Path) -> Path:
    """``FILE.rejects.jsonl`` next to the file, or in the working directory when the
    file's directory is not writable."""
    name = path.name + ".rejects.jsonl"
    if os.access(path.parent, os.W_OK):
        return path.parent / name
    return Path.cwd() / name


# -- running an import --------------------------------------------------------------------


@dataclass
class Progress:
    done: int  # bytes of the file read (CSV, JSONL) or rows read (Parquet)
    total: int
    rows: int = 0
    accepted: int = 0
    rejected: int = 0


@dataclass
class ImportResult:
    file: Path
    sha256: str
    format: str
    rows: int
    accepted: int
    rejected: int
    rejects_path: Path | None  # None when no row was rejected


class _Rejects:
    """The rejects file, created at the first rejected row."""

    def __init__(self, path: Path) -> None:
        if not path.parent.is_dir():
            raise ImportFailed(
                "rejects_unwritable", f"cannot write the rejects file {path}: no such directory"
            )
        self.path = path
        self.handle: IO[bytes] | None = None
        self.count = 0

    def write(self, records: list[dict]) -> None:
        if not records:
            return
        if self.handle is None:
            try:
                self.handle = self.path.open("wb")
            except OSError as exc:
                raise ImportFailed(
                    "rejects_unwritable", f"cannot write the rejects file {self.path}: {exc}"
                ) from exc
        records.sort(key=lambda record: record["row"] or 0)
        for record in records:
            self.handle.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
        self.count += len(records)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
        elif self.path.exists():
            self.path.unlink()  # an old rejects file would describe an earlier run


def _reject(row: int | None, code: str, reason: str, **original: object) -> dict:
    return {"row": row, "code": code, "reason": reason, **original}


@dataclass
class _Chunk:
    """Messages to send in one request, their rows, and the rows refused among them."""

    messages: list[dict] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    refused: list[dict] = field(default_factory=list)
    size: int = 0


class _Run:
    """One import: reads rows, builds messages and sends them a chunk at a time, with one
    chunk in flight while the next is built."""

    def __init__(
        self,
        client: Client,
        write_key: str,
        path: Path,
        digest: str,
        spec: ImportSpec,
        reader: Reader,
        rejects: _Rejects,
        on_progress: Callable[[Progress], None] | None,
        chunk_rows: int,
        chunk_bytes: int,
        max_message_bytes: int,
    ) -> None:
        self.client = client
        self.write_key = write_key
        self.path = path
        self.digest = digest
        self.spec = spec
        self.reader = reader
        self.rejects = rejects
        self.on_progress = on_progress
        self.chunk_rows = chunk_rows
        self.chunk_bytes = chunk_bytes
        self.max_message_bytes = max_message_bytes
        self.to_message = RowMapper(spec, reader.empty_is_missing)
        self.progress = Progress(done=0, total=reader.total)
        self.seen: set[int] = set()
        self.repeats: dict[int, int] = {}
        self.chunk = _Chunk()
        self.in_flight: tuple[Future, _Chunk] | None = None
        self.sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onefold-import")

    def run(self) -> None:
        try:
            for row in self.reader.rows():
                self.progress.rows += 1
                self.add(row)
                if self.progress.rows % 10_000 == 0:
                    self.report()
            self.send()
            self.settle()
            self.report()
        finally:
            self.sender.shutdown(wait=True)

    def refuse(self, record: dict) -> None:
        self.chunk.refused.append(record)
        if len(self.chunk.refused) >= self.chunk_rows:
            self.send()

    def add(self, row: Row | BadRow) -> None:
        if isinstance(row, BadRow):
            self.refuse(_reject(row.number, row.code, row.reason, text=row.text))
            return
        try:
            message = self.to_message(row.data)
        except RowError as error:
            self.refuse(_reject(row.number, error.code, error.reason, data=row.data))
            return
        message["messageId"] = self.message_id(message)
        provenance = {"file": self.path.name, "sha256": self.digest, "row": row.number}
        message["context"] = {"import": provenance}
        size = len(orjson.dumps(message))
        if size > self.max_message_bytes:
            # refused here: the server refuses a batch of only such messages whole
            reason = f"the message is {size} bytes; the limit is {self.max_message_bytes} bytes"
            self.refuse(_reject(row.number, "message_too_large", reason, data=row.data))
            return
        chunk = self.chunk
        if chunk.messages and (
            len(chunk.messages) >= self.chunk_rows or chunk.size + size > self.chunk_bytes
        ):
            self.send()
            chunk = self.chunk
        chunk.messages.append(message)
        chunk.rows.append(row)
        chunk.size += size

    def message_id(self, message: dict) -> str:
        """The content's id, and ``-N`` for the N-th identical row of the file."""
        message_id = base_message_id(self.spec.kind, canonical_json(message))
        key = int(message_id[4:20], 16)
        if key in self.seen:
            self.repeats[key] = self.repeats.get(key, 1) + 1
            return f"{message_id}-{self.repeats[key]}"
        self.seen.add(key)
        return message_id

    def send(self) -> None:
        self.settle()
        chunk, self.chunk = self.chunk, _Chunk()
        if chunk.messages:
            future = self.sender.submit(_send, self.client, self.write_key, chunk.messages)
            self.in_flight = (future, chunk)
        else:
            self.rejects.write(chunk.refused)
        self.report()

    def settle(self) -> None:
        """Wait for the chunk in flight; write its refused rows, in row order."""
        if self.in_flight is None:
            return
        future, chunk = self.in_flight
        self.in_flight = None
        answer = future.result()
        self.progress.accepted += answer["accepted"]
        for refused in answer.get("rejected", []):
            row = chunk.rows[refused["index"]]
            chunk.refused.append(
                _reject(row.number, refused["code"], refused["message"], data=row.data)
            )
        self.rejects.write(chunk.refused)

    def report(self) -> None:
        self.progress.done = self.reader.position()
        self.progress.rejected = self.rejects.count
        if self.on_progress is not None:
            self.on_progress(self.progress)


def run_import(
    client: Client,
    source_name: str,
    path: Path,
    spec: ImportSpec,
    *,
    format: str | None = None,
    rejects_path: Path | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    chunk_rows: int = CHUNK_ROWS,
    chunk_bytes: int = CHUNK_BYTES,
    max_message_bytes: int = Limits().max_message_bytes,
) -> ImportResult:
    """Import ``path`` into the source named ``source_name``; the stored data is queryable
    when this returns. Raises ImportFailed when the import cannot run; rows sent before
    that are stored, and running it again adds only the rest."""
    spec.validate()
    if not path.is_file():
        raise ImportFailed("file_not_found", f"no such file: {path}")
    fmt = detect_format(path, format)
    source = _find_source(client, source_name)
    digest = file_sha256(path)
    rejects = _Rejects(rejects_path or default_rejects_path(path))
    try:
        reader = open_reader(path, fmt)
        try:
            if reader.columns is not None:
                spec.check_columns(reader.columns)
            run = _Run(
                client, source["write_key"], path, digest, spec, reader, rejects, on_progress,
                chunk_rows, chunk_bytes, min(max_message_bytes, chunk_bytes),
            )  # fmt: skip
            run.run()
        finally:
            reader.close()
        client.flush()
    finally:
        rejects.close()
    return ImportResult(
        file=path,
        sha256=digest,
        format=fmt,
        rows=run.progress.rows,
        accepted=run.progress.accepted,
        rejected=rejects.count,
        rejects_path=rejects.path if rejects.count else None,
    )


def _find_source(client: Client, name: str) -> dict:
    source = client.get_source(name)  # the client's own error when there is no such source
    if not source.get("enabled", True):
        raise ImportFailed(
            "source_disabled",
            f"the source {name!r} is disabled; enable it with `onefold sources enable {name}`",
        )
    return source


def _send(client: Client, write_key: str, messages: list[dict]) -> dict:
    try:
        return client.send(write_key, messages, ORIGIN)
    except Exception as exc:
        # Say what is already stored, whatever the client's error was.
        raise ImportFailed(
            getattr(exc, "code", "send_failed"),
            f"{getattr(exc, 'message', exc)}; the rows sent before this are stored, and "
            "importing the file again adds only the rest",
        ) from exc
