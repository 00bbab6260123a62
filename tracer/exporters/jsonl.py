"""``JSONLExporter``: one wire-shape event per line, to a file path or an open stream."""

from __future__ import annotations

import os
import threading
from typing import IO, cast

from .._export import Batch, Exporter

__all__ = ["JSONLExporter"]


class JSONLExporter(Exporter):
    """Appends each event as one compact JSON line. Closes the file only if it opened it."""

    name = "jsonl"

    def __init__(self, path_or_stream: str | os.PathLike[str] | IO[bytes] | IO[str]) -> None:
        self._lock = threading.Lock()
        if isinstance(path_or_stream, (str, os.PathLike)):
            self._path: str | None = os.fspath(path_or_stream)
            self._stream: IO[bytes] | IO[str] | None = None
        else:
            self._path = None
            self._stream = path_or_stream
        self._owned = self._path is not None

    def _open(self) -> IO[bytes] | IO[str]:
        if self._stream is None:
            assert self._path is not None
            directory = os.path.dirname(os.path.abspath(self._path))
            os.makedirs(directory, exist_ok=True)
            self._stream = open(self._path, "ab")  # noqa: SIM115 - closed in shutdown()
        return self._stream

    def export(self, batch: Batch) -> bool:
        if not batch.encoded:
            return True
        data = b"\n".join(batch.encoded) + b"\n"
        with self._lock:
            stream = self._open()
            if _is_text(stream):
                cast("IO[str]", stream).write(data.decode("utf-8"))
            else:
                cast("IO[bytes]", stream).write(data)
            stream.flush()
        return True

    def shutdown(self) -> None:
        with self._lock:
            if self._owned and self._stream is not None:
                self._stream.close()
                self._stream = None


def _is_text(stream: object) -> bool:
    import io

    if isinstance(stream, io.TextIOBase):
        return True
    mode = getattr(stream, "mode", "")
    return isinstance(mode, str) and "b" not in mode and hasattr(stream, "encoding")
