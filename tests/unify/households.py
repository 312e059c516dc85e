"""A small demo business plus the cases that make identity hard — a family sharing a
computer and a shop typing its own address for walk-in customers — loaded into an
embedded Onefold, for the tests that re-derive or publish the graph."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from onefold.collect.ingest import prepare
from onefold.collect.messages import Envelope, now_utc
from onefold.demo.generator import generate_demo
from onefold.runtime import Onefold
from onefold.settings import Settings

AS_OF = datetime(2026, 6, 1)
SHARED = [
    {"type": "identify", "anonymousId": "family-pc", "traits": {"email": "home@example.com"}},
    {"type": "identify", "userId": "parent-1", "anonymousId": "family-pc"},
    {"type": "identify", "userId": "teen-1", "anonymousId": "family-pc",
     "traits": {"email": "home@example.com"}},
    {"type": "identify", "anonymousId": "walk-in-1", "traits": {"email": "shop@example.com"}},
    {"type": "identify", "anonymousId": "walk-in-2", "traits": {"email": "shop@example.com",
                                                                "firstName": "Eve"}},
]  # fmt: skip


def open_paused(data_dir: Path) -> Onefold:
    """An embedded Onefold whose identity graph moves only when a test says so."""
    instance = Onefold(Settings(data_dir=data_dir, admin_token="t", unify_interval_ms=10**9))
    instance.identity.clock = lambda: AS_OF
    return instance


def send(instance: Onefold, source_name: str, messages: list[dict]) -> None:
    """Land ``messages`` as the named source (they are loaded at the next flush)."""
    source = next(s for s in instance.sources.list() if s.name == source_name)
    envelope = Envelope(source.id, "r", "test", now_utc())
    instance.log.append_blocking(prepare(messages, envelope).data)


def load_households(data_dir: Path, limit: int) -> Onefold:
    """The demo (80 customers) and :data:`SHARED`, resolved in micro-batches of ``limit``
    events (so merges happen across batches)."""
    demo = generate_demo(seed=11, customers=80, now=AS_OF)
    instance = open_paused(data_dir)
    for source in demo.sources:
        instance.sources.create(source.name, source.type)
        if demo.messages.get(source.name):
            send(instance, source.name, demo.messages[source.name])
    send(instance, demo.sources[0].name, SHARED)
    instance.log.rotate()
    instance.loader.load_now()
    instance.identity.process_all(limit=limit)
    return instance
