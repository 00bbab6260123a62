"""The local trace store: wire-shape events in one SQLite file (default ``./.tracer/traces.db``).

- ``SQLiteExporter``: the exporter used when there is no API key (``tracer.init()`` wires it).
- ``TraceStore``: open a store to read or write it (what ``tracer sessions``/``show``/``serve`` use).
- ``send_store``: re-send stored events to a HoneyHive-compatible API, at most once per server.

Only the standard library's ``sqlite3`` and ``orjson`` are needed; no optional extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._reads import SessionSummary, StoredEvent
from ._schema import MIGRATIONS, SCHEMA_VERSION
from ._sql import StoreError
from ._store import TraceStore
from .exporter import DEFAULT_STORE, SQLiteExporter, announce, default_store_path, startup_message

if TYPE_CHECKING:
    from ._send import SendReport, send_store

__all__ = [
    "DEFAULT_STORE",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SQLiteExporter",
    "SendReport",
    "SessionSummary",
    "StoreError",
    "StoredEvent",
    "TraceStore",
    "announce",
    "default_store_path",
    "send_store",
    "startup_message",
]


def __getattr__(name: str) -> Any:
    # Imported on first use: sending needs httpx, which the exporter alone does not.
    if name in ("SendReport", "send_store"):
        from . import _send

        return getattr(_send, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
