"""The viewer's routes (``tracer ui``, and ``tracer serve`` beside the collector): its pages, its
static files and its JSON API under ``/api/`` (README, "Viewer API"), over a read-only store.

Pages are one ``static/index.html`` (the page reads ``location.pathname``): 200 for a known session
or event, 404 for an unknown one, 401 without the token when one is required. Every answer carries
the security headers (``SECURITY_HEADERS``); pages also the Content-Security-Policy. Malformed
parameters get 400 ``{"error", "parameter"}``; unknown ids a JSON 404. The live stream is
``_stream``'s job, the token's ``_viewer_auth``'s.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from .._version import __version__
from ..store import StoreError, TraceStore
from ..store._browse import EVENT_TYPES, SORTS, Browser, SessionQuery
from ..store._search import SearchIndex
from ._stream import stream_response
from ._viewer_auth import COOKIE, ViewerAuth

__all__ = ["CSP", "SECURITY_HEADERS", "ParameterError", "Viewer", "viewer_routes"]

CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS: Final = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
STATIC_DIR: Final = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
_STATIC_TYPES: Final = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
}
# Shown until the page (static/index.html, built on another branch) is in the package: no script,
# no style, so the CSP holds for it too.
_PLACEHOLDER: Final = (
    b"<!doctype html><html lang=en><head><meta charset=utf-8><title>tracer</title>"
    b'<link rel=stylesheet href="/static/app.css"><script type=module src="/static/app.js"></script></head>'
    b"<body><h1>tracer viewer</h1><p>The page is not installed; the API is at /api/.</p></body></html>"
)
# Bounds of the API's parameters (the contract's).
_SESSIONS_LIMIT: Final = (1, 500, 50)
_EVENTS_LIMIT: Final = (1, 5000, 1000)
_SEARCH_LIMIT: Final = (1, 200, 50)
_MAX_QUERY_CHARS: Final = 1000
_MAX_MS: Final = 2**53  # times beyond JavaScript's exact integers are not times

Handler = Callable[[Request], Awaitable[Response]]


class ParameterError(Exception):
    """A malformed query parameter: 400 ``{"error": message, "parameter": name}``."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.message = message


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(data),
        status_code=status,
        media_type="application/json",
        headers={**SECURITY_HEADERS, "Cache-Control": "no-store", **(headers or {})},
    )


def _int(params: Mapping[str, str], name: str, low: int, high: int, default: int | None) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ParameterError(name, f"{name} must be a whole number, got {value!r}") from None
    if not low <= number <= high:
        raise ParameterError(name, f"{name} must be between {low} and {high}, got {number}")
    return number


def _limit(params: Mapping[str, str], bounds: tuple[int, int, int]) -> int:
    low, high, default = bounds
    value = _int(params, "limit", low, high, default)
    assert value is not None
    return value


def _offset(params: Mapping[str, str]) -> int:
    value = _int(params, "offset", 0, 2**62, 0)
    assert value is not None
    return value


def _text(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name)
    if value is None or value.strip() == "":
        return None
    if len(value) > _MAX_QUERY_CHARS:
        raise ParameterError(name, f"{name} is longer than {_MAX_QUERY_CHARS} characters")
    if "\x00" in value:
        raise ParameterError(name, f"{name} must not contain NUL characters")
    return value.strip()


