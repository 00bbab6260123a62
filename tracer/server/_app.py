"""The collector's web app (Starlette): the HoneyHive events API subset, writing to a ``TraceStore``.

Routes: ``POST /events``, ``POST /events/batch``, ``PUT /events``, ``POST /session/start``,
``GET /events``, and ``GET /health``. Errors are JSON ``{"message": ..., "errorCode": ...}``.
"""

from __future__ import annotations

import hmac
import zlib
from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._version import __version__
from ..store import StoreError, TraceStore
from ._wire import (
    BadRequest,
    normalize_batch,
    normalize_event,
    normalize_session,
    normalize_update,
    session_from_event,
    unwrap,
)

__all__ = ["DEFAULT_MAX_BODY_BYTES", "create_app"]

DEFAULT_MAX_BODY_BYTES: Final = 16 * 1024 * 1024
_MAX_LIMIT: Final = 7500  # HoneyHive's page cap
# A body over the limit is still read (and discarded) up to this many times the limit, so that the
# client, still sending, gets the 413 instead of a reset connection; beyond that, the answer is at once.
_DRAIN_FACTOR: Final = 4
_CODES: Final = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    500: "INTERNAL_ERROR",
    503: "STORE_UNAVAILABLE",
}


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _error(status: int, message: str) -> Response:
    return _json({"message": message, "errorCode": _CODES.get(status, "ERROR"), "success": False}, status)


def create_app(
    store: TraceStore,
    *,
    api_key: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> Starlette:
    """The ASGI app. ``api_key``: required as ``Authorization: Bearer <key>`` on the API routes."""
    expected = f"Bearer {api_key}".encode() if api_key else None

    def authorize(request: Request) -> None:
        if expected is None:
            return
        given = request.headers.get("authorization", "").strip().encode()
        if not hmac.compare_digest(given, expected):
            reason = "missing" if not given else "invalid"
            raise ApiError(401, f"{reason} API key: send the header 'Authorization: Bearer <key>'")

    async def read_json(request: Request) -> Any:
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

    def endpoint(
        handler: Callable[[Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def wrapped(request: Request) -> Response:
            try:
                authorize(request)
                return await handler(request)
            except ApiError as exc:
                return _error(exc.status, exc.message)
            except BadRequest as exc:
                return _error(400, str(exc))
            except StoreError as exc:
                return _error(503, str(exc))

        return wrapped

    async def write(
        events: list[dict[str, Any]], sessions: dict[str, dict[str, Any]], updates: list[dict[str, Any]]
    ) -> None:
        stored: list[tuple[dict[str, Any], str]] = []
        for event in events:
            if event["event_type"] == "session":
                props = session_from_event(event)
                sessions[props["session_id"]] = {**props, **sessions.get(props["session_id"], {})}
            else:
                stored.append((event, orjson.dumps(event).decode()))
        await run_in_threadpool(store.write, stored, sessions, updates)

    async def create_event(request: Request) -> Response:
        body = await read_json(request)
        if not isinstance(body, dict) or "event" not in body:
            raise BadRequest('body must be {"event": {...}}')
        event = normalize_event(body["event"])
        await write([event], {}, [])
        return _json({"event_id": event["event_id"], "success": True})

    async def create_batch(request: Request) -> Response:
        events, sessions = normalize_batch(await read_json(request))
        await write(events, sessions, [])
        ids = [event["event_id"] for event in events]
        response: dict[str, Any] = {"event_ids": ids, "success": True}
        session_ids = {event["session_id"] for event in events}
        if len(session_ids) == 1:
            response["session_id"] = session_ids.pop()
        return _json(response)

    async def update_event(request: Request) -> Response:
        update = normalize_update(await read_json(request))
        await write([], {}, [update])
        return _json({"success": True, "event_id": update["event_id"]})

    async def start_session(request: Request) -> Response:
        body = await read_json(request)
        if not isinstance(body, dict) or "session" not in body:
            raise BadRequest('body must be {"session": {...}}')
        props = normalize_session(body["session"])
        await write([], {props["session_id"]: props}, [])
        return _json({"session_id": props["session_id"]})

    async def get_events(request: Request) -> Response:
        params = request.query_params
        filters: dict[str, str] = {}
        for name in ("session_id", "event_id", "event_type", "event_name", "parent_id"):
            value = params.get(name)
            if value:
                filters[name] = value
        raw_filters = params.get("filters")
        if raw_filters:
            filters.update(_parse_filters(raw_filters))
        limit = _int_param(params.get("limit"), "limit", 1000, 1, _MAX_LIMIT)
        page = _int_param(params.get("page"), "page", 1, 1, 1_000_000)
        try:
            events, total = await run_in_threadpool(store.query_events, filters, limit, (page - 1) * limit)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        return _json({"events": events, "totalEvents": total})

    async def events_route(request: Request) -> Response:
        if request.method == "POST":
            return await create_event(request)
        if request.method == "PUT":
            return await update_event(request)
        return await get_events(request)

    async def health(request: Request) -> Response:
        return _json({"status": "ok", "version": __version__, "store": store.path, "auth": expected is not None})

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 404:
            message = f"no route {request.method} {request.url.path}"
        elif status == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        else:
            message = exc.detail if isinstance(exc, HTTPException) else "internal error"
        return _error(status, message)

    routes = [
        Route("/events", endpoint(events_route), methods=["GET", "POST", "PUT"]),
        Route("/events/batch", endpoint(create_batch), methods=["POST"]),
        Route("/session/start", endpoint(start_session), methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/", health, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})


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


def _int_param(value: str | None, name: str, default: int, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number, got {value!r}") from None
    if not low <= number <= high:
        raise BadRequest(f"{name} must be between {low} and {high}, got {number}")
    return number


def _parse_filters(text: str) -> dict[str, str]:
    """HoneyHive's ``filters``: ``[{"field", "operator": "is", "value"}]`` (JSON) on plain fields."""
    try:
        items = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise BadRequest("filters must be a JSON array of {field, operator, value}") from None
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list):
        raise BadRequest("filters must be a JSON array of {field, operator, value}")
    result: dict[str, str] = {}
    for index, item in enumerate(items):
        entry = unwrap(item, f"filters[{index}]")
        field, operator, value = entry.get("field"), entry.get("operator", "is"), entry.get("value")
        if operator not in ("is", "=", "=="):
            raise BadRequest(f"filters[{index}].operator {operator!r} is not supported here (only 'is')")
        if not isinstance(field, str) or not isinstance(value, str):
            raise BadRequest(f"filters[{index}] needs a string field and value")
        result[field] = value
    return result
