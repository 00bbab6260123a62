"""Reading a request body for the collector: content type, size limits (declared and actual),
read time, gzip/deflate, JSON.

- Writes need a JSON (or, where a route takes it, protobuf) ``Content-Type``: a web page can make a
  browser send a cross-site ``POST`` without asking first only as ``text/plain`` or a form encoding.
- A body over the limit is answered 413 before it is all buffered; a decompressed body is held to
  the same limit (gzip bombs get 413 with bounded memory), to at most ``MAX_GZIP_MEMBERS`` members
  and ``MAX_INFLATE_CPU_SECONDS`` of CPU, on a worker thread (the event loop serves others meanwhile).
- A body that does not arrive within the read timeout is answered 408.
- Numbers JSON can hold but this process cannot without loss (integers beyond 64 bits, numbers
  beyond a double) are kept as their text, so that nothing sent is changed or refused for it.
"""

from __future__ import annotations

import json
import math
import time
import zlib
from collections.abc import Callable, Iterable
from typing import Any, Final, TypeVar

import anyio
import anyio.to_thread
import orjson
from starlette.requests import ClientDisconnect, Request

__all__ = [
    "JSON_TYPES",
    "MAX_GZIP_MEMBERS",
    "ApiError",
    "off_loop",
    "parse_json",
    "read_body",
    "read_json",
    "require_content_type",
]

T = TypeVar("T")

# A body over the limit is still read (and discarded) up to this many times the limit, so that the
# client, still sending, gets the 413 instead of a reset connection; beyond that, the answer is at once.
_DRAIN_FACTOR: Final = 4
# HoneyHive's and OpenTelemetry's clients send one gzip member; concatenated members are legal but
# rare. 2 MiB of empty members (100,000 of them) kept the event loop busy 5.6 s before this cap.
MAX_GZIP_MEMBERS: Final = 64
# Inflating the largest body allowed (16 MiB out) takes ~0.1 s; ten times that is an attack.
MAX_INFLATE_CPU_SECONDS: Final = 1.0
_INFLATE_STEP: Final = 64 * 1024  # compressed bytes fed at a time (keeps unused_data copies small)
# Inflating and parsing run on worker threads; at most this many at once (the machine's cores are
# few: more would only slow each other down and starve the event loop's thread).
_BODY_THREADS: Final = 4
#: The media types a JSON body may be declared as.
JSON_TYPES: Final = ("application/json",)
# Digits → '0', everything else → ' ': a run of 20 zeros in the translation is an integer that may
# not fit 64 bits. Measured: 18 ms for a 14 MB batch, where a regex takes 139 ms and orjson 37 ms.
_DIGITS: Final = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))
_LONG_RUN: Final = b"0" * 20

_limiter: anyio.CapacityLimiter | None = None


class ApiError(Exception):
    """An error answer: HTTP *status* with *message* (in HoneyHive's JSON error shape)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def off_loop(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` on a worker thread, at most ``_BODY_THREADS`` at once."""
    global _limiter
    if _limiter is None:
        _limiter = anyio.CapacityLimiter(_BODY_THREADS)
    return await anyio.to_thread.run_sync(function, *args, limiter=_limiter)


def require_content_type(request: Request, accepted: Iterable[str]) -> str:
    """The request's media type, which must be one of *accepted* (or a ``+json`` type when JSON is)."""
    accepted = tuple(accepted)
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media in accepted or (media.endswith("+json") and "application/json" in accepted):
        return media
    shown = f"Content-Type {media!r}" if media else "no Content-Type"
    raise ApiError(415, f"{shown}: send {' or '.join(accepted)}")


