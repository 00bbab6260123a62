"""Time: wall-clock times for events, and the clock the delivery code waits on.

Spans read only ``time.perf_counter_ns()``; ``anchor_ns`` maps it to Unix epoch nanoseconds. A
single mapping keeps every event's start and end on one timeline (a child never appears to end
after its parent). ``resync()`` moves the anchor when the wall clock was stepped by more than a
second (NTP step, manual change); the delivery worker calls it once per batch.

``Clock`` is what retries, backoff, the circuit breaker and the sender pool read and sleep on:
``SYSTEM_CLOCK`` (the monotonic clock, real sleeps) unless another is passed at construction, so
tests can run them on a fake clock and assert exact delays without waiting them out.
"""

from __future__ import annotations

import threading
import time
from typing import Final

__all__ = ["SYSTEM_CLOCK", "Clock", "anchor_ns", "resync"]

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


class Clock:
    """Monotonic seconds and interruptible sleeps. This one is the system's; tests subclass it."""

    __slots__ = ()

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (only differences mean anything)."""
        return time.monotonic()

    def sleep(self, seconds: float, interrupt: threading.Event) -> bool:
        """Sleep *seconds*, ending early if *interrupt* is set; True when it was (at once if already set)."""
        return interrupt.wait(seconds)


SYSTEM_CLOCK: Final = Clock()
