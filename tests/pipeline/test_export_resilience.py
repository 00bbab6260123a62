"""HoneyHiveExporter against a real local server (tests/collector.py): bad events isolated, partial
successes completed, several requests in flight, what may be offered again (``retry_events``)."""

from __future__ import annotations

import functools
import math
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import tracer
from tracer import Batch, Tracer
from tracer.exporters import Exporter, ExportResult, HoneyHiveExporter
from tracer.exporters._senders import SenderPool

from ..collector import Collector
from ..exporters import test_honeyhive_exporter as _exporter_tests
from ..exporters.test_honeyhive_exporter import (
    FAST,
    ONE_BATCH,
    dead_url,
    make_batch,
    make_event,
    sent_events,
    tracer_records,
)

direct = _exporter_tests.direct  # the fixture: a HoneyHiveExporter aimed at the collector, closed afterwards


def bisection_bound(count: int) -> int:
    """Requests to isolate one bad event among *count* by halving: two per level."""
    return 2 * math.ceil(math.log2(count))


class Poisoning(HoneyHiveExporter):
    """Spoils the event at *position* of every batch (as if a bad value had slipped past capture)."""

    def __init__(self, *args: Any, spoil: Callable[[dict[str, Any]], None], position: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spoil = spoil
        self.position = position
        self.spoiled: list[str] = []

    def export_batches(self, batches: list[Batch]) -> list[ExportResult | bool | None]:
        for batch in batches:
            if len(batch.encoded) > self.position:
                event = orjson.loads(batch.encoded[self.position])
                self.spoil(event)
                batch.encoded[self.position] = orjson.dumps(event)
                self.spoiled.append(event["event_id"])
        return super().export_batches(batches)


@pytest.fixture
def tracers() -> Iterator[list[Tracer]]:
    made: list[Tracer] = []
    yield made
    for made_tracer in made:
        made_tracer.shutdown(5.0)


def traced_batch(t: Tracer, count: int) -> list[str]:
    """*count* events of one session, ended now; their ids."""
    ids = []
    with t.session("poisoned"):
        for index in range(count):
            with t.span(f"e{index}", "tool", inputs={"i": index}) as span:
                ids.append(span.event_id)
    return ids


# -- one bad event --------------------------------------------------------------------------------


def non_object_inputs(event: dict[str, Any]) -> None:
    event["inputs"] = "a lone string where an object belongs"


def token_count_beyond_int64(event: dict[str, Any]) -> None:
    event["metadata"]["total_tokens"] = 10**19  # valid JSON, more than the server's int64 columns hold


@pytest.mark.parametrize("position", [0, 49])
def test_a_batch_with_one_event_refused_by_name_loses_only_that_event(
    collector: Collector, caplog: pytest.LogCaptureFixture, tracers: list[Tracer], position: int
) -> None:
    exporter = Poisoning("k", collector.url, spoil=non_object_inputs, position=position, **FAST)
    t = Tracer(project="test", source="test", exporter=exporter, max_batch_size=50, **ONE_BATCH)
    tracers.append(t)
    for round_ in range(2):  # twice: still a single log line
        ids = traced_batch(t, 50)
        assert not t.flush(5.0)
        bad = exporter.spoiled[round_]
        assert ids[position] == bad
        assert sorted(collector.event_ids()[-49:]) == sorted(set(ids) - {bad})
    stats = t.stats()
    assert (stats["sent"], stats["dropped"]["rejected"], stats["dropped_total"]) == (98, 2, 2)
    assert f"events[{position}].inputs must be an object" in stats["last_error"]
    # The 400 names the event: no bisection, just the batch again without it.
    assert [(r.status, len(sent_events(r))) for r in collector.requests] == [(400, 50), (200, 49)] * 2
    assert Counter(collector.event_ids()).most_common(1)[0][1] == 1
    lines = [r.getMessage() for r in tracer_records(caplog)]
    assert len(lines) == 1 and "refused 1 event(s)" in lines[0] and "must be an object" in lines[0]


def test_a_batch_failing_with_500_because_of_one_event_is_bisected(
    collector: Collector, caplog: pytest.LogCaptureFixture, tracers: list[Tracer]
) -> None:
    exporter = Poisoning("k", collector.url, spoil=token_count_beyond_int64, position=17, max_attempts=2, **FAST)
    t = Tracer(project="test", source="test", exporter=exporter, max_batch_size=50, **ONE_BATCH)
    tracers.append(t)
    ids = traced_batch(t, 50)
    assert not t.flush(5.0)
    [bad] = exporter.spoiled
    assert sorted(collector.event_ids()) == sorted(set(ids) - {bad})  # each good event once
    stats = t.stats()
    assert (stats["sent"], stats["dropped"]["rejected"], stats["dropped_total"]) == (49, 1, 1)
    assert "500" in stats["last_error"] and "Internal server error" in stats["last_error"]
    posts = collector.requests_to("POST", "/events/batch")
    assert [r.status for r in posts[:2]] == [500, 500]  # the usual retries come first
    assert len(posts) <= 2 + bisection_bound(50) + 2
    assert len([r for r in tracer_records(caplog) if "refused 1 event(s)" in r.getMessage()]) == 1


def test_two_bad_events_of_both_kinds_cost_only_themselves(collector: Collector, direct: Any) -> None:
    batch = make_batch(50)
    named = orjson.loads(batch.encoded[10])
    non_object_inputs(named)
    batch.encoded[10] = orjson.dumps(named)
    huge = orjson.loads(batch.encoded[33])
    token_count_beyond_int64(huge)
    batch.encoded[33] = orjson.dumps(huge)
    exporter = direct(max_attempts=2)
    result = exporter.export(batch)
    assert (result.delivered, result.failed, result.reason, result.retry_events) == (48, 2, "rejected", ())
    received = Counter(collector.event_ids())
    assert len(received) == 48 and set(received.values()) == {1}
    assert not {named["event_id"], huge["event_id"]} & set(received)
    assert len(collector.requests) <= 2 + bisection_bound(50) + 3


def test_a_server_failing_every_request_is_not_bisected_to_the_end(collector: Collector, direct: Any) -> None:
    collector.fail(500, times=1000)
    exporter = direct(max_attempts=2)
    result = exporter.export(make_batch(512))
    # Two attempts, then halves and quarters: none succeeds, so no event is to blame.
    assert len(collector.requests) == 2 + 4
    assert (result.failed, result.reason, len(result.retry_events)) == (512, "export_failed", 512)


def test_with_no_time_left_to_isolate_the_batch_keeps_the_answer_it_got(collector: Collector, direct: Any) -> None:
    collector.fail(500, times=10)
    collector.latency = 0.3
    exporter = direct(max_in_flight=1, max_attempts=1)
    stop = threading.Timer(0.1, exporter.interrupt)  # shutdown runs out of time while the 500 is on its way
    stop.start()
    result = exporter.export(make_batch(4))
    stop.join()
    assert (result.failed, result.reason, result.retry_events) == (4, "export_failed", (0, 1, 2, 3))
    assert len(collector.requests) == 1 and result.failed_requests == 1  # no request counted that was not sent
    assert result.last_error is not None and "HTTP 500" in result.last_error


# -- partial success ------------------------------------------------------------------------------


def test_partial_success_resends_the_rest_alone_once_accepted(collector: Collector, direct: Any) -> None:
    collector.partial(fail=5)  # 500 with the ids of the first 45 events and 5 errors
    batch = make_batch(50)
    ids = [orjson.loads(raw)["event_id"] for raw in batch.encoded]
    result = direct().export(batch)
    assert (result.delivered, result.failed) == (50, 0)
    bodies = [[event["event_id"] for event in sent_events(r)] for r in collector.requests]
    assert bodies == [ids, ids[45:]]  # the 5 not acknowledged, alone
    received = Counter(collector.event_ids())
    assert sorted(received) == sorted(ids) and set(received.values()) == {1}


def test_partial_success_refused_every_time_counts_only_those(
    collector: Collector, direct: Any, caplog: pytest.LogCaptureFixture
) -> None:
    collector.partial(fail=5, times=100)
    exporter = direct(max_attempts=3)
    batch = make_batch(50)
    ids = [orjson.loads(raw)["event_id"] for raw in batch.encoded]
    result = exporter.export(batch)
    assert (result.delivered, result.failed, result.reason, result.retry_events) == (45, 5, "rejected", ())
    bodies = [[event["event_id"] for event in sent_events(r)] for r in collector.requests]
    assert bodies == [ids, ids[45:], ids[45:]]  # max_attempts sends of the 5 in all
    sent = Counter(event_id for body in bodies for event_id in body)
    assert all(sent[event_id] == 1 for event_id in ids[:45])  # nothing acknowledged is sent twice
    assert sorted(collector.event_ids()) == sorted(ids[:45])
    assert result.last_error is not None
    assert "did not create 5 event(s)" in result.last_error and "missing inputs" in result.last_error
    assert len([r for r in tracer_records(caplog) if "did not create" in r.getMessage()]) == 1


# -- several requests in flight -------------------------------------------------------------------


def test_batches_are_sent_side_by_side_to_a_slow_server(collector: Collector, direct: Any) -> None:
    collector.latency = 0.2
    exporter = direct(max_in_flight=8)
    batches = [make_batch(5) for _ in range(10)]
    results = exporter.export_batches(batches)
    assert all(isinstance(r, ExportResult) and r.ok and r.delivered == 5 for r in results)
    assert collector.max_concurrent >= 4  # 8 in flight at most; one at a time without concurrency
    assert collector.max_concurrent <= 8
    received = Counter(collector.event_ids())
    assert len(received) == 50 and set(received.values()) == {1}


def test_pipeline_sends_many_sessions_at_once_and_updates_after_their_events(
    collector: Collector, tracers: list[Tracer]
) -> None:
    collector.latency = 0.1
    exporter = HoneyHiveExporter("k", collector.url, max_in_flight=8, **FAST)
    t = Tracer(project="test", source="test", exporter=exporter, max_batch_size=10, **ONE_BATCH)
    tracers.append(t)
    ids: list[str] = []
    late: list[str] = []
    sessions: list[str] = []
    for number in range(10):
        with t.session(f"conversation-{number}") as session:
            sessions.append(session.session_id)
            for index in range(9):
                with t.span(f"s{number}-{index}", "tool") as span:
                    ids.append(span.event_id)
            span.update(metadata={"late": number})  # an update of an event already ended
            late.append(span.event_id)
            t.enrich_session(metadata={"turn": number})
    assert t.flush(10.0)
    assert collector.max_concurrent > 1
    received = Counter(collector.event_ids())
    assert sorted(received) == sorted(ids) and set(received.values()) == {1}
    stats = t.stats()
    assert (stats["sent"], stats["dropped_total"], stats["updates_sent"]) == (90, 0, 20)
    # Every update reached the server after the request that created its event (or session) was answered.
    created_at: dict[str, float] = {}
    for request in collector.requests_to("POST", "/events/batch"):
        assert request.answered is not None
        for event in request.body["events"]:
            created_at.setdefault(event["event_id"], request.answered)
            created_at.setdefault(event["session_id"], request.answered)
    for request in collector.requests:
        if request.method == "PUT":
            assert request.time >= created_at[request.body["event_id"]]
    assert {u["event_id"] for u in collector.updates} >= set(late)


def test_the_pipeline_hands_an_exporter_as_many_batches_as_it_has_in_flight(tracers: list[Tracer]) -> None:
    class Recording(Exporter):
        max_in_flight = 6

        def __init__(self) -> None:
            self.calls: list[int] = []
            self.first = threading.Event()
            self.release = threading.Event()

        def export(self, batch: Batch) -> bool:
            raise AssertionError("export_batches is used")

        def export_batches(self, batches: list[Batch]) -> list[ExportResult | bool | None]:
            self.calls.append(len(batches))
            if len(self.calls) == 1:  # hold the first call so that the rest queues up
                self.first.set()
                self.release.wait(5.0)
            return [True] * len(batches)

    exporter = Recording()
    # The first 10 events go after 10 ms; the others only when the test flushes.
    t = Tracer(project="test", exporter=exporter, max_batch_size=10, flush_interval=30, first_flush_interval=0.01)
    tracers.append(t)
    for index in range(10):
        with t.span(f"first-{index}"):
            pass
    assert exporter.first.wait(5.0)
    for index in range(100):
        with t.span(f"more-{index}"):
            pass
    exporter.release.set()
    assert t.flush(5.0)
    # The first call had what was queued after 10 ms; then 110 minus that, 6 batches at a time.
    assert exporter.calls[0] == 1 and exporter.calls[1] == 6 and max(exporter.calls) == 6
    assert t.stats()["sent"] == 110


def test_request_counters_stay_right_with_requests_in_flight(collector: Collector, direct: Any) -> None:
    collector.fail(503, times=10)  # taken by whichever requests come first
    exporter = direct(max_in_flight=8, max_attempts=20)
    results = exporter.export_batches([make_batch(3) for _ in range(10)])
    assert all(isinstance(r, ExportResult) and r.ok for r in results)
    # Reported per batch (the pipeline adds them up), whichever batch's requests met the 503s.
    assert sum(r.retried_requests for r in results if isinstance(r, ExportResult)) == 10
    assert sum(r.failed_requests for r in results if isinstance(r, ExportResult)) == 0
    assert len(collector.requests) == 20


# -- what may be offered again --------------------------------------------------------------------


def test_retry_events_lists_what_an_unreachable_backend_did_not_take(direct: Any) -> None:
    result = direct(url=dead_url(), export_timeout=0.5).export(make_batch(3))
    assert (result.failed, result.reason, result.retry_events) == (3, "export_failed", (0, 1, 2))


def test_retry_events_after_5xx_point_into_the_batch_and_never_at_refusals(collector: Collector, direct: Any) -> None:
    # Two sessions interleaved; one at a time, so that the first session's request takes both 503s.
    first, second = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"
    encoded = [make_event(sid, f"e{index}") for index, sid in enumerate([first, second] * 3)]
    batch = Batch(encoded, [first, second] * 3, {first: {"session_id": first}, second: {"session_id": second}})
    collector.fail(503, times=2)
    result = direct(max_attempts=2, max_in_flight=1).export(batch)
    assert (result.delivered, result.failed, result.reason, result.retry_events) == (3, 3, "export_failed", (0, 2, 4))

    collector.fail(401, times=2)  # refused: not to be offered again
    result = direct().export(make_batch(4))
    assert (result.failed, result.reason, result.retry_events) == (4, "rejected", ())


def test_retry_updates_lists_updates_lost_to_5xx_but_not_refused_ones(collector: Collector, direct: Any) -> None:
    updates: list[dict[str, Any]] = [{"event_id": "a", "metadata": {"x": 1}}, {"event_id": "b", "metadata": {"x": 2}}]
    collector.fail(503, times=2, method="PUT")
    result = direct(max_attempts=2, max_in_flight=1).export(Batch([], [], {}, updates))
    assert (result.updates_failed, result.retry_updates) == (1, (0,))
    collector.fail(400, method="PUT")
    result = direct(max_in_flight=1).export(Batch([], [], {}, updates))
    assert (result.updates_failed, result.retry_updates) == (1, ())


# -- interrupts, settings -------------------------------------------------------------------------


def test_interrupt_ends_the_wait_for_requests_in_flight(collector: Collector, direct: Any) -> None:
    collector.hang(times=20, seconds=30.0)
    exporter = direct(timeout=20.0, export_timeout=60.0, max_in_flight=4)
    results: list[Any] = []
    sender = threading.Thread(target=lambda: results.extend(exporter.export_batches([make_batch(2)] * 4)))
    sender.start()
    deadline = time.monotonic() + 5.0
    while len(collector.requests) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(collector.requests) == 4  # all four hang at once
    started = time.monotonic()
    exporter.interrupt()
    sender.join(2.0)
    assert not sender.is_alive()
    assert time.monotonic() - started < 1.0
    assert [(r.failed, r.reason, r.retry_events) for r in results] == [(2, "export_failed", (0, 1))] * 4


def test_shutdown_with_a_hanging_backend_lets_the_worker_go(collector: Collector, tracers: list[Tracer]) -> None:
    collector.hang(times=50, seconds=30.0)
    exporter = HoneyHiveExporter("k", collector.url, timeout=20.0, export_timeout=60.0, max_in_flight=4)
    # Without a spool: what is not delivered is counted lost (with one it is spooled, see test_spool.py).
    t = Tracer(project="test", source="test", exporter=exporter, spool=False, **ONE_BATCH)
    for index in range(5):
        with t.span("stuck", inputs={"i": index}):
            pass
    assert t.flush(0.3) is False  # the request hangs
    started = time.monotonic()
    t.shutdown(timeout=0.3)
    assert time.monotonic() - started < 2.0
    assert t._processor._detached.is_set()  # type: ignore[attr-defined]  # the worker's wait was ended
    dropped = t.stats()["dropped"]
    assert dropped["export_failed"] + dropped["shutdown_timeout"] == 5


def test_max_in_flight_is_validated_and_read_from_the_environment(
    collector: Collector, monkeypatch: pytest.MonkeyPatch, tracers: list[Tracer]
) -> None:
    for bad in (0, -1, 2.5, True, "4"):
        with pytest.raises(tracer.ConfigError, match="max_in_flight"):
            HoneyHiveExporter("k", collector.url, max_in_flight=bad)
    with pytest.raises(tracer.ConfigError, match="max_in_flight"):
        Tracer(api_key="k", server_url=collector.url, max_in_flight=0)
    monkeypatch.setenv("TRACER_MAX_IN_FLIGHT", "3")
    t = Tracer(api_key="k", server_url=collector.url)
    tracers.append(t)
    assert isinstance(t.exporters[0], HoneyHiveExporter) and t.exporters[0].max_in_flight == 3


def test_sender_pool_runs_every_call_side_by_side_on_its_threads_at_most_size_at_once() -> None:
    pool = SenderPool(4, "test-sender")
    here = threading.current_thread().name
    # Four tasks that can only all return if they run at once (each waits for the other three).
    together = threading.Barrier(4)
    running = 0
    most = 0
    count_lock = threading.Lock()

    def side_by_side() -> str:
        together.wait(timeout=10)
        return threading.current_thread().name

    def counted(index: int) -> int:
        nonlocal running, most
        with count_lock:
            running += 1
            most = max(most, running)
        time.sleep(0.02)
        with count_lock:
            running -= 1
        return index

    try:
        for _ in range(3):  # the first call too, and after fast ones: never on the calling thread
            names = pool.run_all([side_by_side] * 4)
            assert here not in names and all(name.startswith("test-sender-") for name in names)
        assert pool.run_all([functools.partial(counted, i) for i in range(12)]) == list(range(12))  # in order
        assert most <= 4  # never more than size at once (all four at once: the barrier above)
    finally:
        pool.close()


def test_a_huge_max_in_flight_starts_at_most_100_sender_threads(collector: Collector, direct: Any) -> None:
    exporter = direct(max_in_flight=100_000)
    results = exporter.export_batches([make_batch(2) for _ in range(150)])
    assert all(isinstance(r, ExportResult) and r.ok and r.delivered == 2 for r in results)
    # Each pool numbers its threads from 1: other tests' pools may still be winding down.
    numbers = [int(t.name.rsplit("-", 1)[1]) for t in threading.enumerate() if t.name.startswith("tracer-sender-")]
    assert numbers and max(numbers) <= 100
    assert len(set(collector.event_ids())) == 300


def test_sender_pool_hands_a_task_error_to_the_caller_and_ends_the_wait_on_interrupt() -> None:
    pool = SenderPool(2, "test-sender")
    release = threading.Event()

    def fails() -> int:
        raise ValueError("boom")

    def hangs() -> int:
        release.wait(timeout=10)
        return 1

    try:
        with pytest.raises(ValueError, match="boom"):
            pool.run_all([lambda: 1, fails])
        stop = threading.Timer(0.1, pool.interrupt)
        stop.start()
        began = time.monotonic()
        assert pool.run_all([hangs, hangs, hangs]) == [None, None, None]  # nothing awaited after interrupt()
        assert time.monotonic() - began < 5
        assert pool.run_all([lambda: 1]) == [None]  # later calls return at once, nothing run
    finally:
        release.set()
        pool.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
def test_a_forked_child_sends_side_by_side_with_its_own_sender_threads(collector: Collector, tmp_path: Any) -> None:
    collector.latency = 0.05  # slow enough for the parent's requests to go side by side on its threads
    script = tmp_path / "fork_app.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, sys, threading
            sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
            from tests.exporters.test_honeyhive_exporter import make_batch
            from tracer.exporters import HoneyHiveExporter

            exporter = HoneyHiveExporter("k", {collector.url!r}, max_in_flight=4, base_delay=0.01)
            assert all(r.ok for r in exporter.export_batches([make_batch(3) for _ in range(4)]))
            senders = [t for t in threading.enumerate() if t.name.startswith("tracer-sender")]
            assert len(senders) == 4, senders
            pid = os.fork()
            if pid == 0:  # the parent's sender threads do not exist here
                ok = all(r.ok for r in exporter.export_batches([make_batch(2) for _ in range(4)]))
                os._exit(0 if ok else 3)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
            assert all(r.ok for r in exporter.export_batches([make_batch(1) for _ in range(4)]))
            exporter.shutdown()
            print("OK")
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACER_", "HH_"))}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0 and done.stdout.strip() == "OK", done.stderr
    received = Counter(collector.event_ids())
    assert len(received) == 4 * 3 + 4 * 2 + 4 * 1 and set(received.values()) == {1}
    assert collector.max_concurrent >= 2
