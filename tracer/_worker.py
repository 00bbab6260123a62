"""The process's one background thread: it serves the queues of every batching tracer.

However many ``Tracer`` objects a program makes, encoding, compression and HTTP happen on a
single daemon thread named ``tracer-worker``. It starts when a queue first needs it, exits when
no queue is left, and is started afresh in a forked child (threads do not survive ``fork()``).

A queue (a ``Client``: ``BatchProcessor``) asks for service with ``wake()`` and says when its
oldest events must go at the latest with ``due_at()``; the worker calls ``serve()`` on every
queue that asked or is due. One queue's turn is bounded (``serve`` drains a few passes and asks
again if more is left), so a busy tracer cannot starve another's age-based flush for long; one
exporter stuck in retries does delay the others, the price of a single thread.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Protocol

from ._clock import SYSTEM_CLOCK, Clock
from ._errors import report_internal_error
from ._threads import start_thread

__all__ = ["Client", "Worker", "worker"]


class Client(Protocol):
    def due_at(self) -> float:
        """Monotonic time by which this queue wants service even if nothing wakes it."""
        ...

    def wants_service(self, now: float) -> bool:
        """True if woken since its last turn, or due at *now*."""
        ...

    def serve(self, now: float) -> bool:
        """One turn; returns False when this queue is finished (stopped and empty)."""
        ...


class Worker:
    """Serves its clients' queues; *clock* is what it sleeps on until the next one is due."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        # Also the after-fork hook: the parent's thread does not exist in the child, and its lock
        # may have been held at fork time. Clients re-attach on their next event.
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._clients: list[Client] = []
        self._thread: threading.Thread | None = None
        # Python 3.12 refuses to start threads once the interpreter is shutting down (from atexit
        # handlers): the exit drain then runs the worker's turns on the exiting thread (serve_here).
        self.refused = False
        self._here: threading.Thread | None = None

    def attach(self, client: Client) -> None:
        """Serve *client* from now on (starts the thread if needed)."""
        with self._lock:
            if client not in self._clients:
                self._clients.append(client)
            if self._thread is not None:
                self._wake.set()  # it may be asleep until another queue's (later) due time
                return
            thread = self._thread = threading.Thread(target=self._run, name="tracer-worker", daemon=True)
        if not start_thread(thread):  # at interpreter shutdown (Python 3.12)
            with self._lock:
                if self._thread is thread:
                    self._thread = None
            self.refused = True

    def serve_here(self, done: Callable[[], bool], deadline: float) -> None:
        """Run the worker's turns on the calling thread until *done()* or *deadline* (monotonic):
        for the exit drain when no thread could be started (see ``refused``)."""
        self._here = threading.current_thread()
        try:
            while not done() and time.monotonic() < deadline:
                with self._lock:
                    clients = list(self._clients)
                if not clients:
                    return
                now = time.monotonic()
                for client in clients:
                    self._serve(client, now)
                if not done():
                    time.sleep(0.01)  # a backend that is down: its probes are paced by the spool
        finally:
            self._here = None

    def wake(self) -> None:
        self._wake.set()

    def is_current(self) -> bool:
        """True on the worker thread itself (where waiting for the worker would deadlock)."""
        current = threading.current_thread()
        return current is self._thread or current is self._here

    def thread(self) -> threading.Thread | None:
        return self._thread

    def _run(self) -> None:
        me = threading.current_thread()
        while True:
            with self._lock:
                if self._thread is not me:  # replaced (a forked child's reset): this one is stale
                    return
                clients = list(self._clients)
                if not clients:
                    self._thread = None
                    return
            try:
                self._turn(clients)
            except Exception as exc:  # the worker must survive anything
                report_internal_error("the delivery worker", exc)

    def _turn(self, clients: list[Client]) -> None:
        wait = min(client.due_at() for client in clients) - self._clock.monotonic()
        if wait > 0:
            self._clock.sleep(wait, self._wake)
        # Cleared before looking at the clients: a wake() from now on is seen at the next wait.
        self._wake.clear()
        now = self._clock.monotonic()
        for client in clients:
            if client.wants_service(now):
                self._serve(client, now)

    def _serve(self, client: Client, now: float) -> None:
        """One turn of *client*; forgotten once it is finished (stopped and empty)."""
        try:
            alive = client.serve(now)
        except Exception as exc:
            report_internal_error("the delivery worker", exc)
            alive = True
        if not alive:
            with self._lock:
                if client in self._clients:
                    self._clients.remove(client)


worker = Worker()
"""The process's worker (one per process; a forked child gets its own)."""
