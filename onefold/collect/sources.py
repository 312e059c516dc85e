"""Sources (a web shop, an app, a CRM, a till…) and their write keys.

A write key only lets a client write messages for its source; it grants nothing else.
"""

from __future__ import annotations

import re
import secrets
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from onefold.errors import OnefoldError
from onefold.store import Warehouse

SOURCE_TYPES = ("web", "app", "server", "crm", "pos", "email", "support", "file", "other")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


class SourceError(OnefoldError):
    """A source request that cannot be done."""


@dataclass(frozen=True)
class Source:
    id: str
    name: str
    type: str
    write_key: str
    enabled: bool
    created_at: datetime
    disabled_at: datetime | None = None

    def to_dict(self) -> dict:
        return asdict(self)


_COLUMNS = "id, name, type, write_key, enabled, created_at, disabled_at"


class SourceRegistry:
    """Sources as stored in the warehouse, with an in-memory index of write keys for the
    tracking API's hot path."""

    def __init__(self, warehouse: Warehouse) -> None:
        self._warehouse = warehouse
        self._lock = threading.Lock()
        self._by_key: dict[str, Source] = {}
        self.refresh()

    def refresh(self) -> None:
        rows = self._warehouse.cursor().execute(f"SELECT {_COLUMNS} FROM sources").fetchall()
        with self._lock:
            self._by_key = {row[3]: Source(*row) for row in rows}

    def by_write_key(self, write_key: str) -> Source | None:
        return self._by_key.get(write_key)

    def list(self) -> list[Source]:
        return sorted(self._by_key.values(), key=lambda s: s.created_at)

    def get(self, name: str) -> Source:
        for source in self._by_key.values():
            if source.name == name:
                return source
        raise SourceError("source_not_found", f"no source named {name!r}")

    def create(self, name: str, type: str = "other") -> Source:
        if not _NAME.match(name):
            raise SourceError(
                "invalid_source_name",
                "a source name is 1-63 lower-case letters, digits, '.', '_' or '-', "
                f"starting with a letter or digit; got {name!r}",
            )
        if type not in SOURCE_TYPES:
            raise SourceError(
                "invalid_source_type",
                f"source type must be one of {', '.join(SOURCE_TYPES)}; got {type!r}",
            )
        if any(s.name == name for s in self._by_key.values()):
            raise SourceError("source_exists", f"a source named {name!r} already exists")
        source = Source(
            id="src_" + secrets.token_hex(8),
            name=name,
            type=type,
            write_key="wk_" + secrets.token_urlsafe(24),
            enabled=True,
            created_at=datetime.now(UTC).replace(tzinfo=None),
        )
        self._warehouse.cursor().execute(
            f"INSERT INTO sources ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [source.id, source.name, source.type, source.write_key, True, source.created_at, None],
        )
        self.refresh()
        return source

    def set_enabled(self, name: str, enabled: bool) -> Source:
        source = self.get(name)
        disabled_at = None if enabled else datetime.now(UTC).replace(tzinfo=None)
        self._warehouse.cursor().execute(
            "UPDATE sources SET enabled = ?, disabled_at = ? WHERE id = ?",
            [enabled, disabled_at, source.id],
        )
        self.refresh()
        return self.get(name)
