"""Turning the messages of one request or file chunk into landing records."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

from onefold.collect.messages import Envelope, MessageError, land_message

_counter = itertools.count()


@dataclass
class Prepared:
    """The landing records of the valid messages, and why the others were refused."""

    data: bytes = b""
    accepted: int = 0
    rejected: list[dict] = field(default_factory=list)


def prepare(
    messages: Iterable[object],
    envelope: Envelope,
    *,
    default_type: str | None = None,
    max_message_bytes: int = 32 * 1024,
) -> Prepared:
    records = []
    rejected = []
    for index, message in enumerate(messages):
        try:
            records.append(
                land_message(message, envelope, next(_counter), default_type, max_message_bytes)
            )
        except MessageError as error:
            rejected.append({"index": index, **error.to_dict()})
    return Prepared(b"".join(records), len(records), rejected)
