"""Delivery: a bounded in-memory queue drained by the library's one background thread.

The calling thread only appends to a deque under a short lock. The worker wakes when a batch is
full or old enough (100 ms for the first batches, then ``flush_interval``), encodes it and hands it
to every exporter. When the queue is full the *oldest* event is dropped and counted: recent
events are the ones a user is looking at, and the app never waits.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Final

from . import _clock as clock
from ._encode import Encoder
from ._errors import logger, report_internal_error, warn_once
from ._record import SIZE, Item, SessionRegistry
from ._span import Session
from ._worker import worker
from .exporters._base import Batch, Exporter, ExportResult, normalize_result

__all__ = ["BatchProcessor", "Processor", "Stats", "SyncProcessor", "suppressed"]

# Set on the worker thread so that auto-instrumentation never traces the exporter's own calls.
suppressed: contextvars.ContextVar[bool] = contextvars.ContextVar("tracer.suppressed", default=False)

_SHUTDOWN_GRACE: Final = 1.0  # seconds an interrupted export gets to return at shutdown
_BATCHES_PER_PASS: Final = 4  # batches taken from the queue, encoded, then sent, per worker pass
_PASSES_PER_TURN: Final = 8  # passes on one queue before the worker turns to other tracers' queues
_FAST_BATCHES: Final = 10  # batches sent at first_flush_interval before settling on flush_interval
# Sessions remembered beyond twice the queue's length before the registry is rebuilt from the queue.
_SESSIONS_SLACK: Final = 1024

DROP_REASONS: Final = (
    "queue_full",
    "shutdown_timeout",
    "after_shutdown",
    "rejected",
    "too_large",
    "export_failed",
    "masked",
)


class Stats:
    """Counters of what happened to events; read with ``Tracer.stats()``."""

    sent: int
    updates_sent: int
    dropped: dict[str, int]
    retried_requests: int
    failed_requests: int
    last_error: str | None

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start counting from zero (also: a forked child counts only its own events)."""
        self.lock = threading.Lock()
        self.sent = 0
        self.updates_sent = 0
        self.dropped = dict.fromkeys(DROP_REASONS, 0)
        self.retried_requests = 0
        self.failed_requests = 0
        self.last_error = None

    def drop(self, reason: str, count: int = 1) -> None:
        with self.lock:
            self.dropped[reason] = self.dropped.get(reason, 0) + count

    def lost(self) -> int:
        return sum(self.dropped.values())


class Processor:
    """Receives ended spans and updates; decides when and how they reach the exporters."""

    def __init__(self, exporters: list[Exporter], encoder: Encoder, stats: Stats) -> None:
        self.exporters = exporters
        self.encoder = encoder
        self.stats = stats
        self._lost_seen = 0
        self._enqueued = 0  # events and updates ever accepted
        self._sessions = SessionRegistry()  # the sessions of queued records
        for exporter in exporters:  # exporters that retry report their requests in stats()
            bind = getattr(exporter, "bind_stats", None)
            if callable(bind):
                bind(stats)

    def on_end(self, item: Item, session: Session) -> None:
        """Accept an ended event or an update (of *session*) for delivery; never blocks or raises."""
        raise NotImplementedError

    def flush(self, timeout: float) -> bool:
        raise NotImplementedError

    def shutdown(self, timeout: float, keep: list[Exporter] | None = None) -> None:
        """Drain within *timeout* and stop; exporters not in *keep* are shut down."""
        raise NotImplementedError

    def _close_exporters(self, keep: list[Exporter] | None) -> None:
        kept = {id(exporter) for exporter in keep or ()}
        for exporter in self.exporters:
            if id(exporter) not in kept:
                _shutdown_exporter(exporter)

    def queue_size(self) -> tuple[int, int]:
        """Events and bytes waiting in memory now."""
        return (0, 0)

    def accepted(self) -> int:
        """Events and updates ever accepted for delivery."""
        return self._enqueued

    def _deliver(self, items: list[Item]) -> None:
        """Encode *items* and hand them to every exporter; count the outcome. Never raises."""
        batch = self._encode(items)
        if batch is not None:
            self._export_all([batch])

    def _encode(self, items: list[Item]) -> Batch | None:
        """The batch for *items*, or None if nothing is left to send (failures are counted)."""
        masked_before = self.encoder.dropped_by_mask
        try:
            batch = self.encoder.encode(items, self._sessions)
        except Exception as exc:
            report_internal_error("encoding a batch", exc)
            self.stats.drop("export_failed", len(items))
            return None
        masked = self.encoder.dropped_by_mask - masked_before
        if masked:
            self.stats.drop("masked", masked)
        return batch if batch.encoded or batch.updates else None

    def _export_all(self, batches: list[Batch]) -> None:
        """Hand *batches* to every exporter at once (an exporter may send them side by side); count
        each batch's outcome as the exporter that lost the most of it reports."""
        if not batches:
            return
        stats = self.stats
        token = suppressed.set(True)
        try:
            results = [self._export_one(exporter, batches) for exporter in self.exporters]
            if not results:  # no exporter configured: nothing to deliver to, nothing lost
                return
            for index, batch in enumerate(batches):
                outcomes = [per_exporter[index] for per_exporter in results]
                worst = max(outcomes, key=lambda result: result.failed)  # the first of the worst
                updates_failed = max(result.updates_failed for result in outcomes)  # likewise for updates
                with stats.lock:
                    stats.sent += len(batch.encoded) - min(worst.failed, len(batch.encoded))
                    stats.updates_sent += len(batch.updates) - min(updates_failed, len(batch.updates))
                if worst.failed:
                    stats.drop(worst.reason if worst.reason in DROP_REASONS else "export_failed", worst.failed)
        finally:
            suppressed.reset(token)

    def _export_one(self, exporter: Exporter, batches: list[Batch]) -> list[ExportResult]:
        try:
            send = getattr(exporter, "export_batches", None)
            results = send(batches) if callable(send) else [exporter.export(batch) for batch in batches]
            if len(results) != len(batches):
                raise ValueError(f"export_batches returned {len(results)} results for {len(batches)} batches")
            return [
                normalize_result(result, len(batch), len(batch.updates))
                for result, batch in zip(results, batches, strict=True)
            ]
        except Exception as exc:
            warn_once(
                f"export:{type(exporter).__name__}", "tracer: exporter %s failed: %r", type(exporter).__name__, exc
            )
            self.stats.last_error = f"{type(exporter).__name__}: {exc!r}"
            return [
                ExportResult(delivered=0, failed=len(batch), reason="export_failed", updates_failed=len(batch.updates))
                for batch in batches
            ]

    def _flush_result(self) -> bool:
        """True if nothing was lost since the previous flush."""
        lost = self.stats.lost()
        ok = lost == self._lost_seen
        self._lost_seen = lost
        return ok


