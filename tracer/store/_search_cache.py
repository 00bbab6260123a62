"""The search indexes' cache directory (``$XDG_CACHE_HOME/tracer/search/``): where a store's FTS5
index lives, and pruning the indexes nobody uses any more, so that a file per store ever searched
does not stay there forever.

An index is "used" when a viewer opens it, builds it or searches it: each of those updates its
mtime (the ``-wal`` file's counts too, as pages are written there first). An index records the
absolute path of its store in its ``state`` table (key ``store``); older indexes do not, and only
their mtime is looked at.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import sqlite3
import time
from typing import Final

__all__ = ["STORE_GONE_UNUSED_FOR", "UNUSED_FOR", "index_path", "last_used", "prune", "recorded_store", "touch"]

logger = logging.getLogger("tracer")

# An index unused this long is deleted whatever its store: rebuilding one costs seconds (200,000
# events in 3.5-12.5 s, bench/viewer_api.py), keeping a dead one costs its size on disk forever.
UNUSED_FOR: Final = 30 * 86400.0
# An index whose store is gone is deleted once unused this long: not at once, so that a store being
# replaced (written to a new file, then renamed over the old one) or another viewer still running
# over a store deleted under it keeps its index; a running viewer's index is touched by every search.
STORE_GONE_UNUSED_FOR: Final = 86400.0
# The names index_path() gives: nothing else in the directory is ever deleted.
_INDEX_NAME: Final = re.compile(r"[0-9a-f]{24}\.db")
_SIDE_FILES: Final = ("", "-wal", "-shm", "-journal")


def index_path(store_path: str) -> str:
    """Where the FTS5 index of the store at *store_path* lives: under the user's cache directory
    (``$XDG_CACHE_HOME``, else ``~/.cache``), named by a hash of the store's absolute path."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    digest = hashlib.sha256(os.path.abspath(store_path).encode("utf-8", "surrogatepass")).hexdigest()[:24]
    return os.path.join(base, "tracer", "search", f"{digest}.db")


def touch(path: str) -> None:
    """Mark the index at *path* used now (its mtime); a failure only costs an early prune."""
    with contextlib.suppress(OSError):
        os.utime(path)


def last_used(path: str) -> float:
    """When the index at *path* was last used: the newest mtime of the file and its WAL."""
    newest = os.stat(path).st_mtime
    with contextlib.suppress(OSError):
        newest = max(newest, os.stat(path + "-wal").st_mtime)
    return newest


def recorded_store(path: str) -> str | None:
    """The store path the index at *path* records (None: an older index, or it cannot be read).
    Opened read-only so that looking does not count as a use."""
    uri = "file:" + path.replace("?", "%3f").replace("#", "%23") + "?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=0.5)) as db:
            row = db.execute("SELECT value FROM state WHERE key = 'store'").fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row is not None and isinstance(row[0], str) else None


def _stale(path: str, now: float) -> bool:
    idle = now - last_used(path)
    if idle >= UNUSED_FOR:
        return True
    if idle < STORE_GONE_UNUSED_FOR:
        return False
    store = recorded_store(path)
    return store is not None and not os.path.exists(store)


def prune(directory: str, keep: str, now: float | None = None) -> list[str]:
    """Delete the indexes in *directory* (not *keep*) unused for ``UNUSED_FOR``, or for
    ``STORE_GONE_UNUSED_FOR`` when the store they record is gone; returns the paths deleted.
    Never raises: a failure (permissions, another process deleting the same file) is one debug line."""
    moment = time.time() if now is None else now
    deleted: list[str] = []
    try:
        names = sorted(os.listdir(directory))
        for name in names:
            path = os.path.join(directory, name)
            if not _INDEX_NAME.fullmatch(name) or os.path.abspath(path) == os.path.abspath(keep):
                continue
            try:
                stale = _stale(path, moment)
            except FileNotFoundError:  # another process pruned it first
                continue
            if not stale:
                continue
            for suffix in _SIDE_FILES:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path + suffix)
            deleted.append(path)
    except OSError as exc:
        logger.debug("tracer: pruning the search index cache %s stopped: %s", directory, exc)
    return deleted
