"""A small pool of daemon threads that run an exporter's blocking requests side by side.

``SenderPool.run_all(tasks)`` runs the tasks (at most ``size`` at once, started in list order) and
returns their results once all are done, or at once when ``interrupt()`` is called (the tasks still
running then finish on their own; their results are not awaited: ``None`` in their place).

Side by side only when it pays. A nearby server answers a 512-event request in about 3 ms, and
there the CPU, not the wait, is the limit: eight threads contending for the GIL with the app
delivered 79,849 events/s against 93,401 one at a time (``bench/throughput.py --latency-ms 0``, same
run), while 20 ms away they took 63,074 against 18,241; and even handing the tasks to one other
thread cost about 7% at 0 ms (81,300 against 87,300 events/s, mean of three alternating runs). So:

- the first call runs its tasks one at a time on one pool thread, and all at once (up to ``size``)
  as soon as one has taken longer than ``slow_task`` seconds;
- after a call whose fastest task took longer than that, the next one starts all at once;
- after a call whose tasks were fast, the next one runs them on the calling thread itself, one
  after the other, until one is slow: the rest of that call then goes to the threads, all at once.
  (A request hanging there is bounded by its own timeout, not by ``interrupt()``.)

Why not ``concurrent.futures.ThreadPoolExecutor``: its threads are joined, and new work refused, by
``threading``'s own shutdown, which runs *before* ``atexit`` hooks, so the tracer's exit hook could
no longer send anything; and the tracer patches its ``submit`` to carry the caller's span. These
threads are daemons, started lazily from an empty context, re-created after ``fork()``.
"""

from __future__ import annotations

import contextvars
import math
import os
import queue
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Final, Generic, TypeVar

from .._clock import SYSTEM_CLOCK, Clock
from .._context import suppressed

__all__ = ["SenderPool", "Senders"]

T = TypeVar("T")

_UNKNOWN: Final = 0  # no call finished yet
_FAST: Final = 1  # every task of the last call finished within slow_task
_SLOW: Final = 2  # even the fastest did not


class _Call(Generic[T]):
    """One ``run_all``: the tasks, the next one to start, their results, what is left."""

    __slots__ = ("clock", "done", "errors", "fastest", "next", "remaining", "results", "started", "tasks")

    def __init__(self, tasks: Sequence[Callable[[], T]], clock: Clock) -> None:
        self.tasks = tasks
        self.clock = clock
        self.next = 0
        self.remaining = len(tasks)
        self.results: list[T | None] = [None] * len(tasks)
        self.errors: list[BaseException] = []
        self.done = threading.Condition(threading.Lock())
        self.started: dict[int, float] = {}  # running tasks: when each started (monotonic)
        self.fastest = math.inf  # the shortest time a task of this call took

    def take(self) -> int:
        """Index of the next task to start, or -1 when all have started."""
        with self.done:
            index = self.next
            if index >= len(self.tasks):
                return -1
            self.next = index + 1
            self.started[index] = self.clock.monotonic()
            return index

    def finish(self, index: int, result: T | None, error: BaseException | None) -> None:
        with self.done:
            began = self.started.pop(index, None)
            if began is not None:
                self.fastest = min(self.fastest, self.clock.monotonic() - began)
            self.results[index] = result
            if error is not None:
                self.errors.append(error)
            self.remaining -= 1
            if not self.remaining:
                self.done.notify_all()

    def waiting_longest(self) -> float:
        """Seconds the longest-running task has been running (0 when none is)."""
        with self.done:
            return self.clock.monotonic() - min(self.started.values()) if self.started else 0.0


