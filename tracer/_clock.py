"""Wall-clock times for events, derived from the monotonic clock.

Spans read only ``time.perf_counter_ns()``; ``anchor_ns`` maps it to Unix epoch nanoseconds. A
single mapping keeps every event's start and end on one timeline (a child never appears to end
after its parent). ``resync()`` moves the anchor when the wall clock was stepped by more than a
second (NTP step, manual change); the delivery worker calls it once per batch.
"""

from __future__ import annotations

import time
from typing import Final

__all__ = ["anchor_ns", "resync"]

_STEP_NS: Final = 1_000_000_000

anchor_ns = time.time_ns() - time.perf_counter_ns()


def resync() -> bool:
    """Re-anchor if the wall clock moved by more than a second against the monotonic clock."""
    global anchor_ns
    current = time.time_ns() - time.perf_counter_ns()
    if abs(current - anchor_ns) > _STEP_NS:
        anchor_ns = current
        return True
    return False
