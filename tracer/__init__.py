"""tracer: see what your LLM application does.

``@tracer.trace`` and ``with tracer.span(...)`` record nested ``model`` / ``tool`` / ``chain``
events; a background worker ships them to a HoneyHive-compatible events API or a local exporter.
The module-level functions use the default ``Tracer`` (configured by ``init()``).
"""

from __future__ import annotations

from typing import Any

from . import testing
from ._context import bind_context
from ._errors import ConfigError
from ._span import Session, Span
from ._tracer import SessionScope, SpanScope, Tracer, get_default_tracer, init
from ._tracer import module_trace as trace
from ._version import __version__
from .exporters import Batch, ConsoleExporter, Exporter, ExportResult, InMemoryExporter, JSONLExporter
from .integrations import instrument, uninstrument

__all__ = [
    "Batch",
    "ConfigError",
    "ConsoleExporter",
    "ExportResult",
    "Exporter",
    "InMemoryExporter",
    "JSONLExporter",
    "Session",
    "SessionScope",
    "Span",
    "SpanScope",
    "Tracer",
    "__version__",
    "aflush",
    "bind_context",
    "current_span",
    "enrich_session",
    "enrich_span",
    "flush",
    "get_default_tracer",
    "init",
    "instrument",
    "session",
    "shutdown",
    "span",
    "stats",
    "testing",
    "trace",
    "uninstrument",
]


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
