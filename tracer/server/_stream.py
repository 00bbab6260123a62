"""The viewer's live stream, ``GET /api/stream``: server-sent events from polling the store.

The store is written by other processes (a traced app, the collector), so there is nothing to be
told: every ``POLL_SECONDS`` the stream asks whether anything changed and, when it did, what.
Without a session: ``event: sessions`` with the sessions that gained events (or were created or
updated) since the last message; "anything changed" is SQLite's ``data_version`` (bumped by every
commit of another connection), since finding the sessions updated without new events scans the
sessions table. With one: ``event: events`` with its new light rows, when ``max(seq)`` (one index
lookup) moved.
A ``: keepalive`` comment every ``KEEPALIVE_SECONDS`` keeps proxies from closing an idle stream and
reveals a client that left (Starlette also cancels the stream when the client disconnects).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..store._browse import Browser

__all__ = ["KEEPALIVE_SECONDS", "POLL_SECONDS", "stream_response"]

# The contract's polling period: a new event shows on screen within about half a second, and a
# poll that finds nothing costs one max(seq) lookup (microseconds) per open stream.
POLL_SECONDS: Final = 0.5
KEEPALIVE_SECONDS: Final = 15.0


def _message(kind: str, data: Any) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def _session_messages(request: Request, browser: Browser, session_id: str, after: int) -> AsyncIterator[bytes]:
    cursor = after
    last_sent = time.monotonic()
    yield b": stream of session events\n\n"
    while not await request.is_disconnected():
        newest = await run_in_threadpool(browser.max_seq)
        while newest > cursor:
            rows, reached = await run_in_threadpool(browser.new_rows, session_id, cursor)
            if not rows:
                cursor = newest
                break
            cursor = reached
            yield _message("events", {"events": rows, "max_seq": cursor})
            last_sent = time.monotonic()
        if time.monotonic() - last_sent >= KEEPALIVE_SECONDS:
            yield b": keepalive\n\n"
            last_sent = time.monotonic()
        await asyncio.sleep(POLL_SECONDS)


async def _list_messages(request: Request, browser: Browser, after: int) -> AsyncIterator[bytes]:
    cursor = after
    since_ms = time.time_ns() // 1_000_000
    last_sent = time.monotonic()
    version: int | None = None  # the store's data_version when last read: the same means no commit since
    yield b": stream of session changes\n\n"
    while not await request.is_disconnected():
        polled_ms = time.time_ns() // 1_000_000
        current = await run_in_threadpool(browser.data_version)
        if current != version:
            version = current
            changed, newest = await run_in_threadpool(browser.changed_sessions, cursor, since_ms)
            since_ms = polled_ms
            if changed:
                yield _message("sessions", {"changed": changed, "max_seq": newest})
                last_sent = time.monotonic()
            cursor = newest
        if time.monotonic() - last_sent >= KEEPALIVE_SECONDS:
            yield b": keepalive\n\n"
            last_sent = time.monotonic()
        await asyncio.sleep(POLL_SECONDS)


async def stream_response(
    request: Request, browser: Browser, session_id: str | None, after: int | None, headers: Mapping[str, str]
) -> Response:
    """The SSE response: from arrival number *after* (default: now, only what comes next)."""
    if after is None:
        if session_id is None:
            after = await run_in_threadpool(browser.max_seq)
        else:
            detail = await run_in_threadpool(browser.session, session_id)
            after = int(detail["max_seq"]) if detail is not None else 0
    messages = (
        _list_messages(request, browser, after)
        if session_id is None
        else _session_messages(request, browser, session_id, after)
    )
    return StreamingResponse(
        messages,
        media_type="text/event-stream",
        headers={**headers, "Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
