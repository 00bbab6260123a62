"""``TracerMiddleware`` for ASGI apps (Starlette, FastAPI…): one traced request per HTTP request.

```python
app = Starlette(routes=..., middleware=[Middleware(TracerMiddleware)])   # or app.add_middleware
app = TracerMiddleware(app)                                              # any ASGI app
```

Each request continues the caller's trace (``tracer.continue_trace`` on its headers) or opens a
new session named after the route template (``/items/{item_id}``; the path when the app does not
expose its routes), and records one ``chain`` event: inputs ``method``, ``path``, ``query``;
outputs ``status_code``; an exception is recorded and re-raised unchanged. The event ends with the
response body's last chunk (a streamed response included), or when the app returns.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .._errors import report_internal_error
from .._tracer import Tracer
from ._request import RequestEvent

__all__ = ["TracerMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_MAX_MOUNT_DEPTH = 8  # routers nest this deep at most before we stop looking for the template


class TracerMiddleware:
    """Trace every HTTP request of *app* with *tracer* (default: the default tracer, ``tracer.init``)."""

    def __init__(self, app: ASGIApp, tracer: Tracer | None = None) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":  # websockets, lifespan: not requests
            await self.app(scope, receive, send)
            return
        method = str(scope.get("method", ""))
        try:
            headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in scope.get("headers") or ()]
            query = scope.get("query_string", b"")
            template = _route_template(scope, self.app)
            event = RequestEvent(
                self.tracer,
                headers,
                method,
                str(scope.get("path", "")),
                query.decode("latin-1") if isinstance(query, bytes) else str(query),
                template,
            )
        except Exception as exc:
            report_internal_error("starting a request event", exc)
            await self.app(scope, receive, send)
            return

        async def traced_send(message: Message) -> None:
            kind = message.get("type")
            if kind == "http.response.start":
                try:
                    event.status(int(message.get("status", 0)))
                    if template is None:  # routed by something we could not match beforehand
                        event.rename(_matched_route(scope), method)
                except Exception as exc:  # a malformed message is the server's to refuse, not ours
                    report_internal_error("recording a response status", exc)
            await send(message)
            if kind == "http.response.body" and not message.get("more_body", False):
                event.finish()  # the body's last chunk is out: the request is done

        try:
            await self.app(scope, receive, traced_send)
        except BaseException as exc:
            event.finish(exc)
            raise
        else:
            event.finish()
        finally:
            event.leave()


def _matched_route(scope: Scope) -> str | None:
    """The template of the route Starlette matched (it sets ``scope["route"]`` when routing)."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path if isinstance(path, str) else None


def _route_template(scope: Scope, app: Any) -> str | None:
    """The route template for this request, found before the app runs (so that the session is
    named right from its first event): Starlette's routes (``app.router.routes``, mounts followed)
    matched against the scope as Starlette's router will. None for other apps."""
    router = getattr(scope.get("app"), "router", None) or getattr(app, "router", None)
    routes = getattr(router, "routes", None)
    if routes is None:
        return None
    try:
        return _match(routes, dict(scope), "", 0)
    except Exception:  # a route type of someone else's that does not match like Starlette's
        return None


def _match(routes: Any, scope: dict[str, Any], prefix: str, depth: int) -> str | None:
    for route in routes:
        match, child = route.matches(scope)
        if getattr(match, "name", None) != "FULL":
            continue
        inner = getattr(route, "routes", None)
        # A route's display form (``/items/{item_id}``, convertors left out); a mount's own path.
        path = getattr(route, "path", None) if inner else getattr(route, "path_format", None)
        if not isinstance(path, str):
            return None
        if inner and depth < _MAX_MOUNT_DEPTH:  # a Mount: the template continues inside it
            found = _match(inner, {**scope, **child}, prefix + path, depth + 1)
            if found is not None:
                return found
        return prefix + path
    return None
