"""Destinations for finished events. Subclass ``Exporter`` to write your own."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._export import Batch, Exporter, ExportResult
from .console import ConsoleExporter
from .jsonl import JSONLExporter
from .memory import InMemoryExporter

if TYPE_CHECKING:
    from .honeyhive import HoneyHiveExporter
    from .otlp import OTLPExporter

__all__ = [
    "Batch",
    "ConsoleExporter",
    "ExportResult",
    "Exporter",
    "HoneyHiveExporter",
    "InMemoryExporter",
    "JSONLExporter",
    "OTLPExporter",
]


def __getattr__(name: str) -> Any:
    # Imported on first use: it pulls in httpx, which costs more at import time than the rest of the package.
    if name == "HoneyHiveExporter":
        from .honeyhive import HoneyHiveExporter

        return HoneyHiveExporter
    if name == "OTLPExporter":
        from .otlp import OTLPExporter

        return OTLPExporter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
