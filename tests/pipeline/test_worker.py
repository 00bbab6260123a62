"""One background thread per process, whatever the number of tracers."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import tracer
from tracer._worker import Worker
from tracer.exporters import Batch, InMemoryExporter

from ..fake_clock import FakeClock


def _workers() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "tracer-worker"]


def test_several_tracers_share_one_worker_thread() -> None:
    exporters = [InMemoryExporter() for _ in range(3)]
    tracers = [tracer.Tracer(exporter=exporter, project=f"p{i}") for i, exporter in enumerate(exporters)]
    for n in range(2000):
        for t in tracers:
            with t.span("work", inputs={"n": n}):
                pass
    assert len(_workers()) == 1
    for t, exporter in zip(tracers, exporters, strict=True):
        assert t.flush(10)
        assert sorted(event["inputs"]["n"] for event in exporter.events) == list(range(2000))
        assert {event["project"] for event in exporter.events} == {f"p{tracers.index(t)}"}
    # Shutting one down leaves the others served by the same thread.
    thread = _workers()[0]
    tracers[0].shutdown()
    with tracers[1].span("after"):
        pass
    assert tracers[1].flush(5)
    assert exporters[1].by_name("after")
    assert _workers() == [thread]
    for t in tracers[1:]:
        t.shutdown()


class _SlowExporter(InMemoryExporter):
    def export(self, batch: Batch) -> bool:
        time.sleep(0.05)
        return super().export(batch)


def test_a_backlogged_tracer_does_not_hold_back_another_tracers_age_based_send() -> None:
    slow, quick = _SlowExporter(), InMemoryExporter()
    busy = tracer.Tracer(exporter=slow, project="busy", max_queue_size=50_000, max_batch_size=16)
    idle = tracer.Tracer(exporter=quick, project="idle")
    for n in range(20_000):  # about 60 s of exports at 16 events per 50 ms: a long backlog
        with busy.span("bulk", inputs={"n": n}):
            pass
    started = time.monotonic()
    with idle.span("lonely"):
        pass
    while not quick.events and time.monotonic() - started < 10:
        time.sleep(0.01)
    # One turn of the busy queue is at most 8 passes of 4 batches: about 1.6 s of slow exports.
    assert quick.events, "the idle tracer's event waited behind the whole backlog"
    assert time.monotonic() - started < 5
    busy.shutdown(timeout=0.1)
    idle.shutdown()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
def test_worker_thread_exits_when_no_tracer_needs_it_and_a_forked_child_gets_its_own(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, threading, time
            import tracer
            from tracer.exporters import InMemoryExporter

            def workers():
                return [t for t in threading.enumerate() if t.name == "tracer-worker"]

            def wait_for(condition):
                deadline = time.monotonic() + 5
                while not condition() and time.monotonic() < deadline:
                    time.sleep(0.01)
                return condition()

            memory = InMemoryExporter()
            a, b = tracer.Tracer(exporter=memory, project="a"), tracer.Tracer(exporter=memory, project="b")
            with a.span("a1"), b.span("b1"):
                pass
            print("workers with two tracers:", len(workers()))
            a.shutdown()
            b.shutdown()
            print("exited when unused:", wait_for(lambda: not workers()))
            c = tracer.Tracer(exporter=memory, project="c")
            with c.span("c1"):
                pass
            print("back on demand:", len(workers()), c.flush(5))
            pid = os.fork()
            if pid == 0:
                with c.span("child"):
                    pass
                ok = c.flush(5)
                print("child workers:", len(workers()), ok, [e["event_name"] for e in memory.events][-1], flush=True)
                os._exit(0)
            os.waitpid(pid, 0)
            print("parent events:", sorted(e["event_name"] for e in memory.events))
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACER_", "HH_"))}
    env["TRACER_RAISE_INTERNAL_ERRORS"] = "1"
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "workers with two tracers: 1" in lines
    assert "exited when unused: True" in lines
    assert "back on demand: 1 True" in lines
    assert "child workers: 1 True child" in lines
    assert "parent events: ['a1', 'b1', 'c1']" in lines


def test_a_new_tracer_gets_its_fast_first_send_while_the_worker_sleeps_for_another() -> None:
    slow_memory, memory = InMemoryExporter(), InMemoryExporter()
    sleepy = tracer.Tracer(exporter=slow_memory, project="sleepy", first_flush_interval=30, flush_interval=30)
    with sleepy.span("first"):
        pass
    time.sleep(0.2)  # the worker is now asleep until the sleepy tracer's send, 30 s away
    quick = tracer.Tracer(exporter=memory, project="quick")  # first_flush_interval: 100 ms
    started = time.monotonic()
    with quick.span("hello"):
        pass
    while not memory.events and time.monotonic() - started < 5:
        time.sleep(0.01)
    assert memory.events, "the new tracer's first event waited for the other tracer's schedule"
    assert time.monotonic() - started < 2
    assert not slow_memory.events  # the sleepy tracer keeps its own schedule
    quick.shutdown()
    sleepy.shutdown()


def test_a_queue_past_half_its_bounds_wakes_the_worker_before_the_flush_interval() -> None:
    """Below half the bounds the worker leaves the app alone until the flush interval (60 s
    here); past it, it is woken at once."""
    memory = tracer.InMemoryExporter()
    t = tracer.Tracer(
        exporter=memory,
        max_batch_size=10,
        max_queue_size=100,
        flush_interval=60,
        first_flush_interval=60,
        spool=False,
    )
    try:
        for i in range(40):
            with t.span(f"e{i}"):
                pass
        time.sleep(0.3)
        assert memory.events == []  # 40 < 50: nothing may wake the worker yet
        for i in range(40, 60):
            with t.span(f"e{i}"):
                pass
        deadline = time.monotonic() + 10  # far below the 60 s interval: only the wake-up can send them
        while len(memory.events) < 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(memory.events) >= 50
    finally:
        t.shutdown(1.0)


class _Queue:
    """A worker client due at ``due`` (a time on the worker's clock), recording the times of its turns."""

    def __init__(self, due: float) -> None:
        self.due = due
        self.woken = False
        self.turns: list[float] = []

    def due_at(self) -> float:
        return self.due

    def wants_service(self, now: float) -> bool:
        return self.woken or now >= self.due

    def serve(self, now: float) -> bool:
        self.turns.append(now)
        self.woken = False
        return True


def test_the_worker_sleeps_until_the_first_queue_is_due_and_a_wake_up_ends_the_sleep() -> None:
    clock = FakeClock(start=1000.0)
    worker = Worker(clock=clock)
    soon, later = _Queue(due=1000.25), _Queue(due=1030.0)
    worker._turn([soon, later])
    assert clock.sleeps == [0.25]  # exactly until the earliest due time
    assert soon.turns == [1000.25] and later.turns == []  # only the queue that is due is served
    soon.due = 1001.25  # its next age-based send, one flush interval later
    worker._turn([soon, later])
    assert clock.sleeps == [0.25, 1.0] and soon.turns == [1000.25, 1001.25]
    later.woken = True  # a queue past half its bounds wakes the worker: no sleep at all
    worker.wake()
    worker._turn([soon, later])
    assert clock.sleeps == [0.25, 1.0] and later.turns == [1001.25]
    soon.due = 1000.0  # overdue: served at once, without sleeping
    worker._turn([soon, later])
    assert clock.sleeps == [0.25, 1.0] and soon.turns[-1] == 1001.25