class SenderPool:
    """At most *size* threads named *name*-N; *initializer* runs once in each (e.g. to set a context flag).

    A task is slow when it takes more than *slow_task* seconds on *clock*.
    """

    def __init__(
        self,
        size: int,
        name: str,
        initializer: Callable[[], None] | None = None,
        slow_task: float = 0.01,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.size = size
        self.slow_task = slow_task
        self.clock = clock
        self._name = name
        self._initializer = initializer
        self._stop = threading.Event()
        self._pace = _UNKNOWN  # how fast the last call's tasks were: where and how wide to run the next
        self._reset()
        if hasattr(os, "register_at_fork"):
            reinit = weakref.WeakMethod(self._reset)
            os.register_at_fork(after_in_child=lambda: _call_weak(reinit))

    def _reset(self) -> None:
        # Also the after-fork hook: the parent's threads do not exist in a forked child, and a lock
        # held by one of them at fork time would stay held forever.
        self._lock = threading.Lock()
        self._inbox: queue.SimpleQueue[_Call[Any] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._calls: set[_Call[Any]] = set()
        self._closed = False

    def run_all(self, tasks: Sequence[Callable[[], T]]) -> list[T | None]:
        """Run *tasks* and wait for them (or for ``interrupt()``). A task's exception is re-raised here."""
        if self._pace != _FAST or self._stop.is_set():
            return self._on_threads(tasks, wide=self._pace == _SLOW)
        results: list[T | None] = []
        for index, task in enumerate(tasks):
            began = self.clock.monotonic()
            results.append(task())
            if self.clock.monotonic() - began > self.slow_task:
                self._pace = _SLOW  # the server is far (or slow) now: the rest side by side
                return results + self._on_threads(tasks[index + 1 :], wide=True)
        return results

    def _on_threads(self, tasks: Sequence[Callable[[], T]], wide: bool) -> list[T | None]:
        """Run *tasks* on the pool's threads: all at once if *wide*, else one at a time until one is slow."""
        call: _Call[T] = _Call(tasks, self.clock)
        if not tasks or self._stop.is_set():
            return call.results
        full = min(self.size, len(tasks))
        width = full if wide else 1
        with self._lock:
            if self._closed:
                return call.results
            self._calls.add(call)
        try:
            if not self._add_helpers(call, width, width):
                return [task() for task in tasks]
            while True:
                with call.done:
                    if not call.remaining or self._stop.is_set():
                        break
                    call.done.wait(self.slow_task if width < full else None)
                    widen = width < full and call.next < len(tasks) and call.remaining > 0
                if widen and call.waiting_longest() > self.slow_task:
                    # A task is waiting on the server: the others may as well wait alongside.
                    self._add_helpers(call, full - width, full)
                    width = full
            with call.done:
                if not call.remaining:
                    self._pace = _SLOW if call.fastest > self.slow_task else _FAST
                    if call.errors:
                        raise call.errors[0]
                return list(call.results)
        finally:
            with self._lock:
                self._calls.discard(call)

    def _add_helpers(self, call: _Call[Any], count: int, width: int) -> bool:
        """Let *count* more threads work on *call*, for *width* in all (threads are started as needed).

        False when there is no thread to work on it: Python 3.12 refuses to start threads at
        interpreter shutdown (the exit drain), and the caller then runs the tasks itself.
        """
        with self._lock:
            while len(self._threads) < width:
                thread = threading.Thread(
                    target=self._serve, name=f"{self._name}-{len(self._threads) + 1}", daemon=True
                )
                try:
                    # An empty context: a sender must not inherit (and keep alive) the caller's span.
                    contextvars.Context().run(thread.start)
                except RuntimeError:  # "can't create new thread at interpreter shutdown"
                    break
                self._threads.append(thread)
            if not self._threads:
                return False
        for _ in range(count):
            self._inbox.put(call)
        return True

    def interrupt(self) -> None:
        """Make every ``run_all`` return now, and every later one return at once (no task run)."""
        self._stop.set()
        with self._lock:
            calls = list(self._calls)
        for call in calls:
            with call.done:
                call.done.notify_all()

    def close(self) -> None:
        """Interrupt, and let the threads exit once their current task is done."""
        self.interrupt()
        with self._lock:
            self._closed = True
            threads, self._threads = self._threads, []
        for _ in threads:
            self._inbox.put(None)

    def _serve(self) -> None:
        inbox = self._inbox  # the after-fork reset replaces it: a stale thread keeps the old one
        if self._initializer is not None:
            self._initializer()
        while True:
            call = inbox.get()
            if call is None:
                return
            while not self._stop.is_set():
                index = call.take()
                if index < 0:
                    break
                try:
                    result = call.tasks[index]()
                except BaseException as exc:  # handed to the caller, which decides
                    call.finish(index, None, exc)
                else:
                    call.finish(index, result, None)
            else:
                # Interrupted: the tasks not started are finished as "no result" so nobody waits for them.
                while (index := call.take()) >= 0:
                    call.finish(index, None, None)


def _call_weak(method: weakref.WeakMethod[Callable[[], None]]) -> None:
    bound = method()
    if bound is not None:
        bound()


class Senders:
    """An exporter's requests in flight: ``run(tasks, width)`` runs them here, one by one, with a
    *width* of 1, else on a ``SenderPool`` of *width* threads, created on first use (the calling
    thread only waits then, so that ``interrupt()`` ends the wait even while a request hangs).

    The sender threads never trace what they do (``tracer._context.suppressed``): they only send
    the exporter's own requests.
    """

    def __init__(self, name: str, clock: Clock = SYSTEM_CLOCK) -> None:
        self._name = name
        self._clock = clock
        self._pool: SenderPool | None = None
        self._lock = threading.Lock()
        self._interrupted = False

    def run(self, tasks: Sequence[Callable[[], T]], width: int) -> list[T | None]:
        """The tasks' results, in order (None for one not run: interrupted)."""
        if not tasks:
            return []
        if width == 1:
            return [task() for task in tasks]
        with self._lock:
            pool = self._pool
            if pool is None:
                pool = self._pool = SenderPool(width, self._name, _suppress_in_thread, clock=self._clock)
                if self._interrupted:
                    pool.interrupt()
        return pool.run_all(tasks)

    def interrupt(self) -> None:
        """Make the current ``run`` return soon, and later ones at once."""
        with self._lock:
            self._interrupted = True
            pool = self._pool
        if pool is not None:
            pool.interrupt()

    def close(self) -> None:
        with self._lock:
            self._interrupted = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()


def _suppress_in_thread() -> None:
    """Sender threads only send the exporter's requests: never trace them."""
    suppressed.set(True)
