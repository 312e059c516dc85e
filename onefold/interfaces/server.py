"""The Onefold server: the tracking API at the root, the management API under ``/api``."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator, Callable

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from onefold.interfaces.api.app import create_api
from onefold.interfaces.tracking import TrackingAPI
from onefold.runtime import Onefold, server_info_path
from onefold.settings import Settings

log = logging.getLogger("onefold.server")

# What the browser SDKs send cross-origin: reflect the Origin, allow their headers.
_CORS = {
    "allow_origin_regex": r".*",
    "allow_credentials": True,
    "allow_methods": ["GET", "POST", "OPTIONS"],
    "allow_headers": ["*"],
    "max_age": 86400,
}


class TrackingCORS:
    """CORS for the tracking API only; the management API is not for browsers' scripts."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.cors = CORSMiddleware(app, **_CORS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith("/api"):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def create_app(onefold: Onefold, lifespan: Callable | None = None) -> ASGIApp:
    tracking = TrackingAPI(onefold)
    routes = [*tracking.routes(), Mount("/api", app=create_api(onefold))]
    if onefold.settings.bench_noop:
        routes += tracking.noop_routes()
    return TrackingCORS(Starlette(routes=routes, lifespan=lifespan))


GC_THRESHOLDS = (50_000, 20, 100)
"""The collector's thresholds in the server (Python's default: 700, 10, 10)."""


def quiet_collector() -> None:
    """Make the cyclic garbage collector run rarely, and never over what startup built.

    A collection holds the interpreter lock, stopping every thread, DuckDB's queries
    included (its Python client takes the lock back between a query's tasks). With the
    defaults, the micro-batches' short-lived rows set off a full collection every second
    or two, each walking every object the imports made (about 150 ms): with 500,000
    messages of history the server spent 16% of its time collecting, 5% with this.
    Frozen, startup's objects are never walked again, and a young generation of 50,000
    lets most temporaries be freed by their reference count before a collection sees
    them."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def serve(settings: Settings, demo: bool = False) -> None:
    """Run the server until interrupted; the data directory is locked meanwhile."""
    onefold = Onefold(settings)
    url = f"http://{settings.host}:{settings.port}"
    info = {"pid": os.getpid(), "url": url}

    @contextlib.asynccontextmanager
    async def lifespan(app: object) -> AsyncIterator[None]:
        server_info_path(settings.data_dir).write_bytes(orjson.dumps(info))
        if demo:
            from onefold.demo.load import load_demo_in_background

            load_demo_in_background(onefold, url)
        yield

    config = uvicorn.Config(
        create_app(onefold, lifespan),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=5,
    )
    quiet_collector()
    try:
        uvicorn.Server(config).run()
    finally:
        onefold.close()
