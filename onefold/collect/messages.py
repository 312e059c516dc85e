"""Validating tracking messages and turning each into one landing-log record.

The record keeps the message exactly as the client sent it (``raw``) next to the batch
envelope it came in (``batch``) and the typed fields later stages filter on. Timestamps
follow the tracking API's rule: ``originalTimestamp`` is the client's clock,
``timestamp = receivedAt - (sentAt - originalTimestamp)`` corrects its skew, and an
explicit ``timestamp`` from the client is kept as sent.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

MESSAGE_TYPES = frozenset({"identify", "track", "page", "screen", "group", "alias", "merge"})
MAX_MESSAGE_ID_CHARS = 100
MAX_ID_CHARS = 512
_OBJECT_FIELDS = ("properties", "traits", "context", "integrations")


class MessageError(ValueError):
    """Why one message was refused; ``code`` is stable, ``message`` says what to fix."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class Envelope:
    """What one request or file adds to each message it carries."""

    source_id: str
    request_id: str
    origin: str
    received_at: datetime
    sent_at: datetime | None = None
    batch: bytes | None = None  # batch-level context/integrations, serialised

    @property
    def received_at_text(self) -> str:
        return _iso(self.received_at)


def now_utc() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


def parse_timestamp(value: object, field: str) -> datetime | None:
    """An ISO 8601 timestamp (or epoch milliseconds) as naive UTC; None when absent."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise MessageError("invalid_timestamp", f"{field} must be an ISO 8601 string")
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value / 1000, UTC).replace(tzinfo=None)
        except (OverflowError, OSError, ValueError) as exc:
            raise MessageError("invalid_timestamp", f"{field} is out of range") from exc
    if not isinstance(value, str):
        raise MessageError("invalid_timestamp", f"{field} must be an ISO 8601 string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise MessageError(
            "invalid_timestamp", f"{field} is not an ISO 8601 timestamp: {value[:40]!r}"
        ) from exc
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def _identifier(message: dict, field: str) -> str | None:
    value = message.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise MessageError("invalid_field", f"{field} must be a string or a number")
    text = str(value) if not isinstance(value, str) else value
    if len(text) > MAX_ID_CHARS:
        raise MessageError("invalid_field", f"{field} is longer than {MAX_ID_CHARS} characters")
    return text or None


def land_message(
    message: object,
    envelope: Envelope,
    counter: int,
    default_type: str | None = None,
    max_bytes: int = 32 * 1024,
) -> bytes:
    """Validate one message and return its landing record (one JSON line, newline included).

    ``counter`` orders records written by this process; ``default_type`` is the type a
    single-message route implies (``/v1/track``) when the message does not say.
    """
    if not isinstance(message, dict):
        raise MessageError("invalid_message", "a message must be a JSON object")
    kind = message.get("type") or default_type
    if kind not in MESSAGE_TYPES:
        if kind is None:
            raise MessageError("missing_type", "the message has no type")
        raise MessageError(
            "unknown_type",
            f"unknown message type {str(kind)[:40]!r}; expected one of "
            + ", ".join(sorted(MESSAGE_TYPES)),
        )
    user_id = _identifier(message, "userId")
    anonymous_id = _identifier(message, "anonymousId")
    previous_id = _identifier(message, "previousId")
    group_id = _identifier(message, "groupId")
    if kind == "alias":
        if not previous_id or not user_id:
            raise MessageError("missing_id", "an alias needs both previousId and userId")
    elif not user_id and not anonymous_id and kind != "merge":
        raise MessageError("missing_id", "the message needs a userId or an anonymousId")
    if kind == "merge" and not isinstance(message.get("mergeProperties"), list):
        raise MessageError("invalid_field", "a merge needs a mergeProperties list")
    event = message.get("event")
    if kind == "track":
        if not isinstance(event, str) or not event.strip():
            raise MessageError("missing_event", "a track message needs a non-empty event name")
    elif event is not None and not isinstance(event, str):
        raise MessageError("invalid_field", "event must be a string")
    if kind == "group" and not group_id:
        raise MessageError("missing_id", "a group message needs a groupId")
    for field in _OBJECT_FIELDS:
        value = message.get(field)
        if value is not None and not isinstance(value, dict):
            raise MessageError("invalid_field", f"{field} must be a JSON object")
    message_id = _identifier(message, "messageId")
    if message_id is None:
        message_id = "onefold-" + uuid.uuid4().hex
    elif len(message_id) > MAX_MESSAGE_ID_CHARS:
        raise MessageError(
            "invalid_field", f"messageId is longer than {MAX_MESSAGE_ID_CHARS} characters"
        )

    received_at = envelope.received_at
    sent_at = parse_timestamp(message.get("sentAt"), "sentAt") or envelope.sent_at
    explicit = parse_timestamp(message.get("timestamp"), "timestamp")
    original = explicit or parse_timestamp(message.get("originalTimestamp"), "originalTimestamp")
    if explicit is not None:
        timestamp = explicit
    elif original is not None and sent_at is not None:
        timestamp = received_at - (sent_at - original)
    else:
        timestamp = original or received_at

    raw = orjson.dumps(message)
    if len(raw) > max_bytes:
        raise MessageError(
            "message_too_large",
            f"the message is {len(raw)} bytes; the limit is {max_bytes} bytes",
        )
    record = {
        "n": counter,
        "source_id": envelope.source_id,
        "message_id": message_id,
        "type": kind,
        "event": event,
        "user_id": user_id,
        "anonymous_id": anonymous_id,
        "group_id": group_id,
        "previous_id": previous_id,
        "timestamp": _iso(timestamp),
        "original_timestamp": _iso(original) if original else None,
        "sent_at": _iso(sent_at) if sent_at else None,
        "received_at": envelope.received_at_text,
        "request_id": envelope.request_id,
        "origin": envelope.origin,
        "raw": orjson.Fragment(raw),
        "batch": orjson.Fragment(envelope.batch) if envelope.batch else None,
    }
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
