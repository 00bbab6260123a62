"""One traced request for the ASGI and WSGI middlewares: the continued trace or a new session, and
the request's ``chain`` event, whose end waits for the response body's end (streaming included).

The context is handled by hand rather than by ``with`` blocks: the event outlives the app call when
the body is streamed after it (WSGI iterables), and every step of that body runs under the event.
"""

from __future__ import annotations

from collections.abc import Iterable

from .._default import get_default_tracer
from .._span import Session, Span, current_session_var, current_span_var, is_ended, rename
from .._tracer import Tracer

__all__ = ["RequestEvent"]

_Context = tuple["Span | None", "Session | None"]


class RequestEvent:
    """The ``chain`` event of one request, current between ``enter()`` and ``leave()``.

    Its session: the caller's when the headers continue a trace (``continue_trace``), else a new one
    named *route* (the route template, else the path). Inputs: method, path, query; outputs: the
    status code; an error is recorded and the exception left to the caller to re-raise.
    """

    __slots__ = ("_context", "_outer", "span")

    def __init__(
        self,
        tracer: Tracer | None,
        headers: Iterable[tuple[str, str]],
        method: str,
        path: str,
        query: str,
        route: str | None,
    ) -> None:
        chosen = tracer if tracer is not None else get_default_tracer()
        name = route or path
        self._outer: _Context = (current_span_var.get(), current_session_var.get())
        try:
            if chosen.continue_trace(list(headers), session_name=name).__enter__() is None:
                chosen.session(name).__enter__()
            inputs = {"method": method, "path": path, "query": query}
            self.span = chosen.span(f"{method} {name}", "chain", inputs=inputs).__enter__()
        except BaseException:
            self.leave()  # the server's context must not keep half a request
            raise
        self._context: _Context = (current_span_var.get(), current_session_var.get())

    def enter(self) -> _Context:
        """Make the event current again (a step of a streamed body); returns what was current."""
        previous = (current_span_var.get(), current_session_var.get())
        current_span_var.set(self._context[0])
        current_session_var.set(self._context[1])
        return previous

    def leave(self, previous: _Context | None = None) -> None:
        """Restore what was current before (``enter()``'s answer, else before the request)."""
        span, session = previous if previous is not None else self._outer
        current_span_var.set(span)
        current_session_var.set(session)

    def status(self, code: int) -> None:
        self.span.update(outputs={"status_code": code})

    def rename(self, route: str | None, method: str) -> None:
        """Name the event after the route the framework matched (known only once it routed)."""
        if route and not is_ended(self.span):
            rename(self.span, f"{method} {route}")

    def finish(self, error: BaseException | None = None) -> None:
        """End the event (idempotent); *error* recorded, on the event or, once ended, as an update."""
        span = self.span
        if error is not None:
            if is_ended(span):
                span.update(error=error)
            else:
                span.set_error(error)
        span.end()
