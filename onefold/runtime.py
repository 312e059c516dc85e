"""One Onefold over one data directory: the warehouse, its sources, the landing log and
the loader behind it. The server and the embedded CLI commands both run on this."""

from __future__ import annotations

import fcntl
import os
import secrets
from pathlib import Path

import orjson

from onefold.collect.landing import LandingLog, list_segments
from onefold.collect.loader import Loader, next_segment_number, recover
from onefold.collect.sources import SourceRegistry
from onefold.settings import Settings
from onefold.store import Warehouse
from onefold.store.serving import ServingStore
from onefold.unify.graph import IdentityGraph, UnifyWorker
from onefold.unify.profiles import ProfileReader
from onefold.unify.publish import mark_all_dirty


class DataDirInUse(RuntimeError):
    """Another Onefold process holds the data directory."""


def server_info_path(data_dir: Path) -> Path:
    return data_dir / "server.json"


def read_server_info(data_dir: Path) -> dict | None:
    """The address of the server running on ``data_dir``, if one says it is."""
    try:
        return orjson.loads(server_info_path(data_dir).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None


def admin_token(settings: Settings) -> str:
    """The configured admin token, or the one generated into the data directory."""
    if settings.admin_token:
        return settings.admin_token
    path = settings.data_dir / "admin-token"
    if path.exists():
        return path.read_text().strip()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    token = "adm_" + secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


class Onefold:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_file = (settings.data_dir / "onefold.lock").open("a+")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            self._lock_file.close()
            info = read_server_info(settings.data_dir)
            where = f" (server at {info['url']})" if info else ""
            raise DataDirInUse(
                f"the data directory {settings.data_dir} is in use by another Onefold "
                f"process{where}"
            ) from exc
        self.admin_token = admin_token(settings)
        self.warehouse = Warehouse(settings.database_path, settings.duckdb_memory_limit)
        self.sources = SourceRegistry(self.warehouse)
        landing_dir = settings.landing_dir
        recover(self.warehouse, landing_dir)
        landing = settings.landing
        self.log = LandingLog(
            landing_dir,
            first_segment=next_segment_number(self.warehouse, landing_dir),
            segment_max_bytes=landing.segment_max_bytes,
            segment_max_age_ms=landing.segment_max_age_ms,
            max_pending_bytes=landing.max_pending_bytes,
            max_backlog_bytes=landing.max_backlog_bytes,
            fsync=landing.fsync,
            on_segment_closed=lambda: self.loader.notify(),
        )
        self.log.add_backlog(sum(p.stat().st_size for p in list_segments(landing_dir)))
        self.serving = ServingStore(settings.serving_dir)
        if self.serving.created:
            with self.warehouse.transaction() as con:
                mark_all_dirty(con)
        self.identity = IdentityGraph(
            self.warehouse, settings.identity, settings.traits, settings.computed_traits,
            serving=self.serving, publish_interval_ms=settings.publish_interval_ms,
            owner_index_limit=settings.owner_index_limit,
        )  # fmt: skip
        self.profiles = ProfileReader(self.warehouse, self.serving)
        self.unify = UnifyWorker(
            self.identity, settings.unify_interval_ms, settings.unify_min_cycle_ms
        )
        self.loader = Loader(self.warehouse, self.log, settings.loader_interval_ms)
        self.loader.start()
        self.unify.start()

    def flush(self) -> None:
        """Load everything acknowledged so far into the warehouse."""
        self.log.rotate()
        self.loader.load_now()
        self.identity.process_all()

    def close(self) -> None:
        self.log.close()
        self.loader.stop()
        self.loader.load_now()
        self.unify.stop()
        self.serving.close()
        self.warehouse.close()
        server_info_path(self.settings.data_dir).unlink(missing_ok=True)
        fcntl.flock(self._lock_file, fcntl.LOCK_UN)
        self._lock_file.close()
