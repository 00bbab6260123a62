"""Helpers for testing code that you trace.

``with tracer.testing.capture() as events:`` records what the code inside traces, synchronously
(no background thread, no network), as wire-shape dicts. The pytest fixture ``tracer_events``
(registered automatically through this package's pytest plugin) does the same for a whole test.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ._default import get_default_tracer
from ._tracer import Tracer
from .exporters.memory import InMemoryExporter

__all__ = ["CapturedEvents", "capture"]


class CapturedEvents(list[dict[str, Any]]):
    """The captured events (a list of wire-shape dicts) with a few lookups for assertions."""

    exporter: InMemoryExporter

    def names(self) -> list[str]:
        """Event names in the order the events ended."""
        return [event["event_name"] for event in self]

    def by_name(self, event_name: str) -> dict[str, Any]:
        """The one event with this name (AssertionError if there are none or several)."""
        found = [event for event in self if event["event_name"] == event_name]
        assert len(found) == 1, f"expected one event named {event_name!r}, found {len(found)}: {self.names()}"
        return found[0]

    def children_of(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """Direct children of *event*, in the order they ended."""
        return [e for e in self if e["parent_id"] == event["event_id"]]

    @property
    def sessions(self) -> dict[str, dict[str, Any]]:
        return self.exporter.sessions

    @property
    def updates(self) -> list[dict[str, Any]]:
        return self.exporter.updates


@contextmanager
def capture(tracer: Tracer | None = None, **options: Any) -> Iterator[CapturedEvents]:
    """Record events synchronously into a list for the duration of the block.

    The tracer (default: the default tracer) is reconfigured with an in-memory exporter and
    ``batch=False`` plus *options*; its previous settings are restored afterwards.
    """
    target = tracer if tracer is not None else get_default_tracer()
    saved = target.config
    saved_exporters = target.exporters
    exporter = InMemoryExporter()
    events = CapturedEvents()
    events.exporter = exporter

    class _Sink(InMemoryExporter):
        def export(self, batch: Any) -> bool:
            decoded = batch.events()
            events.extend(decoded)
            return exporter.export(batch)

    keep = {name: getattr(saved, name) for name in ("project", "source", "session_name")}
    keep.update(options)
    target.configure(exporter=_Sink(), batch=False, propagate_to_threads=saved.propagate_to_threads, **keep)
    try:
        yield events
    finally:
        restore = {name: getattr(saved, name) for name in saved.__dataclass_fields__}
        target.configure(exporter=saved_exporters, **restore)
