"""Between micro-batches the resolving thread rests in proportion to what the last batch
took, up to ``unify_min_cycle_ms``: under a steady stream events gather into fewer,
larger batches (each costs a fixed part whatever its size), a trickle waits only
milliseconds, a thread that is behind never rests, and stopping still resolves everything
stored."""

from __future__ import annotations

import time

import pytest

from onefold.runtime import Onefold
from onefold.settings import Settings
from onefold.unify import graph
from onefold.unify.graph import REST_RATIO, UnifyWorker
from tests.unify.households import send


def _stream(instance: Onefold, seconds: float, every: float = 0.04) -> int:
    """One identify every ``every`` seconds, each stored at once; returns how many."""
    sent = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        message = {"type": "identify", "userId": f"u-{sent}", "anonymousId": f"a-{sent}"}
        send(instance, "web", [message])
        instance.log.rotate()
        instance.loader.load_now()
        sent += 1
        time.sleep(every)
    return sent


def _wait_resolved(instance: Onefold) -> None:
    deadline = time.monotonic() + 30
    while instance.identity.cursor.pending():
        assert time.monotonic() < deadline, "the stream was not resolved"
        time.sleep(0.02)


def test_the_rest_grows_with_the_batch_up_to_the_cycle():
    worker = UnifyWorker(None, interval_ms=200, min_cycle_ms=1000)  # type: ignore[arg-type]
    assert worker.rest_after(0.01) == pytest.approx(REST_RATIO * 0.01)  # a trickle
    assert worker.rest_after(0.3) == pytest.approx(0.6)
    assert worker.rest_after(0.5) == pytest.approx(0.5)  # the cycle caps it
    assert worker.rest_after(1.2) <= 0  # behind: the next batch starts at once
    assert UnifyWorker(None, 200, 0).rest_after(0.3) <= 0  # type: ignore[arg-type]
    assert Settings().unify_min_cycle_ms == 1000


def test_under_a_stream_each_batch_is_followed_by_a_rest_twice_as_long(tmp_path, monkeypatch):
    settings = Settings(
        data_dir=tmp_path, admin_token="t", unify_interval_ms=5, unify_min_cycle_ms=10_000
    )
    instance = Onefold(settings)
    try:
        instance.sources.create("web", "web")
        batches: list[tuple[float, float]] = []
        process = instance.identity.process

        def heavy(limit: int = 50_000) -> int:
            started = time.monotonic()
            count = process(limit)
            if count:
                time.sleep(0.1)  # as long as a batch of thousands of events
                batches.append((started, time.monotonic()))
            return count

        monkeypatch.setattr(instance.identity, "process", heavy)
        sent = _stream(instance, 2.0)
        assert sent
        _wait_resolved(instance)
        assert len(batches) >= 3
        # events were stored every 40 ms: without the rest, each batch would follow the
        # last within milliseconds
        for (started, ended), (following, _) in zip(batches, batches[1:], strict=False):
            assert following - ended >= REST_RATIO * (ended - started) - 0.01
    finally:
        instance.close()


def test_stopping_cuts_the_rest_short_and_resolves_what_is_stored(tmp_path, monkeypatch):
    monkeypatch.setattr(graph, "REST_RATIO", 10_000.0)  # rests of many seconds
    settings = Settings(
        data_dir=tmp_path, admin_token="t", unify_interval_ms=5, unify_min_cycle_ms=60_000
    )
    instance = Onefold(settings)
    try:
        instance.sources.create("web", "web")
        sent = _stream(instance, 0.5)
        stopping = time.monotonic()
    finally:
        instance.close()
    assert time.monotonic() - stopping < 10
    reopened = Onefold(Settings(data_dir=tmp_path, admin_token="t", unify_interval_ms=10**9))
    try:
        con = reopened.warehouse.cursor()
        assert con.execute("SELECT count(*) FROM events").fetchall()[0][0] == sent
        assert reopened.identity.cursor.pending() == 0
    finally:
        reopened.close()
