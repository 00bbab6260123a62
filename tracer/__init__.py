"""tracer: see what your LLM application does.

``@tracer.trace`` and ``with tracer.span(...)`` record nested ``model`` / ``tool`` / ``chain``
events; a background worker ships them to a HoneyHive-compatible events API or a local exporter.
The module-level functions use the default ``Tracer`` (configured by ``init()``).
"""

from __future__ import annotations

from . import testing
from ._context import bind_context
from ._default import (
    aflush,
    current_span,
    enrich_session,
    enrich_span,
    flush,
    get_default_tracer,
    init,
    session,
    shutdown,
    span,
    stats,
    trace,
)
from ._errors import ConfigError
from ._scopes import SessionScope, SpanScope
from ._span import Session, Span
from ._tracer import Tracer
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
