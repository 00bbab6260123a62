"""The collector's web app (Starlette): HoneyHive's events API, writing to a ``TraceStore``.

Routes: ``POST /events`` (and ``/v1/events``), ``POST /events/batch`` (and ``/v1/events/batch``),
``PUT /events``, ``POST /events/model``, ``POST /events/model/batch``, ``POST /session/start``,
``GET /session/{id}``, ``GET /events``, ``POST /events/export``, ``POST /v1/events/export``,
``POST /opentelemetry/v1/traces`` and ``POST /v1/traces`` (OTLP), ``GET /health``, and the viewer's pages and
``/api/…`` (``_viewer``) when given one. Errors are JSON
``{"message": ..., "errorCode": ...}``. Reading bodies (limits, compression) is ``_body``'s job,
checking their fields ``_wire``'s, queries ``_query``'s; this module routes, authorizes and writes.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .._version import __version__
from ..store import StoreError, TraceStore
from ._body import ApiError, off_loop, read_body, read_json, require_content_type
from ._guard import HostCheck, HostPolicy
from ._otlp import MEDIA_TYPES, PROTOBUF, error_body, ingest, success_body
from ._query import MAX_LIMIT, EventQuery, parse_export, parse_filters
from ._viewer import Viewer, viewer_routes
from ._wire import (
    BadRequest,
    normalize_batch,
    normalize_event,
    normalize_model_event,
    normalize_session,
    normalize_update,
    session_event,
    session_from_event,
)

__all__ = ["DEFAULT_MAX_BODY_BYTES", "create_app"]

DEFAULT_MAX_BODY_BYTES: Final = 16 * 1024 * 1024
# A body (once its headers are in) must arrive within this: 16 MiB at 1 Mbit/s takes ~2 minutes;
# a client slower than that holds a connection that legitimate clients may need.
DEFAULT_BODY_TIMEOUT: Final = 120.0
_CODES: Final = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    408: "REQUEST_TIMEOUT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    500: "INTERNAL_ERROR",
    503: "STORE_UNAVAILABLE",
}
_FILTER_PARAMS: Final = ("session_id", "event_id", "event_type", "event_name", "parent_id")

Handler = Callable[[Request], Awaitable[Response]]


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _error(status: int, message: str) -> Response:
    return _json({"message": message, "errorCode": _CODES.get(status, "ERROR"), "success": False}, status)


def create_app(
    store: TraceStore,
    *,
    api_key: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    hosts: HostPolicy | None = None,
    viewer: Viewer | None = None,
) -> Starlette:
    """The ASGI app. ``api_key``: required as ``Authorization: Bearer <key>`` on the API routes.
    ``hosts``: the ``Host`` names answered (default: loopback addresses and ``localhost``).
    ``viewer``: its pages and API are served too (``GET /`` is then the viewer's sessions list)."""
    api = _EventsApi(store, api_key, max_body_bytes, body_timeout)
    routes: list[BaseRoute] = [
        Route("/events", api.endpoint(api.events_route), methods=["GET", "POST", "PUT"]),
        Route("/events/batch", api.endpoint(api.create_batch), methods=["POST"]),
        Route("/v1/events", api.endpoint(api.create_event), methods=["POST"]),
        Route("/v1/events/batch", api.endpoint(api.create_batch), methods=["POST"]),
        Route("/events/model", api.endpoint(api.create_model_event), methods=["POST"]),
        Route("/events/model/batch", api.endpoint(api.create_model_batch), methods=["POST"]),
        Route("/events/export", api.endpoint(api.export_events), methods=["POST"]),
        Route("/v1/events/export", api.endpoint(api.export_events), methods=["POST"]),
        Route("/session/start", api.endpoint(api.start_session), methods=["POST"]),
        Route("/session/{session_id}", api.endpoint(api.get_session), methods=["GET"]),
        Route("/opentelemetry/v1/traces", api.endpoint(api.otlp_traces), methods=["POST"]),
        Route("/v1/traces", api.endpoint(api.otlp_traces), methods=["POST"]),
        Route("/health", api.health, methods=["GET"]),
    ]
    routes += viewer_routes(viewer) if viewer is not None else [Route("/", api.health, methods=["GET"])]
    # No CORS middleware on purpose: a web page must not be able to read or write the traces.
    policy = hosts if hosts is not None else HostPolicy("127.0.0.1")
    return Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error},
        middleware=[Middleware(HostCheck, policy=policy)],
    )


