"""How the CLI reaches Onefold: through the running server's API when one holds the data
directory, otherwise by opening the data directory itself (embedded)."""

from __future__ import annotations

import fcntl
import time
from typing import Protocol
from urllib.parse import quote

import httpx
import orjson
from pydantic import ValidationError

from onefold.collect.ingest import prepare
from onefold.collect.landing import Overloaded
from onefold.collect.messages import Envelope, now_utc
from onefold.collect.sources import SourceError
from onefold.errors import OnefoldError
from onefold.runtime import Onefold, admin_token, read_server_info
from onefold.settings import Settings
from onefold.unify import links
from onefold.unify.dryrun import dry_run
from onefold.unify.health import health_report
from onefold.unify.profiles import ProfileError, parse_identifier
from onefold.unify.profiles import timeline as profile_timeline
from onefold.unify.rules import IdentityRules
from onefold.unify.search import SearchError, parse_condition, search_profiles


class ClientError(RuntimeError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Client(Protocol):
    def list_sources(self) -> list[dict]: ...
    def create_source(self, name: str, type: str) -> dict: ...
    def set_source_enabled(self, name: str, enabled: bool) -> dict: ...
    def get_source(self, name: str) -> dict: ...
    def send(self, write_key: str, messages: list[dict], origin: str) -> dict: ...
    def get_profile(self, identifier: str) -> dict: ...
    def search_profiles(self, where: list[str], limit: int) -> dict: ...
    def identity(self, action: str, body: dict | None = None) -> dict: ...
    def timeline(self, identifier: str, limit: int) -> dict: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


class LocalClient:
    """Works on the data directory directly; only while no server holds it."""

    def __init__(self, settings: Settings) -> None:
        self.onefold = Onefold(settings)

    def list_sources(self) -> list[dict]:
        return [s.to_dict() for s in self.onefold.sources.list()]

    def _guard(self, call):
        try:
            return call().to_dict()
        except SourceError as error:
            raise ClientError(error.code, error.message) from error

    def create_source(self, name: str, type: str) -> dict:
        return self._guard(lambda: self.onefold.sources.create(name, type))

    def set_source_enabled(self, name: str, enabled: bool) -> dict:
        return self._guard(lambda: self.onefold.sources.set_enabled(name, enabled))

    def get_source(self, name: str) -> dict:
        return self._guard(lambda: self.onefold.sources.get(name))

    def send(self, write_key: str, messages: list[dict], origin: str) -> dict:
        source = self.onefold.sources.by_write_key(write_key)
        if source is None:
            raise ClientError("invalid_write_key", "the write key is not valid")
        if not source.enabled:
            raise ClientError("source_disabled", f"the source {source.name!r} is disabled")
        envelope = Envelope(
            source_id=source.id,
            request_id=f"local-{now_utc().timestamp():.6f}",
            origin=origin,
            received_at=now_utc(),
        )
        prepared = prepare(
            messages,
            envelope,
            max_message_bytes=self.onefold.settings.limits.max_message_bytes,
        )
        while prepared.accepted:
            try:
                self.onefold.log.append_blocking(prepared.data)
                break
            except Overloaded:
                self.onefold.flush()
        return {"accepted": prepared.accepted, "rejected": prepared.rejected}

    def _profile_id(self, identifier: str) -> str:
        try:
            lookup = parse_identifier(identifier, self.onefold.settings.identity)
        except ProfileError as error:
            raise ClientError(error.code, error.message) from error
        profile_id = self.onefold.profiles.find(lookup)
        if profile_id is None:
            raise ClientError(
                "profile_not_found", f"no profile has {lookup.namespace}:{lookup.value}"
            )
        return profile_id

    def identity(self, action: str, body: dict | None = None) -> dict:
        """``health``, ``override``, ``dry-run``, ``rebuild``, ``recompute``, ``link``,
        ``links``, ``accept``, ``reject``, ``undo`` or ``match``."""
        onefold = self.onefold
        onefold.flush()
        graph = onefold.identity
        rules = onefold.settings.identity
        try:
            if action == "health":
                return health_report(onefold.warehouse.cursor(), **(body or {}), rules=rules)
            if action == "override":
                key = parse_identifier(body["identifier"], rules)
                other = parse_identifier(body["other"], rules) if body.get("other") else None
                return graph.add_override(
                    body["kind"], (key.namespace, key.value),
                    (other.namespace, other.value) if other else None, body["reason"],
                )  # fmt: skip
            if action == "dry-run":
                return dry_run(onefold.warehouse.cursor(), IdentityRules.model_validate(body))
            if action == "rebuild":
                return {"events": graph.rebuild()}
            if action == "recompute":
                graph.recompute_traits()
                return {"recomputed": True}
            if action == "link":
                a = parse_identifier(body["identifier"], rules)
                b = parse_identifier(body["other"], rules)
                return graph.always_link(
                    (a.namespace, a.value), (b.namespace, b.value), body["reason"]
                )
            if action == "links":
                return {"links": links.list_links(onefold.warehouse.cursor(), **(body or {}))}
            if action in ("accept", "reject", "undo"):
                return graph.decide_link(body["id"], action, body.get("note"))
            if action == "match":
                from onefold.unify.matching import MatchConfig

                return graph.match(MatchConfig(**(body or {})))
        except OnefoldError as error:
            raise ClientError(error.code, error.message) from error
        except ValidationError as error:
            raise ClientError("invalid_rules", str(error)) from error
        raise ClientError("unknown_action", f"unknown identity action {action!r}")

    def get_profile(self, identifier: str) -> dict:
        self.onefold.flush()
        return orjson.loads(self.onefold.profiles.view_json(self._profile_id(identifier)))

    def search_profiles(self, where: list[str], limit: int) -> dict:
        self.onefold.flush()
        try:
            conditions = [parse_condition(text) for text in where]
            return search_profiles(self.onefold.warehouse.cursor(), conditions, limit=limit)
        except SearchError as error:
            raise ClientError(error.code, error.message) from error

    def timeline(self, identifier: str, limit: int) -> dict:
        profile_id = self._profile_id(identifier)
        events, cursor = profile_timeline(self.onefold.warehouse.cursor(), profile_id, limit=limit)
        return {"profile_id": profile_id, "events": events, "next_before": cursor}

    def flush(self) -> None:
        self.onefold.flush()

    def close(self) -> None:
        self.onefold.close()


class HttpClient:
    """Talks to a running server: the management API with the admin token, the tracking
    API with a source's write key."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )

    def _call(self, method: str, path: str, **kwargs) -> dict | list:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ClientError("unreachable", f"cannot reach Onefold at {self.url}: {exc}") from exc
        if response.status_code >= 400:
            try:
                body = response.json()
                raise ClientError(body.get("code", "error"), body.get("message", response.text))
            except ValueError:
                raise ClientError("error", response.text) from None
        return response.json()

    def list_sources(self) -> list[dict]:
        return self._call("GET", "/api/v1/sources")

    def create_source(self, name: str, type: str) -> dict:
        return self._call("POST", "/api/v1/sources", json={"name": name, "type": type})

    def set_source_enabled(self, name: str, enabled: bool) -> dict:
        action = "enable" if enabled else "disable"
        return self._call("POST", f"/api/v1/sources/{name}/{action}")

    def get_source(self, name: str) -> dict:
        return self._call("GET", f"/api/v1/sources/{name}")

    def send(self, write_key: str, messages: list[dict], origin: str) -> dict:
        """Send through the tracking API's bulk route, retrying while the server is busy."""
        body = orjson.dumps({"batch": messages})
        for _ in range(120):
            try:
                response = self.http.post(
                    "/v1/import", content=body, auth=(write_key, ""),
                    headers={"Content-Type": "application/json"},
                )  # fmt: skip
            except httpx.HTTPError as exc:
                raise ClientError(
                    "unreachable", f"cannot reach Onefold at {self.url}: {exc}"
                ) from exc
            if response.status_code in (429, 503):
                time.sleep(float(response.headers.get("Retry-After", "1")))
                continue
            payload = response.json()
            if response.status_code == 200:
                accepted = payload.get("accepted", len(messages))
                return {"accepted": accepted, "rejected": payload.get("rejected", [])}
            if response.status_code in (400, 413) and "rejected" in payload:
                return {"accepted": 0, "rejected": payload["rejected"]}
            raise ClientError(payload.get("code", "error"), payload.get("message", ""))
        raise ClientError("overloaded", "the server stayed busy for two minutes")

    def identity(self, action: str, body: dict | None = None) -> dict:
        if action == "health":
            return self._call("GET", "/api/v1/identity/health", params=body or {})
        if action == "links":
            params = {k: v for k, v in (body or {}).items() if v is not None}
            return self._call("GET", "/api/v1/identity/links", params=params)
        if action in ("accept", "reject", "undo"):
            body = dict(body or {})
            path = f"/api/v1/identity/links/{quote(body.pop('id'), safe='')}/{action}"
            return self._call("POST", path, json=body)
        path = {
            "override": "/api/v1/identity/overrides",
            "dry-run": "/api/v1/identity/dry-run",
            "rebuild": "/api/v1/identity/rebuild",
            "link": "/api/v1/identity/links",
            "match": "/api/v1/identity/match",
            "recompute": "/api/v1/traits/recompute",
        }.get(action)
        if path is None:
            raise ClientError("unknown_action", f"unknown identity action {action!r}")
        return self._call("POST", path, json=body) if body is not None else self._call("POST", path)

    def get_profile(self, identifier: str) -> dict:
        return self._call("GET", f"/api/v1/profiles/{quote(identifier, safe=':')}")

    def search_profiles(self, where: list[str], limit: int) -> dict:
        return self._call("GET", "/api/v1/profiles", params={"where": where, "limit": limit})

    def timeline(self, identifier: str, limit: int) -> dict:
        path = f"/api/v1/timeline/{quote(identifier, safe=':')}"
        return self._call("GET", path, params={"limit": limit})

    def flush(self) -> None:
        self._call("POST", "/api/v1/flush")

    def close(self) -> None:
        self.http.close()


def _server_running(settings: Settings) -> bool:
    lock = settings.data_dir / "onefold.lock"
    if not lock.exists():
        return False
    with lock.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def connect(settings: Settings) -> Client:
    if _server_running(settings):
        info = read_server_info(settings.data_dir)
        if info is None:
            raise ClientError(
                "busy", f"another Onefold process holds {settings.data_dir}; try again shortly"
            )
        return HttpClient(info["url"], admin_token(settings))
    return LocalClient(settings)
