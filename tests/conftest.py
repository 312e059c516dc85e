from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

import pytest

from tests.server import Server

_names = itertools.count()


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Iterator[Server]:
    """One server shared by the tests that each work in a source of their own."""
    running = Server(tmp_path_factory.mktemp("shared") / "data").start()
    yield running
    running.stop()


@pytest.fixture
def fresh_server(tmp_path) -> Iterator[Server]:
    """A server of the test's own, for tests that restart or kill it."""
    running = Server(tmp_path / "data").start()
    yield running
    running.kill()


@pytest.fixture
def source(server: Server, request) -> dict:
    """A new source on the shared server, named after the test."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:50]
    return server.create_source(f"{slug}-{next(_names)}", "web")