async def read_body(request: Request, max_body_bytes: int, read_timeout: float) -> bytes:
    """The request's body, decompressed, within *max_body_bytes* before and after decompression."""
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise ApiError(400, "Content-Length is not a number") from None
        if declared > max_body_bytes:
            if declared <= _DRAIN_FACTOR * max_body_bytes:
                await _drain(request, declared, read_timeout)  # so that the client is sure to read the answer
            raise ApiError(413, f"request body of {declared} bytes is over the limit of {max_body_bytes} bytes")
    parts: list[bytes] = []
    size = 0
    with anyio.move_on_after(read_timeout) as scope:
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_body_bytes:
                    await _drain(request, _DRAIN_FACTOR * max_body_bytes - size, read_timeout)
                    raise ApiError(413, f"request body is over the limit of {max_body_bytes} bytes")
                parts.append(chunk)
        except ClientDisconnect:  # gone, or closed to make room for others: nobody reads the answer
            raise ApiError(400, "the client disconnected before sending the whole body") from None
    if scope.cancelled_caught:
        raise ApiError(408, f"the request body did not arrive within {read_timeout:g} s")
    data = b"".join(parts)
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding in ("gzip", "x-gzip", "deflate"):
        data = await off_loop(decompress, data, encoding, max_body_bytes)
    elif encoding not in ("", "identity"):
        raise ApiError(415, f"unsupported Content-Encoding {encoding!r}; send gzip or an uncompressed body")
    return data


async def read_json(request: Request, max_body_bytes: int, read_timeout: float) -> Any:
    """The request's JSON body (``Content-Type: application/json`` required)."""
    require_content_type(request, JSON_TYPES)
    data = await read_body(request, max_body_bytes, read_timeout)
    return await off_loop(parse_json, data)


def parse_json(data: bytes) -> Any:
    """*data* as JSON; numbers this process cannot hold exactly are kept as their text."""
    if not data.strip():
        raise ApiError(400, "empty body: expected a JSON object")
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if "infinity" not in str(exc):
            raise ApiError(400, f"invalid JSON: {exc}") from None
        return _parse_exactly(data)  # a number beyond a double: orjson refuses it
    if _LONG_RUN in data.translate(_DIGITS):
        return _parse_exactly(data)  # orjson turns integers beyond 64 bits into inexact floats
    return value


def _exact_int(text: str) -> int | str:
    try:
        number = int(text)
    except ValueError:  # more digits than int() converts (sys.get_int_max_str_digits)
        return text
    # orjson writes integers from -2**63 to 2**64 - 1; the store keeps JSON text it writes.
    return number if -(2**63) <= number < 2**64 else text


def _exact_float(text: str) -> float | str:
    number = float(text)
    return number if math.isfinite(number) else text


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def _parse_exactly(data: bytes) -> Any:
    try:
        return json.loads(data, parse_int=_exact_int, parse_float=_exact_float, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ApiError(400, f"invalid JSON: {exc}") from None


async def _drain(request: Request, budget: int, read_timeout: float) -> None:
    """Read and discard the rest of the body, up to *budget* bytes."""
    with anyio.move_on_after(read_timeout):
        try:
            async for chunk in request.stream():
                budget -= len(chunk)
                if budget < 0:
                    return
        except Exception:  # the client went away: nothing to drain
            return


def decompress(data: bytes, encoding: str, limit: int) -> bytes:
    """Inflate a gzip (possibly multi-member) or deflate body, refusing more than *limit* bytes out,
    more than ``MAX_GZIP_MEMBERS`` members or more than ``MAX_INFLATE_CPU_SECONDS`` of CPU."""
    out = bytearray()
    view = memoryview(data)
    position = 0
    members = 0
    started = time.thread_time()
    wbits = zlib.MAX_WBITS if encoding == "deflate" else zlib.MAX_WBITS | 32
    try:
        while position < len(view):
            members += 1
            if members > MAX_GZIP_MEMBERS:
                raise ApiError(400, f"{encoding} body of more than {MAX_GZIP_MEMBERS} members")
            inflater = zlib.decompressobj(wbits)
            while not inflater.eof and position < len(view):
                step = view[position : position + _INFLATE_STEP]
                out += inflater.decompress(step, limit + 1 - len(out))
                if len(out) > limit or inflater.unconsumed_tail:
                    raise ApiError(413, f"decompressed request body is over the limit of {limit} bytes")
                position += len(step) - len(inflater.unused_data)
                if time.thread_time() - started > MAX_INFLATE_CPU_SECONDS:
                    raise ApiError(413, f"{encoding} body takes too long to decompress")
            if not inflater.eof:
                raise ApiError(400, f"truncated {encoding} body")
            if position < len(view) and view[position] == 0:  # zero padding between or after members
                position = len(view) - len(data[position:].lstrip(b"\0"))
    except zlib.error as exc:
        raise ApiError(400, f"bad {encoding} body: {exc}") from None
    return bytes(out)
