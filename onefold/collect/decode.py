"""Reading request bodies safely: size caps before and after decompression, decoding by
``Content-Encoding`` whatever the ``Content-Type`` says, and JSON parsing."""

from __future__ import annotations

import zlib

import orjson


class BodyError(ValueError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """Decode ``body`` by its content encoding, refusing anything that inflates past
    ``limit`` bytes (a gzip bomb stops there, without inflating the rest)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip"):
        return _inflate(body, zlib.decompressobj(16 + zlib.MAX_WBITS), limit)
    if encoding == "deflate":
        try:
            return _inflate(body, zlib.decompressobj(zlib.MAX_WBITS), limit)
        except BodyError as error:
            if error.status == 413:
                raise
            return _inflate(body, zlib.decompressobj(-zlib.MAX_WBITS), limit)
    raise BodyError(
        415,
        "unsupported_encoding",
        f"Content-Encoding {encoding!r} is not supported; use gzip, deflate or none",
    )


def _inflate(body: bytes, inflater, limit: int) -> bytes:
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BodyError(
            400, "invalid_encoding", f"the body is not valid compressed data: {exc}"
        ) from exc
    if len(out) > limit:
        raise BodyError(
            413, "payload_too_large", f"the decompressed body exceeds the limit of {limit} bytes"
        )
    if not inflater.eof:
        raise BodyError(400, "invalid_encoding", "the compressed body is truncated")
    return out


def parse_json(body: bytes) -> object:
    if not body.strip():
        raise BodyError(400, "invalid_json", "the request body is empty")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BodyError(400, "invalid_json", f"the body is not valid JSON: {exc}") from exc
