"""Trace headers on outgoing HTTP calls (the opt-in ``propagate_http`` setting): httpx and requests.

Every request sent through ``httpx.Client.send`` / ``httpx.AsyncClient.send`` (so ``httpx.get``,
``client.post``, streams) or ``requests.Session.send`` (so ``requests.get`` and redirects) while a
span or a session is current carries their ``_propagation`` headers (``current_headers``). Never to the tracer's own
endpoints (their origins are excluded, and the exporters' requests run where nothing is traced),
and never over a ``traceparent`` the caller set: then the request is left as it is.

Patched with the LLM integrations' wrapt mechanics (``_patch``: whatever the import order, undone
by ``disable()``), but not listed in their registry: this is not an LLM client and records nothing.
"""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Iterable
from typing import Any, Final

from .._context import suppressed
from .._errors import report_internal_error
from .._propagation import TRACEPARENT, current_headers
from .._span import current_session_var, current_span_var
from . import _patch
from ._patch import Library, Target, mark

__all__ = ["LIBRARY", "disable", "enable", "excluded_origins", "origin"]

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_lock = threading.Lock()
# (scheme, host, port) of the endpoints the tracer itself sends to: never given trace headers.
_excluded: frozenset[tuple[str, str, int]] = frozenset()


def origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of *url*, lower-cased, default port filled in; None if it has no host."""
    try:
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower()
        port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
    except ValueError:
        return None
    return (scheme, host, port) if host else None


def excluded_origins() -> frozenset[tuple[str, str, int]]:
    return _excluded


def _traced() -> bool:
    """A span or a session is current (see ``_propagation.current_headers``), outside our own traffic."""
    return (current_span_var.get() is not None or current_session_var.get() is not None) and not suppressed.get()


def _add(headers: Any, url: str) -> None:
    """Write the current trace headers into a request's (case-insensitive) *headers*."""
    if TRACEPARENT in headers or origin(url) in _excluded:
        return
    written = current_headers()
    if written is None:
        return
    for name, value in written.items():
        if name == TRACEPARENT or name not in headers:  # the caller's tracestate / baggage stay theirs
            headers[name] = value


def _httpx_send(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    # Runs in the caller's context also for AsyncClient.send: the headers are set before the
    # coroutine is returned, under the span current at the call.
    if LIBRARY.active and _traced():
        try:
            request = args[0] if args else kwargs["request"]
            _add(request.headers, str(request.url))
        except Exception as exc:
            report_internal_error("adding trace headers to an httpx request", exc)
    return wrapped(*args, **kwargs)


def _requests_send(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if LIBRARY.active and _traced():
        try:
            request = args[0] if args else kwargs["request"]
            if request.headers is not None and isinstance(request.url, str):
                _add(request.headers, request.url)
        except Exception as exc:
            report_internal_error("adding trace headers to a requests request", exc)
    return wrapped(*args, **kwargs)


def _targets() -> tuple[Target, ...]:
    return (
        Target("httpx._client", "Client.send", mark(_httpx_send)),
        Target("httpx._client", "AsyncClient.send", mark(_httpx_send)),
        Target("requests.sessions", "Session.send", mark(_requests_send)),
    )


LIBRARY: Final = Library("http propagation", (0,), _targets)


def enable(exclude: Iterable[str]) -> None:
    """Propagate on outgoing httpx and requests calls, except to the origins of the URLs *exclude*."""
    global _excluded
    with _lock:
        _excluded = frozenset(found for found in map(origin, exclude) if found is not None)
        _patch.enable(LIBRARY)


def disable() -> bool:
    """Restore ``send``; True if it was patched."""
    with _lock:
        return _patch.disable(LIBRARY)
