"""pytest plugin (registered as an entry point): the ``tracer_events`` fixture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .testing import CapturedEvents, capture


@pytest.fixture
def tracer_events() -> Iterator[CapturedEvents]:
    """Everything the test traces with the default tracer, as wire-shape dicts (synchronous)."""
    with capture() as events:
        yield events
