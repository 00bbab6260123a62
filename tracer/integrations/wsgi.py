"""``TracerMiddleware`` for WSGI apps (Flask, Django's WSGI handler…): one traced request per request.

```python
app.wsgi_app = TracerMiddleware(app.wsgi_app)   # Flask
application = TracerMiddleware(application)     # any WSGI app
```

Each request continues the caller's trace (``tracer.continue_trace`` on its headers) or opens a
new session named after the route template (Flask's ``/items/<int:item_id>``; the path for apps
whose routes are not visible), and records one ``chain`` event: inputs ``method``, ``path``,
``query``; outputs ``status_code``; an exception is recorded and re-raised unchanged. The event
ends when the server has sent the whole body (the iterable exhausted or closed), and every step
of a streamed body runs under it. A body that is the server's own file wrapper
(``environ["wsgi.file_wrapper"]``, what Flask's ``send_file`` returns under such a server) is handed
back as it is, so that the server can still send the file with ``sendfile``; the event then ends
when the server closes it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .._errors import report_internal_error
from .._tracer import Tracer
from ._request import RequestEvent

__all__ = ["TracerMiddleware"]

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class TracerMiddleware:
    """Trace every request of *app* with *tracer* (default: the default tracer, ``tracer.init``)."""

    def __init__(self, app: WSGIApp, tracer: Tracer | None = None) -> None:
        self.app = app
        self.tracer = tracer

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            event = RequestEvent(
                self.tracer,
                _headers(environ),
                str(environ.get("REQUEST_METHOD", "")),
                str(environ.get("PATH_INFO", "")),
                str(environ.get("QUERY_STRING", "")),
                _route_template(environ, self.app),
            )
        except Exception as exc:
            report_internal_error("starting a request event", exc)
            return self.app(environ, start_response)

        def traced_start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            with contextlib.suppress(ValueError):  # not a status line we can read: the server will say so
                event.status(int(str(status).split(" ", 1)[0]))
            if exc_info is None:
                return start_response(status, headers)
            return start_response(status, headers, exc_info)

        try:
            body = self.app(environ, traced_start_response)
        except BaseException as exc:
            event.finish(exc)
            raise
        finally:
            event.leave()
        file_wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(file_wrapper, type) and isinstance(body, file_wrapper) and _end_on_close(body, event):
            return body
        return _Body(body, event)


def _end_on_close(body: Any, event: RequestEvent) -> bool:
    """Make closing the server's file wrapper *body* end *event*; False if its ``close`` cannot be
    replaced (then it is wrapped like any body, and sent through Python rather than ``sendfile``).

    PEP 3333's file wrapper: a server recognizes its own by type, so wrapping it in ``_Body`` would
    turn off its platform-specific transmission. The server calls ``close()`` once the file is
    sent (or abandoned), as for any body.
    """
    close = getattr(body, "close", None)

    def traced_close() -> None:
        try:
            if callable(close):
                close()
        finally:
            event.finish()

    try:
        body.close = traced_close
    except (AttributeError, TypeError):  # __slots__, a read-only property
        return False
    return True


class _Body:
    """The app's response iterable, each step under the request's event, which ends with it."""

    def __init__(self, body: Iterable[bytes], event: RequestEvent) -> None:
        self._body = body
        self._event = event
        self._iterator: Iterator[bytes] | None = None

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        previous = self._event.enter()
        try:
            if self._iterator is None:
                self._iterator = iter(self._body)
            return next(self._iterator)
        except StopIteration:
            self._event.finish()
            raise
        except BaseException as exc:
            self._event.finish(exc)
            raise
        finally:
            self._event.leave(previous)

    def close(self) -> None:
        """Called by the server when the response is done (PEP 3333), or abandoned."""
        previous = self._event.enter()
        try:
            close = getattr(self._body, "close", None)
            if callable(close):
                close()
        finally:
            self._event.finish()
            self._event.leave(previous)


def _headers(environ: dict[str, Any]) -> list[tuple[str, str]]:
    """The request headers the trace context may be in (``HTTP_TRACEPARENT`` → ``traceparent``)."""
    return [
        (key[5:].replace("_", "-").lower(), value)
        for key, value in environ.items()
        if key in ("HTTP_TRACEPARENT", "HTTP_TRACESTATE", "HTTP_BAGGAGE")
    ]


def _route_template(environ: dict[str, Any], app: Any) -> str | None:
    """The route template (``/items/<int:item_id>``) when *app* is a Flask app or its ``wsgi_app``
    (its werkzeug ``url_map`` matched as Flask will); None for other apps or no match."""
    owner = app if hasattr(app, "url_map") else getattr(app, "__self__", None)
    url_map = getattr(owner, "url_map", None)
    if url_map is None:
        return None
    try:
        rule, _ = url_map.bind_to_environ(environ).match(return_rule=True)
    except Exception:  # 404, 405, a redirect: no route
        return None
    template = getattr(rule, "rule", None)
    return template if isinstance(template, str) else None
