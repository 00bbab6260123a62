"""The default tracer and the module-level API (``tracer.init``, ``tracer.trace``, ``tracer.span``…).

The default tracer is created by ``init()`` or, from the environment, on first use (so
``@tracer.trace`` works before ``init()``). It is the only tracer whose configuration changes
process-wide state (LLM client patching, thread propagation): see ``Tracer._apply_process_settings``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar, overload

from ._export import Exporter
from ._propagation import Headers, TraceScope
from ._propagation import inject as _inject
from ._scopes import SessionScope, SpanScope
from ._span import RecorderRef, Span
from ._tracer import Tracer, recorder_of, trace_with

__all__ = [
    "aflush",
    "continue_trace",
    "current_span",
    "enrich_session",
    "enrich_span",
    "flush",
    "get_default_tracer",
    "init",
    "inject",
    "session",
    "set_default_tracer",
    "shutdown",
    "span",
    "stats",
    "trace",
]

F = TypeVar("F", bound=Callable[..., Any])

_lock = threading.Lock()
_default: Tracer | None = None


def get_default_tracer() -> Tracer:
    """The tracer behind the module-level API, created from the environment on first use."""
    tracer = _default
    if tracer is not None:
        return tracer
    return _make_default(lambda: Tracer())


def _make_default(build: Callable[[], Tracer]) -> Tracer:
    """The default tracer, built by *build* if there is none yet (its process-wide settings applied)."""
    global _default
    with _lock:
        if _default is not None:
            return _default
        _default = created = build()
        created._is_default = True
        DEFAULT_RECORDER.recorder = recorder_of(created)
    created._apply_process_settings()
    return created


# What the module-level ``@tracer.trace`` records with: the default tracer's recorder, kept up to
# date below (decorating may come before ``init()``; the tracer is made on the first traced call).
DEFAULT_RECORDER = RecorderRef(make=lambda: recorder_of(get_default_tracer()))


def set_default_tracer(tracer: Tracer) -> None:
    """Make *tracer* the one behind the module-level API (its process-wide settings apply)."""
    global _default
    with _lock:
        previous, _default = _default, tracer
        if previous is not None and previous is not tracer:
            previous._is_default = False
        tracer._is_default = True
        DEFAULT_RECORDER.recorder = recorder_of(tracer)
    tracer._apply_process_settings()


def init(
    project: str | None = None,
    api_key: str | None = None,
    server_url: str | None = None,
    source: str | None = None,
    session_name: str | None = None,
    exporter: Exporter | Sequence[Exporter] | None = None,
    **options: Any,
) -> Tracer:
    """Configure the default tracer (creating it if needed) and return it."""
    created = False

    def build() -> Tracer:
        nonlocal created
        created = True
        return Tracer(project, api_key, server_url, source, session_name, exporter, **options)

    tracer = _make_default(build)
    if created:
        return tracer
    return tracer.configure(project, api_key, server_url, source, session_name, exporter, **options)


@overload
def trace(func: F, /) -> F: ...


@overload
def trace(
    func: None = None,
    /,
    *,
    event_type: str | None = None,
    event_name: str | None = None,
    config: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    capture_inputs: bool = True,
    capture_output: bool = True,
    ignore_inputs: Iterable[str] = (),
) -> Callable[[F], F]: ...


def trace(
    func: F | None = None,
    /,
    *,
    event_type: str | None = None,
    event_name: str | None = None,
    config: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    capture_inputs: bool = True,
    capture_output: bool = True,
    ignore_inputs: Iterable[str] = (),
) -> F | Callable[[F], F]:
    """``@tracer.trace``: like ``Tracer.trace`` but bound to the default tracer *at call time*."""
    decorated: F | Callable[[F], F] = trace_with(
        DEFAULT_RECORDER,
        func,
        event_type,
        event_name,
        config,
        metadata,
        capture_inputs,
        capture_output,
        ignore_inputs,
    )
    return decorated


def span(
    event_name: str,
    event_type: str | None = None,
    inputs: Any = None,
    config: Any = None,
    metadata: Any = None,
) -> SpanScope:
    """``with tracer.span("name") as s:`` records one event for the block (``async with`` too)."""
    return get_default_tracer().span(event_name, event_type, inputs, config, metadata)


def session(
    session_name: str | None = None,
    session_id: str | None = None,
    inputs: Any = None,
    metadata: Any = None,
    user_properties: Any = None,
) -> SessionScope:
    """``with tracer.session(...)``: events inside belong to a new session (one per request, say)."""
    return get_default_tracer().session(session_name, session_id, inputs, metadata, user_properties)


def inject(headers: Headers) -> Headers:
    """Write the current span's (else session's) W3C ``traceparent``/``tracestate``/``baggage`` into
    *headers*; returns it."""
    return _inject(headers)


def continue_trace(headers: Any, session_name: str | None = None) -> TraceScope:
    """``with tracer.continue_trace(request.headers):``: events inside continue the caller's trace."""
    return get_default_tracer().continue_trace(headers, session_name)


def current_span() -> Span | None:
    """The innermost open span here, or None."""
    return get_default_tracer().current_span()


def enrich_span(**fields: Any) -> bool:
    """Merge ``inputs``/``outputs``/``config``/``metadata``/``metrics``/``feedback``/``user_properties``/``error``
    into the current span; False when there is none."""
    return get_default_tracer().enrich_span(**fields)


def enrich_session(**fields: Any) -> None:
    """Merge fields into the current session."""
    get_default_tracer().enrich_session(**fields)


def flush(timeout: float = 5.0) -> bool:
    """Deliver everything finished so far; True only if all of it was accepted."""
    return get_default_tracer().flush(timeout)


async def aflush(timeout: float = 5.0) -> bool:
    """``flush()`` for event loops (does not block the loop)."""
    return await get_default_tracer().aflush(timeout)


def shutdown(timeout: float = 5.0) -> None:
    """Drain and stop the default tracer's pipeline."""
    get_default_tracer().shutdown(timeout)


def stats() -> dict[str, Any]:
    """Delivery counters of the default tracer."""
    return get_default_tracer().stats()
