"""What every module of the store shares: its error, busy retries, ``IN (...)`` lists in chunks, its clock."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final, TypeVar

__all__ = ["StoreError", "chunks", "now_ms", "placeholders", "retry_busy"]

_T = TypeVar("_T")

# Ids per ``IN (...)`` list: well under SQLite's host-parameter limit (999 before 3.32).
_CHUNK: Final = 500
_BUSY_RETRIES: Final = 5


class StoreError(Exception):
    """A store that cannot be opened, read or written; the message is one line for the user."""


def now_ms() -> int:
    """Wall-clock epoch milliseconds: what the store records as ``stored_at`` / ``sent_at``."""
    return time.time_ns() // 1_000_000


def chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    """*items* in slices short enough for one ``IN (...)`` list."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def placeholders(count: int) -> str:
    """``?,?,…`` for an ``IN (...)`` list of *count* values."""
    return ",".join("?" * count)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def retry_busy(action: Callable[[], _T]) -> _T:
    """Run *action*, retrying briefly when SQLite reports busy without waiting (WAL recovery)."""
    for attempt in range(_BUSY_RETRIES):
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or attempt == _BUSY_RETRIES - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover
