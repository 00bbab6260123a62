"""``InMemoryExporter``: keeps every exported event, for tests and notebooks."""

from __future__ import annotations

import threading
from typing import Any

from .._export import Batch, Exporter

__all__ = ["InMemoryExporter"]


class InMemoryExporter(Exporter):
    """Collects events as wire-shape dicts in ``.events`` (plus ``.sessions`` and ``.updates``)."""

    name = "memory"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[dict[str, Any]] = []
        self.sessions: dict[str, dict[str, Any]] = {}
        self.updates: list[dict[str, Any]] = []

    def export(self, batch: Batch) -> bool:
        events = batch.events()
        with self._lock:
            self.events.extend(events)
            self.sessions.update(batch.sessions)
            self.updates.extend(batch.updates)
        return True

    def clear(self) -> None:
        """Forget everything collected so far."""
        with self._lock:
            self.events.clear()
            self.sessions.clear()
            self.updates.clear()

    def by_name(self, event_name: str) -> list[dict[str, Any]]:
        """Events with this ``event_name``, in export order."""
        with self._lock:
            return [event for event in self.events if event["event_name"] == event_name]
