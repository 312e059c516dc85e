"""The tracking API: the HTTP endpoints the Segment and RudderStack SDKs send to.

A request is answered 200 only once its messages are in the landing log and synced;
429 with ``Retry-After`` when the log is over its backlog; 5xx only when nothing was
stored. Errors are JSON ``{"code", "message"}``, which the SDKs read.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import secrets
from collections.abc import Callable
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from onefold import __version__
from onefold.collect.decode import BodyError, decompress, parse_json
from onefold.collect.ingest import Prepared, prepare
from onefold.collect.landing import LogClosed, Overloaded
from onefold.collect.messages import Envelope, MessageError, now_utc, parse_timestamp
from onefold.collect.sources import Source
from onefold.runtime import Onefold

SINGLE_ROUTES = {
    "identify": "identify", "i": "identify",
    "track": "track", "t": "track",
    "page": "page", "p": "page",
    "screen": "screen", "s": "screen",
    "group": "group", "g": "group",
    "alias": "alias", "a": "alias",
    "merge": "merge",
}  # fmt: skip
PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_JSON = "application/json"
_request_ids = itertools.count(1)
_boot = secrets.token_hex(4)


def _error(status: int, code: str, message: str, **extra: object) -> Response:
    headers = {"Retry-After": "1"} if status in (429, 503) else None
    body = orjson.dumps({"code": code, "message": message, **extra})
    return Response(body, status_code=status, media_type=_JSON, headers=headers)


_OK = orjson.dumps({"success": True})


class TrackingAPI:
    def __init__(self, onefold: Onefold) -> None:
        self.onefold = onefold
        limits = onefold.settings.limits
        self.limits = limits

    # -- request plumbing -----------------------------------------------------------

    async def _read_body(self, request: Request, limit: int) -> bytes:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise BodyError(
                413, "payload_too_large", f"the body exceeds the limit of {limit} bytes"
            )
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyError(
                    413, "payload_too_large", f"the body exceeds the limit of {limit} bytes"
                )
            chunks.append(chunk)
        body = b"".join(chunks)
        return decompress(body, request.headers.get("content-encoding", ""), limit)

    def _source(self, request: Request, payload: object) -> Source:
        key = _basic_auth_key(request.headers.get("authorization"))
        if key is None and isinstance(payload, dict):
            body_key = payload.get("writeKey")
            key = body_key if isinstance(body_key, str) else None
        if key is None:
            key = request.query_params.get("writeKey")
        if not key:
            raise BodyError(
                401,
                "missing_write_key",
                "no write key: send it as HTTP Basic user name or as writeKey in the body",
            )
        source = self.onefold.sources.by_write_key(key)
        if source is None:
            raise BodyError(401, "invalid_write_key", "the write key is not valid")
        if not source.enabled:
            raise BodyError(403, "source_disabled", f"the source {source.name!r} is disabled")
        return source

    def _envelope(self, request: Request, source: Source, batch: dict | None) -> Envelope:
        sent_at = None
        batch_bytes = None
        if batch is not None:
            sent_at = parse_timestamp(batch.get("sentAt"), "sentAt")
            shared = {k: batch[k] for k in ("context", "integrations") if batch.get(k)}
            for key, value in shared.items():
                if not isinstance(value, dict):
                    raise MessageError("invalid_field", f"the batch's {key} must be an object")
            batch_bytes = orjson.dumps(shared) if shared else None
        return Envelope(
            source_id=source.id,
            request_id=f"{_boot}-{next(_request_ids):x}",
            origin=f"{request.method} {request.scope['path']}",  # = request.url.path, cheaper
            received_at=now_utc(),
            sent_at=sent_at,
            batch=batch_bytes,
        )

    async def _store(
        self,
        messages: list,
        envelope: Envelope,
        default_type: str | None,
        single: bool,
        durable: bool = True,
    ) -> Response:
        prepared = self._prepare(messages, envelope, default_type, single)
        if isinstance(prepared, Response):
            return prepared
        return await self._commit(prepared, durable)

    def _prepare(
        self, messages: list, envelope: Envelope, default_type: str | None, single: bool
    ) -> Prepared | Response:
        """The landing records of the messages, or the error response if none is valid."""
        prepared = prepare(
            messages,
            envelope,
            default_type=default_type,
            max_message_bytes=self.limits.max_message_bytes,
        )
        if prepared.accepted == 0 and prepared.rejected:
            first = prepared.rejected[0]
            if single:
                status = 413 if first["code"] == "message_too_large" else 400
                return _error(status, first["code"], first["message"])
            too_large = all(r["code"] == "message_too_large" for r in prepared.rejected)
            return _error(
                413 if too_large else 400,
                first["code"],
                f"no message in the batch was valid; first: {first['message']}",
                rejected=prepared.rejected,
            )
        return prepared

    async def _commit(self, prepared: Prepared, durable: bool = True) -> Response:
        """Append the records to the landing log and answer once they are durable."""
        if prepared.accepted and durable:
            try:
                await self.onefold.log.append(prepared.data)
            except Overloaded:
                return _error(429, "overloaded", "Onefold is catching up; retry shortly")
            except (OSError, LogClosed) as exc:
                return _error(503, "storage_unavailable", f"nothing was stored: {exc}")
        if prepared.rejected:
            body = orjson.dumps(
                {"success": True, "accepted": prepared.accepted, "rejected": prepared.rejected}
            )
            return Response(body, media_type=_JSON)
        return Response(_OK, media_type=_JSON)

    async def _guard(self, call: Callable, request: Request) -> Response:
        try:
            return await call(request)
        except BodyError as error:
            return _error(error.status, error.code, error.message)
        except MessageError as error:
            return _error(400, error.code, error.message)

    # -- endpoints ------------------------------------------------------------------

    async def single(self, request: Request) -> Response:
        return await self._guard(self._single, request)

    async def _single(self, request: Request) -> Response:
        kind = SINGLE_ROUTES[request.url.path.rsplit("/", 1)[1]]
        body = await self._read_body(request, self.limits.max_message_bytes)
        payload = parse_json(body)
        source = self._source(request, payload)
        if not isinstance(payload, dict):
            raise BodyError(400, "invalid_message", "a message must be a JSON object")
        message = payload
        if "writeKey" in message:
            message = {k: v for k, v in message.items() if k != "writeKey"}
        return await self._store([message], self._envelope(request, source, None), kind, True)

    def batch_endpoint(self, limit: Callable[[], int], durable: bool = True) -> Callable:
        async def endpoint(request: Request) -> Response:
            async def handle(request: Request) -> Response:
                body = await self._read_body(request, limit())
                payload = parse_json(body)
                source = self._source(request, payload)
                if not isinstance(payload, dict) or not isinstance(payload.get("batch"), list):
                    raise BodyError(
                        400, "invalid_batch", "a batch is a JSON object with a 'batch' array"
                    )
                messages = payload["batch"]
                if len(messages) > self.limits.max_batch_messages:
                    raise BodyError(
                        413,
                        "batch_too_large",
                        f"the batch holds {len(messages)} messages; "
                        f"the limit is {self.limits.max_batch_messages}",
                    )
                envelope = self._envelope(request, source, payload)
                prepared = self._prepare(messages, envelope, None, False)
                # The parsed batch is not needed while its records are made durable: let
                # it go now instead of holding every waiting request's (less memory, and
                # much less for the garbage collector to go through).
                del body, payload, messages
                if isinstance(prepared, Response):
                    return prepared
                return await self._commit(prepared, durable)

            return await self._guard(handle, request)

        return endpoint

    async def drop(self, request: Request) -> Response:
        """Client telemetry (analytics.js ``/v1/m``): accepted and not kept."""
        async for _ in request.stream():
            pass
        return Response(_OK, media_type=_JSON)

    async def pixel(self, request: Request) -> Response:
        async def handle(request: Request) -> Response:
            source = self._source(request, None)
            message = _nest(parse_qsl(request.url.query, keep_blank_values=False))
            message.pop("writeKey", None)
            kind = request.path_params["kind"]
            if kind not in ("track", "page"):
                return _error(404, "not_found", "the pixel serves /pixel/v1/track and /page")
            envelope = self._envelope(request, source, None)
            response = await self._store([message], envelope, kind, True)
            if response.status_code != 200:
                return response
            return Response(PIXEL_GIF, media_type="image/gif")

        return await self._guard(handle, request)

    async def health(self, request: Request) -> Response:
        onefold = self.onefold
        body = {
            "server": "UP",
            "db": "UP" if onefold.loader.last_error is None else "DEGRADED",
            "version": __version__,
            "backlog_bytes": onefold.log.backlog_bytes,
        }
        return Response(orjson.dumps(body), media_type=_JSON)

    async def version(self, request: Request) -> Response:
        return Response(orjson.dumps({"version": __version__}), media_type=_JSON)

    async def segment_settings(self, request: Request) -> Response:
        """What analytics.js fetches when loaded from a snippet: where to send events."""
        write_key = request.path_params["write_key"]
        source = self.onefold.sources.by_write_key(write_key)
        if source is None or not source.enabled:
            return _error(404, "not_found", "no enabled source has this write key")
        host = request.headers.get("host", f"{request.url.hostname}:{request.url.port}")
        body = {
            "integrations": {
                "Segment.io": {
                    "apiKey": write_key,
                    "apiHost": f"{host}/v1",
                    "protocol": request.url.scheme,
                    "unbundledIntegrations": [],
                    "addBundledMetadata": False,
                }
            },
            "plan": {
                "track": {"__default": {"enabled": True, "integrations": {}}},
                "identify": {"__default": {"enabled": True}},
                "group": {"__default": {"enabled": True}},
            },
            "enabledMiddleware": {},
            "metrics": {"sampleRate": 0},
        }
        return Response(orjson.dumps(body), media_type=_JSON)

    async def source_config(self, request: Request) -> Response:
        """What RudderStack's browser SDK fetches before sending."""
        key = request.query_params.get("writeKey") or _basic_auth_key(
            request.headers.get("authorization")
        )
        source = self.onefold.sources.by_write_key(key or "")
        if source is None or not source.enabled:
            return _error(404, "not_found", "no enabled source has this write key")
        body = {
            "isHosted": False,
            "source": {
                "id": source.id,
                "name": source.name,
                "writeKey": source.write_key,
                "enabled": True,
                "config": {},
                "destinations": [],
                "workspaceId": "onefold",
            },
        }
        return Response(orjson.dumps(body), media_type=_JSON)

    def routes(self) -> list[Route]:
        limits = self.limits
        batch = self.batch_endpoint(lambda: limits.max_batch_bytes)
        bulk = self.batch_endpoint(lambda: limits.max_bulk_batch_bytes)
        return [
            Route("/v1/batch", batch, methods=["POST"]),
            Route("/v1/b", batch, methods=["POST"]),
            Route("/v1/import", bulk, methods=["POST"]),
            Route("/beacon/v1/batch", bulk, methods=["POST"]),
            Route("/v1/m", self.drop, methods=["POST"]),
            Route("/v1/projects/{write_key}/settings", self.segment_settings, methods=["GET"]),
            Route("/sourceConfig", self.source_config, methods=["GET"]),
            Route("/sourceConfig/", self.source_config, methods=["GET"]),
            Route("/pixel/v1/{kind:str}", self.pixel, methods=["GET"]),
            Route("/health", self.health, methods=["GET"]),
            Route("/version", self.version, methods=["GET"]),
            *[Route(f"/v1/{path}", self.single, methods=["POST"]) for path in SINGLE_ROUTES],
        ]

    def noop_routes(self) -> list[Route]:
        """The batch route doing all its work but the durable append, for benchmarks."""
        noop = self.batch_endpoint(lambda: self.limits.max_batch_bytes, durable=False)
        return [Route("/bench/noop/v1/batch", noop, methods=["POST"])]


def _basic_auth_key(header: str | None) -> str | None:
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.split(":", 1)[0] or None


def _nest(pairs: list[tuple[str, str]]) -> dict:
    """Query parameters as a message: ``properties.plan=pro`` becomes nested objects."""
    message: dict = {}
    for key, value in pairs:
        parts = key.split(".")
        node = message
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
    return message