class _EventsApi:
    """The route handlers, over one store."""

    def __init__(self, store: TraceStore, api_key: str | None, max_body_bytes: int, body_timeout: float) -> None:
        self.store = store
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self._expected = f"Bearer {api_key}".encode() if api_key else None

    def authorize(self, request: Request) -> None:
        if self._expected is None:
            return
        given = request.headers.get("authorization", "").strip().encode()
        if not hmac.compare_digest(given, self._expected):
            reason = "missing" if not given else "invalid"
            raise ApiError(401, f"{reason} API key: send the header 'Authorization: Bearer <key>'")

    def endpoint(self, handler: Handler) -> Handler:
        """*handler* behind the API key check, its errors answered in HoneyHive's shape."""

        async def wrapped(request: Request) -> Response:
            try:
                self.authorize(request)
                return await handler(request)
            except ApiError as exc:
                return _error(exc.status, exc.message)
            except BadRequest as exc:
                return _error(400, str(exc))
            except StoreError as exc:
                return _error(503, str(exc))

        return wrapped

    async def _body(self, request: Request) -> Any:
        return await read_json(request, self.max_body_bytes, self.body_timeout)

    async def _write(
        self, events: list[dict[str, Any]], sessions: dict[str, dict[str, Any]], updates: list[dict[str, Any]]
    ) -> None:
        stored: list[tuple[dict[str, Any], str]] = []
        for event in events:
            if event["event_type"] == "session":
                props = session_from_event(event)
                sessions[props["session_id"]] = {**props, **sessions.get(props["session_id"], {})}
            else:
                stored.append((event, orjson.dumps(event).decode()))
        await run_in_threadpool(self.store.write, stored, sessions, updates)

    async def create_event(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, dict) and "event" not in body and "event_type" in body:
            body = {"event": body}  # a bare event: POST /v1/events, and honeyhive 1.x's events.create()
        if not isinstance(body, dict) or "event" not in body:
            raise BadRequest('body must be {"event": {...}}')
        event = normalize_event(body["event"])
        await self._write([event], {}, [])
        return _json({"event_id": event["event_id"], "success": True})

    async def create_model_event(self, request: Request) -> Response:
        body = await self._body(request)
        if not isinstance(body, dict) or "model_event" not in body:
            raise BadRequest('body must be {"model_event": {...}}')
        event = normalize_model_event(body["model_event"])
        await self._write([event], {}, [])
        return _json({"event_id": event["event_id"], "success": True})

    async def create_model_batch(self, request: Request) -> Response:
        return await self.create_batch(request, key="model_events")

    async def create_batch(self, request: Request, key: str = "events") -> Response:
        events, sessions = normalize_batch(await self._body(request), key)
        await self._write(events, sessions, [])
        response: dict[str, Any] = {"event_ids": [event["event_id"] for event in events], "success": True}
        session_ids = {event["session_id"] for event in events}
        if len(session_ids) == 1:
            response["session_id"] = session_ids.pop()
        return _json(response)

    async def update_event(self, request: Request) -> Response:
        update = normalize_update(await self._body(request))
        await self._write([], {}, [update])
        return _json({"success": True, "event_id": update["event_id"]})

    async def start_session(self, request: Request) -> Response:
        body = await self._body(request)
        if not isinstance(body, dict) or "session" not in body:
            raise BadRequest('body must be {"session": {...}}')
        props = normalize_session(body["session"])
        await self._write([], {props["session_id"]: props}, [])
        return _json(await run_in_threadpool(self._session_event, props["session_id"]))

    async def get_session(self, request: Request) -> Response:
        session_id = request.path_params["session_id"]
        event = await run_in_threadpool(self._session_event, session_id)
        if event is None:
            raise ApiError(404, f"Session not found: {session_id}")
        return _json(event)

    def _session_event(self, session_id: str) -> dict[str, Any] | None:
        summary = self.store.session(session_id)
        if summary is None:
            return None
        roots = [event["event_id"] for _, _, event in self.store.scan_events({"parent_id": session_id})]
        aggregates = {
            "num_events": summary.event_count,
            "prompt_tokens": summary.prompt_tokens,
            "completion_tokens": summary.completion_tokens,
            "total_tokens": summary.total_tokens,
        }
        return session_event(
            summary.properties,
            start_time=summary.start_time,
            end_time=summary.end_time,
            duration=summary.duration_ms,
            children_ids=roots,
            project=summary.project,
            aggregates=aggregates,
        )

    async def otlp_traces(self, request: Request) -> Response:
        """OTLP/HTTP traces (HoneyHive's tracers and any OpenTelemetry exporter), answered in the
        client's encoding: 200 with an ``ExportTraceServiceResponse``, 400 with a ``google.rpc.Status``."""
        media = require_content_type(request, MEDIA_TYPES)
        try:
            data = await read_body(request, self.max_body_bytes, self.body_timeout)
            result = await off_loop(ingest, data, media, self._store_spans)
        except (ApiError, BadRequest) as exc:
            if media != PROTOBUF:
                raise
            status, message = (exc.status, exc.message) if isinstance(exc, ApiError) else (400, str(exc))
            return Response(error_body(message), status_code=status, media_type=PROTOBUF)
        return Response(success_body(result, media), media_type=media)

    def _store_spans(self, events: list[dict[str, Any]], sessions: dict[str, dict[str, Any]]) -> None:
        self.store.write([(event, orjson.dumps(event).decode()) for event in events], sessions, [])

    async def export_events(self, request: Request) -> Response:
        query = parse_export(await self._body(request))
        events, total = await run_in_threadpool(self._run_query, query)
        return _json({"events": events, "totalEvents": total})

    async def get_events(self, request: Request) -> Response:
        params = request.query_params
        filters = parse_filters(params.get("filters"))
        shortcuts = [{"field": name, "value": value} for name in _FILTER_PARAMS if (value := params.get(name))]
        query = EventQuery(
            filters=parse_filters(shortcuts) + filters,
            limit=_int_param(params.get("limit"), "limit", 1000, 1, MAX_LIMIT),
            page=_int_param(params.get("page"), "page", 1, 1, 1_000_000),
        )
        events, total = await run_in_threadpool(self._run_query, query)
        return _json({"events": events, "totalEvents": total})

    def _run_query(self, query: EventQuery) -> tuple[list[dict[str, Any]], int]:
        """The page of events *query* selects (by start time), and how many it selects in all."""
        indexed = query.indexed()
        offset = (query.page - 1) * query.limit
        if len(indexed) == len(query.filters) and query.start_after is None and query.start_before is None:
            events, total = self.store.query_events(indexed, query.limit, offset)  # SQL does it all
        else:  # one pass keeping (start, seq) of the matches, then the page's events by seq
            keys = sorted(
                (start if start is not None else -1, seq)
                for seq, start, event in self.store.scan_events(indexed)
                if query.matches(event)
            )
            total = len(keys)
            events = self.store.events_by_seq([seq for _, seq in keys[offset : offset + query.limit]])
        return [query.project(event) for event in events], total

    async def events_route(self, request: Request) -> Response:
        if request.method == "POST":
            return await self.create_event(request)
        if request.method == "PUT":
            return await self.update_event(request)
        return await self.get_events(request)

    async def health(self, request: Request) -> Response:
        return _json(
            {"status": "ok", "version": __version__, "store": self.store.path, "auth": self._expected is not None}
        )


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 404:
        message = f"no route {request.method} {request.url.path}"
    elif status == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    else:
        message = exc.detail if isinstance(exc, HTTPException) else "internal error"
    return _error(status, message)


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
