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
from functools import cached_property

import orjson

from onefold.errors import OnefoldError

MESSAGE_TYPES = frozenset({"identify", "track", "page", "screen", "group", "alias", "merge"})
MAX_MESSAGE_ID_CHARS = 100
MAX_ID_CHARS = 512
_OBJECT_FIELDS = ("properties", "traits", "context", "integrations")


class MessageError(OnefoldError):
    """Why one message was refused; ``code`` is stable, ``message`` says what to fix."""


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

    @cached_property
    def record_tail(self) -> bytes:
        """The end of every landing record of this envelope: its fields, ``}`` and newline.

        They are the same for every message of a request, so they are serialised once."""
        tail = orjson.dumps(
            {
                "source_id": self.source_id,
                "received_at": self.received_at,
                "request_id": self.request_id,
                "origin": self.origin,
                "batch": orjson.Fragment(self.batch) if self.batch else None,
            },
            option=orjson.OPT_APPEND_NEWLINE,
        )
        return b"," + tail[1:]


def now_utc() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


def parse_timestamp(value: object, field: str) -> datetime | None:
    """An ISO 8601 timestamp (or epoch milliseconds) as naive UTC; None when absent."""
    if value.__class__ is str and value:  # the common case first
        try:
            moment = _fromisoformat(value)
        except ValueError as exc:
            raise MessageError(
                "invalid_timestamp", f"{field} is not an ISO 8601 timestamp: {value[:40]!r}"
            ) from exc
        if moment.tzinfo is None:
            return moment
        # the same as .astimezone(UTC).replace(tzinfo=None), several times faster
        return _NAIVE_EPOCH + (moment - _UTC_EPOCH)
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


_fromisoformat = datetime.fromisoformat
_UTC_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)


def _identifier(message: dict, field: str) -> str | None:
    value = message.get(field)
    if value is None:
        return None
    return _check_identifier(value, field)


def _check_identifier(value: object, field: str) -> str | None:
    if value.__class__ is str and len(value) <= MAX_ID_CHARS:  # the common case first
        return value or None
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

    This runs for every message on the request path, so it is written for speed: plain
    ``str`` values take the short way through the checks, the typed timestamps are left
    to orjson to format, the message is serialised inside the record in the same orjson
    call, and the envelope's fields are serialised once per request
    (:attr:`Envelope.record_tail`).
    """
    if not isinstance(message, dict):
        raise MessageError("invalid_message", "a message must be a JSON object")
    get = message.get
    kind = get("type") or default_type
    if kind not in MESSAGE_TYPES:
        if kind is None:
            raise MessageError("missing_type", "the message has no type")
        raise MessageError(
            "unknown_type",
            f"unknown message type {str(kind)[:40]!r}; expected one of "
            + ", ".join(sorted(MESSAGE_TYPES)),
        )
    user_id = get("userId")
    if user_id is not None:
        user_id = _check_identifier(user_id, "userId")
    anonymous_id = get("anonymousId")
    if anonymous_id is not None:
        anonymous_id = _check_identifier(anonymous_id, "anonymousId")
    previous_id = get("previousId")
    if previous_id is not None:
        previous_id = _check_identifier(previous_id, "previousId")
    group_id = get("groupId")
    if group_id is not None:
        group_id = _check_identifier(group_id, "groupId")
    if kind == "alias":
        if not previous_id or not user_id:
            raise MessageError("missing_id", "an alias needs both previousId and userId")
    elif not user_id and not anonymous_id and kind != "merge":
        raise MessageError("missing_id", "the message needs a userId or an anonymousId")
    if kind == "merge" and not isinstance(get("mergeProperties"), list):
        raise MessageError("invalid_field", "a merge needs a mergeProperties list")
    event = get("event")
    if kind == "track":
        if not isinstance(event, str) or not event.strip():
            raise MessageError("missing_event", "a track message needs a non-empty event name")
    elif event is not None and not isinstance(event, str):
        raise MessageError("invalid_field", "event must be a string")
    if kind == "group" and not group_id:
        raise MessageError("missing_id", "a group message needs a groupId")
    for field in _OBJECT_FIELDS:
        value = get(field)
        if value is not None and not isinstance(value, dict):
            raise MessageError("invalid_field", f"{field} must be a JSON object")
    message_id = get("messageId")
    if message_id is not None:
        message_id = _check_identifier(message_id, "messageId")
    if message_id is None:
        message_id = "onefold-" + uuid.uuid4().hex
    elif len(message_id) > MAX_MESSAGE_ID_CHARS:
        raise MessageError(
            "invalid_field", f"messageId is longer than {MAX_MESSAGE_ID_CHARS} characters"
        )

    received_at = envelope.received_at
    value = get("sentAt")
    sent_at = (parse_timestamp(value, "sentAt") if value is not None else None) or envelope.sent_at
    value = get("timestamp")
    explicit = parse_timestamp(value, "timestamp") if value is not None else None
    if explicit is not None:
        original = timestamp = explicit
    else:
        value = get("originalTimestamp")
        original = parse_timestamp(value, "originalTimestamp") if value is not None else None
        if original is not None and sent_at is not None:
            timestamp = received_at - (sent_at - original)
        else:
            timestamp = original or received_at

    record = {
        "n": counter,
        "message_id": message_id,
        "type": kind,
        "event": event,
        "user_id": user_id,
        "anonymous_id": anonymous_id,
        "group_id": group_id,
        "previous_id": previous_id,
        "timestamp": timestamp,
        "original_timestamp": original,
        "sent_at": sent_at,
        "raw": message,
    }
    # The message is serialised inside the record, in the same call; its own size is
    # measured only when the whole record is over the limit (the record holds it).
    try:
        line = orjson.dumps(record)
    except orjson.JSONEncodeError:
        line = None  # nested one level too deep for orjson inside the record
    if line is None or len(line) > max_bytes:
        raw = orjson.dumps(message)
        if len(raw) > max_bytes:
            raise MessageError(
                "message_too_large",
                f"the message is {len(raw)} bytes; the limit is {max_bytes} bytes",
            )
        record["raw"] = orjson.Fragment(raw)
        line = orjson.dumps(record)
    return line[:-1] + envelope.record_tail
