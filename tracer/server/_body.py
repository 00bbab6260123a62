"""Reading a request body for the collector: size limits (declared and actual), gzip/deflate, JSON.

A body over the limit is answered 413 before it is all buffered; a decompressed body is held to
the same limit (gzip bombs get 413 with bounded memory).
"""

from __future__ import annotations

import zlib
from typing import Any, Final

import orjson
from starlette.requests import Request

__all__ = ["ApiError", "read_json"]

# A body over the limit is still read (and discarded) up to this many times the limit, so that the
# client, still sending, gets the 413 instead of a reset connection; beyond that, the answer is at once.
_DRAIN_FACTOR: Final = 4


class ApiError(Exception):
    """An error answer: HTTP *status* with *message* (in HoneyHive's JSON error shape)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def read_json(request: Request, max_body_bytes: int) -> Any:
    """The request's JSON body, within *max_body_bytes* before and after decompression."""
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise ApiError(400, "Content-Length is not a number") from None
        if declared > max_body_bytes:
            if declared <= _DRAIN_FACTOR * max_body_bytes:
                await _drain(request, declared)  # so that the client is sure to read the answer
            raise ApiError(413, f"request body of {declared} bytes is over the limit of {max_body_bytes} bytes")
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_body_bytes:
            await _drain(request, _DRAIN_FACTOR * max_body_bytes - size)
            raise ApiError(413, f"request body is over the limit of {max_body_bytes} bytes")
        parts.append(chunk)
    data = b"".join(parts)
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding in ("gzip", "x-gzip", "deflate"):
        data = _decompress(data, encoding, max_body_bytes)
    elif encoding not in ("", "identity"):
        raise ApiError(415, f"unsupported Content-Encoding {encoding!r}; send gzip or an uncompressed body")
    if not data.strip():
        raise ApiError(400, "empty body: expected a JSON object")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"invalid JSON: {exc}") from None


async def _drain(request: Request, budget: int) -> None:
    """Read and discard the rest of the body, up to *budget* bytes."""
    try:
        async for chunk in request.stream():
            budget -= len(chunk)
            if budget < 0:
                return
    except Exception:  # the client went away: nothing to drain
        return


def _decompress(data: bytes, encoding: str, limit: int) -> bytes:
    """Inflate a gzip (possibly multi-member) or deflate body, refusing more than *limit* bytes out."""
    out = bytearray()
    rest = data
    try:
        while rest:
            inflater = zlib.decompressobj(zlib.MAX_WBITS | 32 if encoding != "deflate" else zlib.MAX_WBITS)
            out += inflater.decompress(rest, limit + 1 - len(out))
            if len(out) > limit or inflater.unconsumed_tail:
                raise ApiError(413, f"decompressed request body is over the limit of {limit} bytes")
            if not inflater.eof:
                raise ApiError(400, f"truncated {encoding} body")
            rest = inflater.unused_data.lstrip(b"\0")
    except zlib.error as exc:
        raise ApiError(400, f"bad {encoding} body: {exc}") from None
    return bytes(out)
