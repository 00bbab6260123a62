"""A small pool of daemon threads that run an exporter's blocking requests side by side.

``SenderPool.run_all(tasks)`` runs the tasks on the pool's threads (at most ``size`` at once,
started in list order) and returns their results once all are done, or at once when
``interrupt()`` is called (the tasks still running then finish on their own; their results are not
awaited: ``None`` in their place). The calling thread (the delivery worker) only waits, so that
``interrupt()`` ends the wait even while a request hangs.

Side by side whatever the latency. Even when the server is near, a request waits while the server
decompresses, parses and checks its events (the bench's sink: about 2 µs of CPU per event, 1 ms per
512-event request), and meanwhile the GIL is free for the next request's compression and I/O.
``bench/throughput.py --variants tracer`` (a server at 0 ms), nine alternating pairs against the
code before on 2026-12-06: 85,673-109,270 events/s (median 103,598) with every request on the
threads against 84,883-98,657 (median 90,213) sending one at a time from the worker, higher in eight
of the nine pairs; at 20 and 100 ms (where requests already went side by side) 87,824 and 45,381
against 82,961 and 41,085 in one run each (with a prototype of this rule). OTLP/protobuf, limited by
the traced process's CPU, did not change (69,214-77,332 against 74,024-76,959, three pairs). The
first measurements (2026-12-05, an earlier build whose worker did not yet hand the GIL back to the
app while it encoded) had favoured one at a time at 0 ms, so that build sent one at a time until a
request was slow.

Why not ``concurrent.futures.ThreadPoolExecutor``: its threads are joined, and new work refused, by
``threading``'s own shutdown, which runs *before* ``atexit`` hooks, so the tracer's exit hook could
no longer send anything; and the tracer patches its ``submit`` to carry the caller's span. These
threads are daemons, started lazily from an empty context, re-created after ``fork()``.
"""

from __future__ import annotations

import os
import queue
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Final, Generic, TypeVar

from .._context import suppressed
from .._threads import start_thread

__all__ = ["SenderPool", "Senders"]

T = TypeVar("T")

# Threads per pool at most, whatever max_in_flight asks: the HTTP client keeps at most 100
# connections (httpx's default pool limit), so more threads would only wait for one; and one thread
# per batch of a large backlog (max_in_flight=100_000, 10-event batches: 5,000 threads, 280 MiB
# peak RSS in one run) is a cost the host must never pay.
_MAX_THREADS: Final = 100


class _Call(Generic[T]):
    """One ``run_all``: the tasks, the next one to start, their results, how many are left."""

    __slots__ = ("done", "errors", "next", "remaining", "results", "tasks")

    def __init__(self, tasks: Sequence[Callable[[], T]]) -> None:
        self.tasks = tasks
        self.next = 0
        self.remaining = len(tasks)
        self.results: list[T | None] = [None] * len(tasks)
        self.errors: list[BaseException] = []
        self.done = threading.Condition(threading.Lock())

    def take(self) -> int:
        """Index of the next task to start, or -1 when all have started."""
        with self.done:
            index = self.next
            if index >= len(self.tasks):
                return -1
            self.next = index + 1
            return index

    def finish(self, index: int, result: T | None, error: BaseException | None) -> None:
        with self.done:
            self.results[index] = result
            if error is not None:
                self.errors.append(error)
            self.remaining -= 1
            if not self.remaining:
                self.done.notify_all()


class SenderPool:
    """At most *size* threads (and never more than ``_MAX_THREADS``) named *name*-N; *initializer*
    runs once in each (e.g. to set a context flag)."""

    def __init__(self, size: int, name: str, initializer: Callable[[], None] | None = None) -> None:
        self.size = min(size, _MAX_THREADS)
        self._name = name
        self._initializer = initializer
        self._stop = threading.Event()
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
        call: _Call[T] = _Call(tasks)
        if not tasks or self._stop.is_set():
            return call.results
        with self._lock:
            if self._closed:
                return call.results
            self._calls.add(call)
        try:
            if not self._add_helpers(call, min(self.size, len(tasks))):
                return [task() for task in tasks]
            with call.done:
                while call.remaining and not self._stop.is_set():
                    call.done.wait()
                if not call.remaining and call.errors:
                    raise call.errors[0]
                return list(call.results)
        finally:
            with self._lock:
                self._calls.discard(call)

    def _add_helpers(self, call: _Call[Any], count: int) -> bool:
        """Let *count* threads work on *call* (started as needed).

        False when there is no thread to work on it: Python 3.12 refuses to start threads at
        interpreter shutdown (the exit drain), and the caller then runs the tasks itself.
        """
        with self._lock:
            while len(self._threads) < count:
                thread = threading.Thread(
                    target=self._serve, name=f"{self._name}-{len(self._threads) + 1}", daemon=True
                )
                if not start_thread(thread):  # at interpreter shutdown
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

    def __init__(self, name: str) -> None:
        self._name = name
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
                pool = self._pool = SenderPool(width, self._name, _suppress_in_thread)
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
