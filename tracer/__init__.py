"""tracer: see what your LLM application does.

``@tracer.trace`` and ``with tracer.span(...)`` record nested ``model`` / ``tool`` / ``chain``
events; a background worker ships them to a HoneyHive-compatible events API or a local exporter.
The module-level functions use the default ``Tracer`` (configured by ``init()``).
"""

from __future__ import annotations

import typing as _typing

from . import testing
from ._context import bind_context
from ._default import (
    aflush,
    continue_trace,
    current_span,
    enrich_session,
    enrich_span,
    flush,
    get_default_tracer,
    init,
    inject,
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

if _typing.TYPE_CHECKING:
    from .exporters import HoneyHiveExporter, OTLPExporter

__all__ = [
    "Batch",
    "ConfigError",
    "ConsoleExporter",
    "ExportResult",
    "Exporter",
    "HoneyHiveExporter",
    "InMemoryExporter",
    "JSONLExporter",
    "OTLPExporter",
    "Session",
    "SessionScope",
    "Span",
    "SpanScope",
    "Tracer",
    "__version__",
    "aflush",
    "bind_context",
    "continue_trace",
    "current_span",
    "enrich_session",
    "enrich_span",
    "flush",
    "get_default_tracer",
    "init",
    "inject",
    "instrument",
    "session",
    "shutdown",
    "span",
    "stats",
    "testing",
    "trace",
    "uninstrument",
]


def __getattr__(name: str) -> _typing.Any:
    # The HTTP exporters pull in httpx, which takes longer to import than the rest of the package
    # (about 100 ms of `python -X importtime -c "import tracer.exporters.otlp"` here): loaded on first use.
    if name in ("HoneyHiveExporter", "OTLPExporter"):
        from . import exporters

        return getattr(exporters, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
