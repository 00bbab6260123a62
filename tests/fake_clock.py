"""A fake ``Clock`` for retry, backoff and circuit-breaker tests: time moves only when code sleeps
on it (or the test advances it), so delays are asserted exactly and never waited out."""

from __future__ import annotations

import random
import threading

from tracer._clock import Clock


class FakeClock(Clock):
    """Monotonic time that starts at *start* and moves by each ``sleep`` (recorded in ``sleeps``).

    A sleep returns at once: True (interrupted) if its event is set, else after moving the time.
    Thread-safe: sender threads may sleep on it side by side (their sleeps then add up).
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._lock = threading.Lock()
        self.now = start
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float, interrupt: threading.Event) -> bool:
        if interrupt.is_set():
            return True
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds
        return interrupt.is_set()

    def advance(self, seconds: float) -> None:
        """Time passing while the code does something else (a request, a task)."""
        with self._lock:
            self.now += seconds


class HighestJitter(random.Random):
    """Full jitter that always draws its upper bound: the backoff is exactly ``base × 2^(n-1)``, capped."""

    def uniform(self, a: float, b: float) -> float:
        return b
