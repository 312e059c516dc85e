"""The landing log: an append-only, fsynced log of accepted messages.

Request handlers hand it the records of a request and wait; a single writer thread takes
everything that queued up while the previous write was in flight, appends it with one
synchronised write (the file is opened ``O_DSYNC``: the write returns once the data is on
disk, like ``write`` plus ``fdatasync``), then wakes every waiter (group commit). A
request is acknowledged only after that, so a crash at any moment loses no acknowledged
message.

The log is a directory of numbered segment files. The writer starts a new segment when
the current one is old or large enough; closed segments are loaded into the warehouse by
:mod:`onefold.collect.loader` and then deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

SUFFIX = ".ndjson"
# Longest the writer thread waits for the GIL while the event loop is busy (see LandingLog).
SWITCH_INTERVAL = 0.0005
_O_DSYNC = getattr(os, "O_DSYNC", 0)


class Overloaded(Exception):
    """The log holds more unloaded data than allowed; clients should retry later."""


class LogClosed(Exception):
    """The log was closed before a record could be written."""


def segment_path(directory: Path, number: int) -> Path:
    return directory / f"{number:012d}{SUFFIX}"


def segment_number(path: Path) -> int:
    return int(path.name.removesuffix(SUFFIX))


def list_segments(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"*{SUFFIX}"), key=segment_number)


def recover_segment(path: Path) -> None:
    """Cut a torn last line left by a crash in the middle of a write.

    Such a line was never acknowledged (acknowledgement follows the sync of the whole
    write), so dropping it loses nothing a client was told was stored.
    """
    size = path.stat().st_size
    if size == 0:
        return
    with path.open("r+b") as handle:
        handle.seek(max(0, size - 1))
        if handle.read(1) == b"\n":
            return
        chunk = 1 << 16
        end = size
        while end > 0:
            start = max(0, end - chunk)
            handle.seek(start)
            data = handle.read(end - start)
            cut = data.rfind(b"\n")
            if cut >= 0:
                handle.truncate(start + cut + 1)
                break
            end = start
        else:
            handle.truncate(0)
        handle.flush()
        os.fsync(handle.fileno())


@dataclass
class _Pending:
    data: bytes
    done: Callable[[BaseException | None], None] | None = None
    waiter: asyncio.Future | None = None  # settled on its loop, with the others of the write


@dataclass
class LogStats:
    writes: int = 0
    syncs: int = 0
    bytes_written: int = 0
    segments_closed: int = 0
    sync_seconds: float = 0.0
    extra: dict = field(default_factory=dict)


class LandingLog:
    def __init__(
        self,
        directory: Path,
        *,
        first_segment: int,
        segment_max_bytes: int,
        segment_max_age_ms: int,
        max_pending_bytes: int,
        max_backlog_bytes: int,
        fsync: bool = True,
        on_segment_closed: Callable[[], None] | None = None,
    ) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._segment_max_bytes = segment_max_bytes
        self._segment_max_age = segment_max_age_ms / 1000
        self._max_pending_bytes = max_pending_bytes
        self._max_backlog_bytes = max_backlog_bytes
        self._fsync = fsync
        self._on_segment_closed = on_segment_closed or (lambda: None)
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._pending_bytes = 0
        self._closed_backlog = 0  # bytes in closed, not yet loaded segments
        self._closing = False
        self._rotations: list[threading.Event] = []
        self.stats = LogStats()
        self._number = first_segment
        self._fd: int | None = None
        self._size = 0
        self._opened_at = 0.0
        # The writer thread needs the GIL twice per group commit: to wake up, and once
        # the synced write returns, to wake the waiters. While the event loop is busy,
        # each of these waits for the interpreter's switch interval, 5 ms by default,
        # which would add up to 10 ms to every acknowledgement and cap the throughput
        # of a connection; half a millisecond keeps the waits short.
        if sys.getswitchinterval() > SWITCH_INTERVAL:
            sys.setswitchinterval(SWITCH_INTERVAL)
        self._thread = threading.Thread(target=self._run, name="onefold-landing", daemon=True)
        self._thread.start()

    # -- used by request handlers -------------------------------------------------

    def submit(self, data: bytes, done: Callable[[BaseException | None], None]) -> None:
        """Queue records; ``done(None)`` is called from the writer thread once they are
        durable, ``done(error)`` if they could not be written."""
        self._enqueue(_Pending(data, done))

    def _enqueue(self, pending: _Pending) -> None:
        data = pending.data
        with self._cond:
            if self._closing:
                raise LogClosed("the landing log is closed")
            if (
                self._pending_bytes + len(data) > self._max_pending_bytes
                or self._closed_backlog + self._size > self._max_backlog_bytes
            ):
                raise Overloaded("the landing log is over its backlog limit")
            self._queue.append(pending)
            self._pending_bytes += len(data)
            self._cond.notify()

    async def append(self, data: bytes) -> None:
        """Append records and return once they are durable (for asyncio handlers)."""
        waiter = asyncio.get_running_loop().create_future()
        self._enqueue(_Pending(data, waiter=waiter))
        await waiter

    def append_blocking(self, data: bytes) -> None:
        """Append records and return once they are durable (for threads)."""
        future: Future[None] = Future()

        def done(error: BaseException | None) -> None:
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

        self.submit(data, done)
        future.result()

    def rotate(self, timeout: float = 30.0) -> None:
        """Close the current segment (once what is queued is written) so it can be loaded."""
        rotated = threading.Event()
        with self._cond:
            if self._closing:
                return
            self._rotations.append(rotated)
            self._cond.notify()
        rotated.wait(timeout)

    # -- used by the loader -------------------------------------------------------

    @property
    def current_segment(self) -> int:
        return self._number

    def segment_loaded(self, size: int) -> None:
        with self._cond:
            self._closed_backlog = max(0, self._closed_backlog - size)

    def add_backlog(self, size: int) -> None:
        with self._cond:
            self._closed_backlog += size

    @property
    def backlog_bytes(self) -> int:
        return self._closed_backlog + self._size

    # -- writer thread ------------------------------------------------------------

    def _open_segment(self) -> None:
        path = segment_path(self.directory, self._number)
        # With O_DSYNC each write returns once its data is durable, as a write followed by
        # fdatasync would, in one system call instead of two: one wait fewer for the GIL
        # per group commit.
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (_O_DSYNC if self._fsync else 0)
        self._fd = os.open(path, flags, 0o644)
        if self._fsync:
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        self._size = os.fstat(self._fd).st_size
        self._opened_at = time.monotonic()

    def _close_segment(self) -> None:
        if self._fd is None:
            return
        os.close(self._fd)
        self._fd = None
        if self._size:
            with self._cond:
                self._closed_backlog += self._size
            self._number += 1
            self.stats.segments_closed += 1
        self._size = 0
        self._on_segment_closed()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing and not self._rotations:
                    if self._fd is not None and self._size:
                        remaining = self._segment_max_age - (time.monotonic() - self._opened_at)
                        if remaining <= 0:
                            break
                        self._cond.wait(remaining)
                    else:
                        self._cond.wait()
                batch = self._queue
                self._queue = []
                self._pending_bytes = 0
                closing = self._closing
                rotations = self._rotations
                self._rotations = []
            if batch:
                self._write(batch)
            if (
                self._fd is not None
                and self._size
                and (
                    self._size >= self._segment_max_bytes
                    or time.monotonic() - self._opened_at >= self._segment_max_age
                    or closing
                    or rotations
                )
            ):
                self._close_segment()
            for rotated in rotations:
                rotated.set()
            if closing and not batch:
                self._close_segment()
                return

    def _write(self, batch: list[_Pending]) -> None:
        error: BaseException | None = None
        try:
            if self._fd is None:
                self._open_segment()
            data = b"".join([p.data for p in batch])
            view = memoryview(data)
            started = time.perf_counter()
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            if self._fsync and not _O_DSYNC:
                os.fdatasync(self._fd)
            self.stats.sync_seconds += time.perf_counter() - started
            self._size += len(data)
            self.stats.writes += len(batch)
            self.stats.syncs += 1
            self.stats.bytes_written += len(data)
        except OSError as exc:
            error = exc
            # A failed write may have left part of the data behind: start a new segment
            # after cutting the partial tail so the log stays line-aligned.
            if self._fd is not None:
                try:
                    os.close(self._fd)
                finally:
                    self._fd = None
                path = segment_path(self.directory, self._number)
                try:
                    recover_segment(path)
                    self._size = path.stat().st_size
                except OSError:
                    pass
        # One wake-up per event loop for the whole group, not one per request.
        waiters: dict[asyncio.AbstractEventLoop, list[asyncio.Future]] = {}
        for pending in batch:
            if pending.waiter is not None:
                waiters.setdefault(pending.waiter.get_loop(), []).append(pending.waiter)
            elif pending.done is not None:
                pending.done(error)
        for loop, futures in waiters.items():
            with contextlib.suppress(RuntimeError):  # a closed loop has nobody waiting
                loop.call_soon_threadsafe(_settle_all, futures, error)

    def close(self) -> None:
        """Write what is queued, close the current segment and stop the writer."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()


def _settle_all(waiters: list[asyncio.Future], error: BaseException | None) -> None:
    for waiter in waiters:
        if waiter.done():  # cancelled meanwhile
            continue
        if error is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(error)
