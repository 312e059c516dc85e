"""The background threads share the machine's cores: when the resolving and the
publishing thread both want one, resolving wins."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

from onefold.runtime import Onefold
from onefold.settings import Settings
from onefold.unify.graph import PUBLISH_NICENESS


def _priority(thread_id: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, thread_id)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority is Linux's")
def test_the_publishing_thread_runs_at_a_lower_priority_than_the_resolving_thread(tmp_path: Path):
    base = _priority(threading.get_native_id())
    instance = Onefold(Settings(data_dir=tmp_path, admin_token="t"))
    try:
        threads = {thread.name: thread.native_id for thread in threading.enumerate()}
        publisher, resolver = threads["onefold-publish"], threads["onefold-unify"]
        deadline = time.monotonic() + 10
        while _priority(publisher) == base and time.monotonic() < deadline:
            time.sleep(0.01)  # the thread lowers its own priority as it starts
        assert _priority(publisher) == min(19, base + PUBLISH_NICENESS)
        assert _priority(resolver) == base
        assert _priority(threading.get_native_id()) == base  # the rest of the process keeps it
    finally:
        instance.close()
