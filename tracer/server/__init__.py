"""A local HoneyHive-compatible collector: ``tracer serve`` (needs ``pip install 'tracer-ai[server]'``).

Implements HoneyHive's events API (``POST /events``, ``POST /events/batch``, ``PUT /events``,
``POST /session/start``, ``GET /session/{id}``, ``POST /events/export``, …) on a local trace store,
so any HoneyHive-style client can send to it.
Importing this package does not import the web framework; ``create_app`` and ``serve`` do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._wire import BadRequest, normalize_batch, normalize_event, normalize_session, normalize_update

if TYPE_CHECKING:
    from ._app import create_app
    from ._run import serve

__all__ = [
    "BadRequest",
    "create_app",
    "normalize_batch",
    "normalize_event",
    "normalize_session",
    "normalize_update",
    "serve",
]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from ._app import create_app

        return create_app
    if name == "serve":
        from ._run import serve

        return serve
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