class SyncProcessor(Processor):
    """Exports each event on the thread that ends it (``batch=False``: serverless, tests)."""

    def __init__(self, exporters: list[Exporter], encoder: Encoder, stats: Stats) -> None:
        super().__init__(exporters, encoder, stats)
        self._lock = threading.Lock()
        self._closed = False

    def on_end(self, item: Item, session: Session) -> None:
        if self._closed:
            self.stats.drop("after_shutdown")
            return
        with self._lock:
            self._enqueued += 1
            self._sessions.note(session)
            self._deliver([item])
            self._sessions.prune()

    def flush(self, timeout: float) -> bool:
        return self._flush_result()

    def shutdown(self, timeout: float, keep: list[Exporter] | None = None) -> None:
        self._closed = True
        self._close_exporters(keep)


def _shutdown_exporter(exporter: Exporter) -> None:
    try:
        exporter.shutdown()
    except Exception as exc:
        warn_once(f"shutdown:{type(exporter).__name__}", "tracer: exporter %s failed to shut down: %r", exporter, exc)


class BatchProcessor(Processor):
    """Bounded queue, served by the process's one worker thread (``_worker``), from the first event."""

    def __init__(
        self,
        exporters: list[Exporter],
        encoder: Encoder,
        stats: Stats,
        *,
        max_queue_size: int,
        max_queue_bytes: int,
        max_batch_size: int,
        max_batch_bytes: int,
        flush_interval: float,
        first_flush_interval: float,
    ) -> None:
        super().__init__(exporters, encoder, stats)
        self._max_queue_size = max_queue_size
        self._max_queue_bytes = max_queue_bytes
        self._max_batch_size = max_batch_size
        self._max_batch_bytes = max_batch_bytes
        self._flush_interval = flush_interval
        self._first_flush_interval = first_flush_interval
        self._init_state()
        if hasattr(os, "register_at_fork"):
            reinit = weakref.WeakMethod(self._after_fork_in_child)
            os.register_at_fork(after_in_child=lambda: _call_weak(reinit))

    def _init_state(self) -> None:
        self._queue: collections.deque[Item] = collections.deque()
        self._sessions = SessionRegistry()
        self._queue_bytes = 0
        self._lock = threading.Lock()
        self._woken = False  # service asked for since the worker's last turn on this queue
        self._due = 0.0  # monotonic time of the next age-based send (set when attached)
        self._attached = False  # served by the worker (from the first event to the end of shutdown)
        self._detached = threading.Event()  # set when the worker lets go of this queue after shutdown
        self._wake_at = self._max_batch_size  # queue length that wakes the worker
        self._wake_bytes = self._max_batch_bytes
        self._progress = threading.Condition(threading.Lock())
        self._enqueued = 0  # items ever appended
        self._popped = 0  # items ever taken from the head (sent, in flight or dropped)
        self._inflight_first = 0  # sequence number of the first item the worker holds (0: none)
        self._flush_target = 0
        self._batches_sent = 0
        self._closed = False
        self._stopping = False
        self._abandon = False  # shutdown ran out of time: drop what is left instead of sending it

    def _after_fork_in_child(self) -> None:
        # The child gets a fresh, empty pipeline: the parent's queued events are the parent's to send
        # (sending them here too would duplicate them), and its worker thread does not exist here.
        was_closed = self._closed
        self._init_state()
        self._closed = was_closed
        self.stats.reset()
        self._lost_seen = 0
        self.encoder.clear_caches()

    # -- calling thread -------------------------------------------------------------------------

    def on_end(self, item: Item, session: Session) -> None:
        # Runs on the app's thread for every event: one short critical section, no allocation.
        with self._lock:
            if self._closed:
                overflow = -1
            else:
                queue = self._queue
                queue.append(item)
                self._sessions.note(session)
                self._enqueued += 1
                self._queue_bytes += item[SIZE]
                overflow = len(queue) >= self._wake_at or self._queue_bytes >= self._wake_bytes
                if overflow:
                    overflow = self._make_room()
        if overflow:
            self._after_overflow(overflow)
        elif not self._attached:
            self._attach()

    def _make_room(self) -> int:
        """Called under the lock once the queue reaches a batch or a bound: drop the oldest items
        over the bounds, and arm the wake-up. Returns the number dropped, or 0 to wake the worker."""
        queue = self._queue
        dropped = 0
        while len(queue) > self._max_queue_size or (self._queue_bytes > self._max_queue_bytes and len(queue) > 1):
            self._queue_bytes -= queue.popleft()[SIZE]
            self._popped += 1
            dropped += 1
        # Wake the worker once per batch, not per event (Event.set() takes a lock); the worker
        # re-arms these thresholds each time it takes the queue.
        self._wake_at = self._max_queue_size + 1
        self._wake_bytes = self._max_queue_bytes + 1
        return dropped

    def _after_overflow(self, dropped: int) -> None:
        if dropped < 0:
            self.stats.drop("after_shutdown")
            return
        if dropped:
            self.stats.drop("queue_full", dropped)
            warn_once(
                "queue_full",
                "tracer: event queue full (max_queue_size/max_queue_bytes); dropping the oldest events. "
                "See tracer.stats(); raise the bounds for bursty workloads.",
            )
        if not self._attached:
            self._attach()
        self._request_service()

    def _attach(self) -> None:
        with self._lock:
            if self._attached or self._closed:
                return
            self._attached = True
            self._due = time.monotonic() + self._first_flush_interval
        worker.attach(self)

    def _request_service(self) -> None:
        self._woken = True  # before the wake-up: the worker clears its event, then reads this
        worker.wake()

    # -- worker thread (the _worker.Client protocol) ----------------------------------------------

    def due_at(self) -> float:
        return 0.0 if self._woken else self._due

    def wants_service(self, now: float) -> bool:
        return self._woken or now >= self._due

    def serve(self, now: float) -> bool:
        """One turn of the worker: send what is queued; False once stopped and empty."""
        self._woken = False
        interval = self._first_flush_interval if self._batches_sent < _FAST_BATCHES else self._flush_interval
        self._due = now + interval
        with self._lock:
            self._wake_at = self._max_batch_size
            self._wake_bytes = self._max_batch_bytes
        try:
            if self._drain():
                self._woken = True  # more is queued: come back right after the other queues' turns
        except Exception as exc:  # the worker must survive anything
            report_internal_error("the delivery worker", exc)
        if self._stopping:
            with self._lock:
                if not self._queue:
                    self._attached = False
                    self._detached.set()
                    return False
        return True

    def _drain(self) -> bool:
        """Send what is queued (woken by a full batch, an age timeout or a flush); True if more is left.

        Up to a few batches are taken and encoded *before* their I/O: export calls release the
        GIL, and an app thread that gets it back keeps it for a whole switch interval (5 ms), so
        a worker that sent after every single batch would fall behind a busy app. Taking only a
        few keeps what is encoded but not yet sent small, next to the queue's own bounds. At most
        ``_PASSES_PER_TURN`` passes: other tracers' queues get their turn in between.
        """
        clock.resync()
        # Enough batches per pass for every exporter to fill its requests in flight.
        per_pass = max(_BATCHES_PER_PASS, *(getattr(exporter, "max_in_flight", 1) for exporter in self.exporters))
        max_items = per_pass * self._max_batch_size
        max_bytes = per_pass * self._max_batch_bytes
        for _ in range(_PASSES_PER_TURN):
            if self._abandon:
                self._drop_leftovers()
                return False
            with self._lock:
                queue = self._queue
                # Everything taken earlier is encoded by now: forget the sessions no queued record needs.
                if not queue:
                    self._sessions.prune()
                    return False
                if len(self._sessions) > 2 * len(queue) + _SESSIONS_SLACK:
                    self._sessions.prune(list(queue))
                self._inflight_first = self._popped + 1
                items: list[Item] = []
                taken_bytes = 0
                while queue and len(items) < max_items and (not items or taken_bytes + queue[0][SIZE] <= max_bytes):
                    item = queue.popleft()
                    items.append(item)
                    taken_bytes += item[SIZE]
                self._popped += len(items)
                self._queue_bytes -= taken_bytes
            try:
                batches = []
                for chunk in self._chunks(items, taken_bytes):
                    batch = self._encode(chunk)
                    if batch is not None:
                        batches.append(batch)
                del items  # the spans are encoded now: let them go before the (slow) I/O
                self._export_all(batches)
            finally:
                self._batches_sent += 1
                with self._progress:
                    self._inflight_first = 0
                    self._progress.notify_all()
        return bool(self._queue)

    def _chunks(self, items: list[Item], total_bytes: int) -> list[list[Item]]:
        """Split *items* (of *total_bytes* in all) into batches within max_batch_size and max_batch_bytes."""
        count = self._max_batch_size
        if total_bytes <= self._max_batch_bytes:  # the usual case: only the count limit can apply
            return [items[start : start + count] for start in range(0, len(items), count)]
        chunks: list[list[Item]] = []
        current: list[Item] = []
        current_bytes = 0
        for item in items:
            size = item[SIZE]
            if current and (len(current) >= self._max_batch_size or current_bytes + size > self._max_batch_bytes):
                chunks.append(current)
                current, current_bytes = [], 0
            current.append(item)
            current_bytes += size
        if current:
            chunks.append(current)
        return chunks

    # -- flush / shutdown -----------------------------------------------------------------------

    def _reached(self, target: int) -> bool:
        inflight = self._inflight_first
        return self._popped >= target and (inflight == 0 or inflight > target)

    def flush(self, timeout: float) -> bool:
        """Block until everything ended before this call is delivered (or *timeout* passes)."""
        with self._lock:
            target = self._enqueued
            if target > self._flush_target:
                self._flush_target = target
        if not self._attached and target > self._popped:
            self._attach()
        if worker.is_current():  # an exporter calling flush(): the worker cannot wait on itself
            return self._flush_result()
        deadline = time.monotonic() + max(timeout, 0.0)
        self._request_service()
        with self._progress:
            while not self._reached(target):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                # Short waits: progress is also made by drops, which do not notify.
                self._progress.wait(min(remaining, 0.05))
            reached = self._reached(target)
        if not reached:
            self.stats.last_error = self.stats.last_error or f"flush timed out after {timeout:g}s"
        return self._flush_result() and reached

    async def aflush(self, timeout: float) -> bool:
        """``flush()`` for event loops: waits in a worker thread, never blocking the loop."""
        return await asyncio.get_running_loop().run_in_executor(None, self.flush, timeout)

    def shutdown(self, timeout: float, keep: list[Exporter] | None = None) -> None:
        """Drain (within *timeout*), stop the worker, shut exporters down; later events are dropped.

        If the time runs out (backend down or slow), what is still queued is dropped and counted
        as ``shutdown_timeout``, and exporters are interrupted so that their retry waits end now.
        """
        delivered = self.flush(timeout) if not self._closed else True
        with self._lock:
            self._closed = True
            self._stopping = True
            attached = self._attached
            if not delivered:
                self._abandon = True
        if not delivered:
            for exporter in self.exporters:
                exporter.interrupt()
        finished = not attached
        if attached and not worker.is_current():
            self._request_service()
            finished = self._detached.wait(_SHUTDOWN_GRACE if not delivered else max(timeout, _SHUTDOWN_GRACE))
        self._drop_leftovers()
        if finished:
            self._close_exporters(keep)
        else:
            logger.warning("tracer: delivery did not finish within %.1fs at shutdown", timeout)

    def _drop_leftovers(self) -> None:
        with self._lock:
            leftover = len(self._queue)
            self._queue.clear()
            self._queue_bytes = 0
            self._popped += leftover
        if leftover:
            self.stats.drop("shutdown_timeout", leftover)

    def queue_size(self) -> tuple[int, int]:
        with self._lock:
            return len(self._queue), self._queue_bytes


def _call_weak(method: weakref.WeakMethod[Callable[[], None]]) -> None:
    bound = method()
    if bound is not None:
        bound()
