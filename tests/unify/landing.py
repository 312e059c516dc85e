"""Putting generated demo data into a test's Onefold, as its sources would send it."""

from __future__ import annotations

from onefold.collect.ingest import prepare
from onefold.collect.messages import Envelope, now_utc
from onefold.demo.generator import DemoData
from onefold.runtime import Onefold


def send_demo(onefold: Onefold, demo: DemoData) -> None:
    """Create the demo's sources and append each one's messages to the landing log."""
    for source in demo.sources:
        created = onefold.sources.create(source.name, source.type)
        if demo.messages.get(source.name):
            envelope = Envelope(created.id, "r", "test", now_utc())
            onefold.log.append_blocking(prepare(demo.messages[source.name], envelope).data)


def land_demo(onefold: Onefold, demo: DemoData) -> None:
    """:func:`send_demo`, then store everything in the warehouse (not resolved yet)."""
    send_demo(onefold, demo)
    onefold.log.rotate()
    onefold.loader.load_now()
