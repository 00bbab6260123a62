"""``SQLiteExporter``: the default destination without an API key — a local store file.

Runs on the pipeline's background thread like any exporter: one transaction per batch. The file
is created on the first batch (a program that records nothing leaves nothing behind).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from typing import IO, Final

from .._export import Batch, Exporter, ExportResult
from .._version import DISTRIBUTION
from ._sql import StoreError
from ._store import TraceStore

__all__ = ["DEFAULT_STORE", "SQLiteExporter", "announce", "default_store_path", "startup_message"]

#: Where traces go when neither the ``store`` setting nor ``TRACER_STORE`` says otherwise.
DEFAULT_STORE: Final = os.path.join(".tracer", "traces.db")
STORE_ENV: Final = "TRACER_STORE"

_announced_lock = threading.Lock()
_announced: set[str] = set()


def default_store_path(path: str | os.PathLike[str] | None = None) -> str:
    """The store file to use: *path*, else ``$TRACER_STORE``, else ``./.tracer/traces.db`` (absolute)."""
    if path is None or not os.fspath(path).strip():
        path = os.environ.get(STORE_ENV, "").strip() or DEFAULT_STORE
    return os.path.abspath(os.path.expanduser(os.fspath(path)))


def _shown(path: str) -> str:
    """*path* relative to the working directory when it is under it (shorter, copy-pasteable)."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return path
    return path if relative.startswith("..") else os.path.join(".", relative)


def startup_message(path: str) -> str:
    """The one line printed when the default store is used: where traces go, how to see them."""
    shown = _shown(path)
    option = "" if os.path.abspath(DEFAULT_STORE) == path else f" --store {shown}"
    hint = f"view them with `tracer show{option} last` (or `tracer sessions`)"
    if importlib.util.find_spec("click") is None or importlib.util.find_spec("rich") is None:
        hint += f" after `pip install '{DISTRIBUTION}[cli]'`"
    return f"tracer: no API key, so traces go to {shown}; {hint}"


def announce(path: str, stream: IO[str] | None = None) -> None:
    """Print ``startup_message(path)`` to stderr, once per process and store."""
    with _announced_lock:
        if path in _announced:
            return
        _announced.add(path)
    out = stream if stream is not None else sys.stderr
    try:
        out.write(startup_message(path) + "\n")
        out.flush()
    except (OSError, ValueError):  # a closed or broken stderr must not break init()
        pass


class SQLiteExporter(Exporter):
    """Stores every batch in a local ``TraceStore`` (``tracer sessions`` / ``show`` / ``serve`` read it).

    ``path``: the store file (default: ``TRACER_STORE`` or ``./.tracer/traces.db``); ``timeout``:
    seconds a batch may wait for other processes writing the same file.
    """

    name = "sqlite"

    def __init__(self, path: str | os.PathLike[str] | None = None, *, timeout: float = 30.0) -> None:
        self.path = default_store_path(path)
        self._timeout = timeout
        self._lock = threading.Lock()
        self._store: TraceStore | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"SQLiteExporter({self.path!r})"

    def _open(self) -> TraceStore:
        with self._lock:
            if self._closed:
                raise StoreError(f"the exporter to {self.path} is shut down")
            if self._store is None:
                self._store = TraceStore(self.path, timeout=self._timeout)
            return self._store

    def export(self, batch: Batch) -> ExportResult:
        if not batch.encoded and not batch.updates:
            return ExportResult(delivered=0)
        store = self._open()
        texts = [raw.decode("utf-8") for raw in batch.encoded]
        store.write(list(zip(batch.events(), texts, strict=True)), batch.sessions, batch.updates)
        return ExportResult(delivered=len(batch.encoded))

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            store, self._store = self._store, None
        if store is not None:
            store.close()
