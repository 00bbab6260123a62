"""Starting the library's own threads (the worker, the exporters' senders, the export helper, the
store's search-index builder)."""

from __future__ import annotations

import contextvars
import threading

__all__ = ["start_thread"]


def start_thread(thread: threading.Thread) -> bool:
    """Start *thread* from an empty context: it must not inherit, and keep alive, the caller's span
    and session. False when the interpreter refuses a new thread (Python 3.12 does at interpreter
    shutdown, e.g. from an ``atexit`` handler): the caller then does the work itself."""
    try:
        contextvars.Context().run(thread.start)
    except RuntimeError:  # "can't create new thread at interpreter shutdown"
        return False
    return True
