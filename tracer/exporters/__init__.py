"""Destinations for finished events. Subclass ``Exporter`` to write your own."""

from ._base import Batch, Exporter, ExportResult
from .console import ConsoleExporter
from .jsonl import JSONLExporter
from .memory import InMemoryExporter

__all__ = [
    "Batch",
    "ConsoleExporter",
    "ExportResult",
    "Exporter",
    "InMemoryExporter",
    "JSONLExporter",
]
