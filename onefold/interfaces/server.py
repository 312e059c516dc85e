"""The Onefold server: the tracking API at the root, the management API under ``/api``."""

from __future__ import annotations

import contextlib
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
    try:
        uvicorn.Server(config).run()
    finally:
        onefold.close()
