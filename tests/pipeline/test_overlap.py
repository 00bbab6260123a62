"""A burst's export runs on a helper thread while the worker encodes the next pass (``_overlap``)."""

from __future__ import annotations

import itertools
import threading
import time

import tracer
from tracer._overlap import Helper, on_helper
from tracer.exporters import Batch, InMemoryExporter


class _Recording(InMemoryExporter):
    """Keeps each export call's thread, its events' names in order, and when it ran."""

    def __init__(self, pause: float = 0.0) -> None:
        super().__init__()
        self.pause = pause
        self.calls: list[tuple[str, list[str], float, float]] = []
        self._lock = threading.Lock()

    def export(self, batch: Batch) -> bool:
        began = time.monotonic()
        time.sleep(self.pause)
        names = [event["event_name"] for event in batch.events()]
        with self._lock:
            self.calls.append((threading.current_thread().name, names, began, time.monotonic()))
        return super().export(batch)


def _burst(t: tracer.Tracer, count: int) -> None:
    for n in range(count):
        with t.span(f"e{n:05d}", inputs={"n": n}):
            pass


def test_a_burst_of_several_passes_arrives_whole_and_in_order_with_exports_on_a_helper() -> None:
    exporter = _Recording(pause=0.002)
    # Small batches and a long flush interval: the burst waits in the queue and the flush drains it
    # in passes of 4 batches of 50, several to a turn.
    t = tracer.Tracer(exporter=exporter, project="p", max_batch_size=50, flush_interval=60, spool=False)
    _burst(t, 3000)
    assert t.flush(30)
    names = [name for _, batch_names, _, _ in exporter.calls for name in batch_names]
    assert names == [f"e{n:05d}" for n in range(3000)]  # each exactly once, in the order they ended
    threads = {thread for thread, _, _, _ in exporter.calls}
    assert "tracer-export" in threads  # passes handed to a helper...
    assert "tracer-worker" in threads  # ...and the last pass of a turn sent by the worker itself
    # One export at a time: a pass's export starts after the one before has ended.
    spans = sorted((began, ended) for _, _, began, ended in exporter.calls)
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans))
    stats = t.stats()
    assert stats["sent"] == 3000 and not any(stats["dropped"].values())
    t.shutdown()


def test_flush_waits_for_a_pass_still_exporting_on_a_helper() -> None:
    exporter = _Recording(pause=0.03)
    t = tracer.Tracer(exporter=exporter, project="p", max_batch_size=50, flush_interval=60, spool=False)
    _burst(t, 1200)
    assert t.flush(60)
    # Nothing is left for the background: every event is in the exporter when flush() returns.
    assert len(exporter.events) == 1200
    assert any(thread == "tracer-export" for thread, _, _, _ in exporter.calls)
    t.shutdown()


class _Flushing(InMemoryExporter):
    """An exporter that flushes its tracer from inside export (it must not wait on itself)."""

    def __init__(self) -> None:
        super().__init__()
        self.tracer: tracer.Tracer | None = None
        self.waits: list[tuple[str, float]] = []

    def export(self, batch: Batch) -> bool:
        assert self.tracer is not None
        began = time.monotonic()
        self.tracer.flush(5)
        self.waits.append((threading.current_thread().name, time.monotonic() - began))
        return super().export(batch)


def test_an_exporter_flushing_from_a_helper_does_not_wait_on_itself() -> None:
    exporter = _Flushing()
    t = tracer.Tracer(exporter=exporter, project="p", max_batch_size=50, flush_interval=60, spool=False)
    exporter.tracer = t
    _burst(t, 1000)
    began = time.monotonic()
    assert t.flush(30)
    assert time.monotonic() - began < 5  # not one 5 s flush timeout per export
    assert any(thread == "tracer-export" for thread, _ in exporter.waits)
    assert max(wait for _, wait in exporter.waits) < 1
    assert len(exporter.events) == 1000
    t.shutdown()


def test_a_helper_runs_one_call_in_an_empty_context_and_hands_back_its_error() -> None:
    seen: list[bool] = []

    def fails() -> None:
        seen.append(on_helper())
        raise ValueError("boom")

    helper = Helper.start(fails, "test-helper")
    assert helper is not None
    error = helper.wait()
    assert isinstance(error, ValueError) and str(error) == "boom"
    assert seen == [True]
    assert not on_helper()  # only the helper's own thread
    assert helper.wait() is None  # handed back once
