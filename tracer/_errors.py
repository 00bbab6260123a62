"""Errors the library raises, and the guard that keeps internal failures away from the host app."""

from __future__ import annotations

import logging
import os
import threading

__all__ = ["ConfigError", "logger", "report_internal_error", "warn_once"]

logger = logging.getLogger("tracer")

# Our own test-suite sets this so that a bug inside the library fails the test that hit it
# instead of being logged and swallowed. Users' own pytest runs keep the swallowing behaviour.
_RAISE_ENV = "TRACER_RAISE_INTERNAL_ERRORS"

_seen_lock = threading.Lock()
_seen: set[str] = set()


class ConfigError(ValueError):
    """An invalid setting passed to ``init()`` / ``Tracer()`` or found in the environment.

    The message names the setting (argument and environment variable) and what is accepted.
    """


def _first_time(key: str) -> bool:
    with _seen_lock:
        if key in _seen:
            return False
        _seen.add(key)
        return True


def warn_once(key: str, message: str, *args: object) -> None:
    """Log a warning the first time *key* is seen in this process, so a hot loop cannot flood the log."""
    if _first_time("warn:" + key):
        logger.warning(message, *args)


def report_internal_error(where: str, exc: BaseException) -> None:
    """Record a failure inside the library: log it once per call site, never let it reach the app.

    Under the project's own tests (``TRACER_RAISE_INTERNAL_ERRORS=1``) the error is re-raised instead,
    so a library bug cannot hide behind the guard.
    """
    if os.environ.get(_RAISE_ENV) == "1":
        raise exc
    if _first_time(f"err:{where}:{type(exc).__name__}"):
        logger.error(
            "tracer: internal error in %s (your code keeps running; this is logged once): %r",
            where,
            exc,
            exc_info=exc,
        )