def _choice(params: Mapping[str, str], name: str, choices: tuple[str, ...], default: str | None) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return default
    if value not in choices:
        raise ParameterError(name, f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def session_query(params: Mapping[str, str]) -> SessionQuery:
    """The sessions list's parameters (``/api/sessions``), checked."""
    errors = _choice(params, "errors", ("0", "1", "true", "false"), "0")
    since = _int(params, "since", 0, _MAX_MS, None)
    until = _int(params, "until", 0, _MAX_MS, None)
    if since is not None and until is not None and until < since:
        raise ParameterError("until", f"until ({until}) is before since ({since})")
    return SessionQuery(
        text=_text(params, "q"),
        event_type=_choice(params, "type", EVENT_TYPES, None),
        model=_text(params, "model"),
        errors_only=errors in ("1", "true"),
        since=since,
        until=until,
        sort=_choice(params, "sort", tuple(SORTS), "start") or "start",
        descending=_choice(params, "order", ("desc", "asc"), "desc") == "desc",
        limit=_limit(params, _SESSIONS_LIMIT),
        offset=_offset(params),
    )


def _unknown_session(session_id: str) -> Response:
    return json_response({"error": "unknown session", "session_id": session_id}, 404)


def _unknown_event(event_id: str) -> Response:
    return json_response({"error": "unknown event", "event_id": event_id}, 404)


class Viewer:
    """The viewer's handlers over one store (opened read-only by the caller)."""

    def __init__(self, store: TraceStore, auth: ViewerAuth, search_engine: str | None = None) -> None:
        self.store = store
        self.auth = auth
        self.browser = Browser(store)
        self.search_index = SearchIndex(store, search_engine)
        # Build the FTS5 index now, in the background: a first search on a big store would
        # otherwise wait seconds for it (200,000 events: 3.5-12.5 s, bench/viewer_api.py).
        self.search_index.warm()

    def close(self) -> None:
        self.search_index.close()

    # -- plumbing ---------------------------------------------------------------------------------

    def api(self, handler: Handler) -> Handler:
        """*handler* behind the token check, its parameter and store errors answered as JSON."""

        async def wrapped(request: Request) -> Response:
            if not self.auth.allows(request):
                return json_response({"error": "token required"}, 401)
            try:
                return await handler(request)
            except ParameterError as exc:
                return json_response({"error": exc.message, "parameter": exc.parameter}, 400)
            except StoreError as exc:
                return json_response({"error": str(exc)}, 503)

        return wrapped

    def _page(self, status: int = 200) -> Response:
        path = os.path.join(STATIC_DIR, "index.html")
        try:
            with open(path, "rb") as file:
                body = file.read()
        except FileNotFoundError:
            body = _PLACEHOLDER
        headers = {**SECURITY_HEADERS, "Content-Security-Policy": CSP, "Cache-Control": "no-store"}
        return Response(body, status_code=status, media_type="text/html; charset=utf-8", headers=headers)

    # -- pages ------------------------------------------------------------------------------------

    async def list_page(self, request: Request) -> Response:
        return self._page(200 if self.auth.allows(request) else 401)

    async def session_page(self, request: Request) -> Response:
        if not self.auth.allows(request):
            return self._page(401)
        session_id = request.path_params["session_id"]
        event_id = request.path_params.get("event_id")

        def known() -> bool:
            if self.browser.session(session_id) is None:
                return False
            if event_id is None:
                return True
            event = self.browser.event(event_id)
            return event is not None and event.get("session_id") == session_id

        try:
            found = await run_in_threadpool(known)
        except StoreError:
            return self._page(503)
        return self._page(200 if found else 404)

    async def static(self, request: Request) -> Response:
        name = request.path_params["file"]
        root = os.path.realpath(STATIC_DIR)
        path = os.path.realpath(os.path.join(root, name))
        kind = _STATIC_TYPES.get(os.path.splitext(path)[1].lower())
        if not path.startswith(root + os.sep) or kind is None or not os.path.isfile(path):
            return json_response({"error": "no such file", "file": name}, 404)
        return FileResponse(path, media_type=kind, headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})

    # -- the API ----------------------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        """``POST /api/login`` with ``{"token": …}`` (JSON) or a form field ``token``: sets the cookie."""
        form = "application/x-www-form-urlencoded" in request.headers.get("content-type", "")
        body = await request.body()
        token: Any = None
        if len(body) <= 4096:
            if form:  # the page's static login form (parsed here: Starlette's form parser is an extra)
                fields = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
                token = fields.get("token", [None])[0]
            else:
                try:
                    data = orjson.loads(body)
                except orjson.JSONDecodeError:
                    data = None
                token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not self.auth.matches(token.strip()):
            return json_response({"error": "token required"}, 401)
        response: Response = RedirectResponse("/", 303) if form else json_response({"ok": True})
        if self.auth.required:
            response.set_cookie(COOKIE, token.strip(), httponly=True, samesite="strict", path="/")
        return response

    async def info(self, request: Request) -> Response:
        return json_response(
            {
                "store": self.store.path,
                "version": __version__,
                "auth": self.auth.required,
                "engine": self.search_index.engine,
            }
        )

    async def sessions(self, request: Request) -> Response:
        query = session_query(request.query_params)
        rows, total = await run_in_threadpool(self.browser.sessions, query)
        return json_response({"sessions": rows, "total": total, "limit": query.limit, "offset": query.offset})

    async def session(self, request: Request) -> Response:
        session_id = request.path_params["session_id"]
        row = await run_in_threadpool(self.browser.session, session_id)
        return _unknown_session(session_id) if row is None else json_response(row)

    async def session_events(self, request: Request) -> Response:
        session_id = request.path_params["session_id"]
        limit = _limit(request.query_params, _EVENTS_LIMIT)
        offset = _offset(request.query_params)
        found = await run_in_threadpool(self.browser.waterfall, session_id, limit, offset)
        if found is None:
            return _unknown_session(session_id)
        rows, total = found
        return json_response({"events": rows, "total": total, "offset": offset, "limit": limit})

    async def event(self, request: Request) -> Response:
        event_id = request.path_params["event_id"]
        event = await run_in_threadpool(self.browser.event, event_id)
        return _unknown_event(event_id) if event is None else json_response(event)

    async def search(self, request: Request) -> Response:
        text = _text(request.query_params, "q")
        if text is None:
            raise ParameterError("q", "q (the text to search for) is required")
        limit = _limit(request.query_params, _SEARCH_LIMIT)
        offset = _offset(request.query_params)
        page = await run_in_threadpool(self.search_index.search, text, limit, offset)
        return json_response(
            {"engine": page.engine, "indexing": page.indexing, "results": page.results, "total": page.total}
        )

    async def stream(self, request: Request) -> Response:
        session_id = _text(request.query_params, "session")
        after = _int(request.query_params, "after", 0, 2**62, None)
        if session_id is not None and await run_in_threadpool(self.browser.session, session_id) is None:
            return _unknown_session(session_id)
        return await stream_response(request, self.browser, session_id, after, SECURITY_HEADERS)

    async def no_route(self, request: Request) -> Response:
        if not self.auth.allows(request):
            return json_response({"error": "token required"}, 401)
        return json_response({"error": f"no API endpoint {request.method} {request.url.path}"}, 404)


def viewer_routes(viewer: Viewer) -> list[BaseRoute]:
    """The viewer's pages, static files and API, at the contract's paths."""
    api = viewer.api
    return [
        Route("/", viewer.list_page, methods=["GET"]),
        Route("/sessions/{session_id}", viewer.session_page, methods=["GET"]),
        Route("/sessions/{session_id}/events/{event_id}", viewer.session_page, methods=["GET"]),
        Route("/static/{file:path}", viewer.static, methods=["GET"]),
        Route("/api/login", viewer.login, methods=["POST"]),
        Route("/api/info", api(viewer.info), methods=["GET"]),
        Route("/api/sessions", api(viewer.sessions), methods=["GET"]),
        Route("/api/sessions/{session_id}", api(viewer.session), methods=["GET"]),
        Route("/api/sessions/{session_id}/events", api(viewer.session_events), methods=["GET"]),
        Route("/api/events/{event_id}", api(viewer.event), methods=["GET"]),
        Route("/api/search", api(viewer.search), methods=["GET"]),
        Route("/api/stream", api(viewer.stream), methods=["GET"]),
        Route("/api/{rest:path}", viewer.no_route, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
    ]
