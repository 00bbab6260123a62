"""HoneyHiveExporter against a real local HTTP server (tests/collector.py), through the real pipeline."""

from __future__ import annotations

import gzip
import logging
import random
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import httpx
import orjson
import pytest

import tracer
from tracer import Batch, Tracer
from tracer._context import suppressed
from tracer._http import HttpClient, RetryPolicy, parse_retry_after
from tracer.exporters import HoneyHiveExporter

from .. import collector as _collector_module
from ..collector import Collector
from ..fake_clock import FakeClock, HighestJitter

collector = _collector_module.collector  # the fixture (harmless if conftest.py provides it too)

FAST = {"base_delay": 0.01, "max_delay": 0.05, "timeout": 2.0, "export_timeout": 3.0, "breaker_cooldown": 0.2}
# Only flush() (or a full batch) sends: one batch per flush, whatever the timing.
ONE_BATCH = {"flush_interval": 30.0, "first_flush_interval": 30.0}
# Without a spool: what the exporter could not deliver is counted lost (with one, it is spooled).
NO_SPOOL = {**ONE_BATCH, "spool": False}

Make = Callable[..., tuple[Tracer, HoneyHiveExporter]]


@pytest.fixture
def make(collector: Collector) -> Iterator[Make]:
    """Build a Tracer whose only exporter is a fast-retrying HoneyHiveExporter aimed at the collector."""
    made: list[Tracer] = []

    def factory(api_key: str = "k", tracer_options: dict[str, Any] | None = None, **options: Any) -> Any:
        exporter = HoneyHiveExporter(api_key, collector.url, **{**FAST, **options})
        tracer_ = Tracer(
            project="test", source="test", session_name="main", exporter=exporter, **(tracer_options or {})
        )
        made.append(tracer_)
        return tracer_, exporter

    yield factory
    collector.release()
    for tracer_ in made:
        tracer_.shutdown(5.0)


@pytest.fixture
def direct(collector: Collector) -> Iterator[Callable[..., HoneyHiveExporter]]:
    """HoneyHiveExporter used without a tracer (its export() called by the test); closed afterwards."""
    made: list[HoneyHiveExporter] = []

    def factory(url: str | None = None, **options: Any) -> HoneyHiveExporter:
        exporter = HoneyHiveExporter(options.pop("api_key", "k"), url or collector.url, **{**FAST, **options})
        made.append(exporter)
        return exporter

    yield factory
    collector.release()
    for exporter in made:
        exporter.shutdown()


def workload(t: Tracer) -> dict[str, dict[str, str]]:
    """A nested trace in its own session plus one event in the default session; the ids the app saw."""
    seen: dict[str, dict[str, str]] = {}

    def note(span: Any) -> None:
        seen[span.event_name] = {
            "event_id": span.event_id,
            "parent_id": span.parent_id,
            "session_id": span.session_id,
        }

    with t.session("conversation"), t.span("agent", "chain", inputs={"question": "hi"}) as agent:
        with t.span("llm", "model", inputs={"prompt": "hi"}) as llm:
            llm.update(outputs={"content": "hello"}, metadata={"total_tokens": 3})
            note(llm)
        with t.span("search", "tool") as search:
            note(search)
        note(agent)
    with t.span("standalone", "tool") as standalone:
        note(standalone)
    return seen


def assert_delivered_once(collector: Collector, seen: dict[str, dict[str, str]]) -> None:
    counts = Counter(collector.event_ids())
    assert sorted(counts) == sorted(info["event_id"] for info in seen.values())
    assert set(counts.values()) == {1}, f"duplicates: {counts}"
    for name, info in seen.items():
        event = collector.by_name(name)
        for key, value in info.items():
            assert event[key] == value, (name, key)
    agent = collector.by_name("agent")
    assert sorted(agent["children_ids"]) == sorted([seen["llm"]["event_id"], seen["search"]["event_id"]])
    assert seen["agent"]["parent_id"] == seen["agent"]["session_id"]
    assert seen["llm"]["parent_id"] == seen["agent"]["event_id"]
    assert collector.by_name("llm")["outputs"] == {"content": "hello"}
    assert collector.sessions[seen["agent"]["session_id"]]["session_name"] == "conversation"
    assert collector.invalid == []


def make_event(session_id: str, name: str, **fields: Any) -> bytes:
    now = int(time.time() * 1000)
    event: dict[str, Any] = {
        "project": "test",
        "source": "test",
        "event_name": name,
        "event_type": "tool",
        "event_id": str(uuid.uuid4()),
        "session_id": session_id,
        "parent_id": session_id,
        "children_ids": [],
        "config": {},
        "inputs": {},
        "outputs": {},
        "error": None,
        "start_time": now,
        "end_time": now,
        "duration": 0.5,
        "metadata": {},
        "feedback": {},
        "metrics": {},
        "user_properties": {},
    }
    event.update(fields)
    return orjson.dumps(event)


def make_batch(count: int, session_id: str | None = None) -> Batch:
    sid = session_id or str(uuid.uuid4())
    encoded = [make_event(sid, f"e{index}") for index in range(count)]
    return Batch(encoded, [sid] * count, {sid: {"session_id": sid, "session_name": "direct", "source": "test"}})


def sent_events(request: Any) -> list[dict[str, Any]]:
    """The events of a ``POST /events/batch`` as sent (also when a fault answered before reading it)."""
    raw = request.raw
    body = gzip.decompress(raw) if request.headers.get("content-encoding") == "gzip" else raw
    events: list[dict[str, Any]] = orjson.loads(body)["events"]
    return events


def dead_url() -> str:
    """A local port nothing listens on (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def tracer_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "tracer"]


# -- the happy path -------------------------------------------------------------------------------


@pytest.mark.parametrize("use_gzip", [True, False], ids=["gzip", "plain"])
def test_events_arrive_once_per_session_with_headers(collector: Collector, make: Make, use_gzip: bool) -> None:
    t, _ = make(gzip=use_gzip, tracer_options=ONE_BATCH)
    seen = workload(t)
    assert t.flush(5.0)
    assert_delivered_once(collector, seen)

    posts = collector.requests_to("POST", "/events/batch")
    assert len(posts) == 2  # one per session, both in the same batch
    for request in posts:
        headers = request.headers
        assert headers["authorization"] == "Bearer k"
        assert headers["content-type"] == "application/json"
        assert headers["user-agent"] == f"tracer-python/{tracer.__version__}"
        if use_gzip:
            assert headers["content-encoding"] == "gzip"
            assert request.raw[:2] == b"\x1f\x8b"
            assert orjson.loads(gzip.decompress(request.raw)) == request.body
        else:
            assert "content-encoding" not in headers
            assert orjson.loads(request.raw) == request.body
        body = request.body
        assert body["is_single_session"] is True
        assert {event["session_id"] for event in body["events"]} == {body["session_properties"]["session_id"]}
    stats = t.stats()
    assert stats["sent"] == 4
    assert stats["dropped_total"] == 0
    assert stats["retried_requests"] == 0
    assert stats["failed_requests"] == 0


def test_late_updates_are_sent_as_put_after_the_events(collector: Collector, make: Make) -> None:
    t, _ = make(tracer_options=ONE_BATCH)
    with t.span("step", "tool") as span:
        pass
    span.update(outputs=["a", "b"], metadata={"late": True})
    assert t.flush(5.0)
    assert [(r.method, r.path) for r in collector.requests] == [("POST", "/events/batch"), ("PUT", "/events")]
    [update] = collector.updates
    assert update["event_id"] == span.event_id
    assert "inputs" not in update
    assert isinstance(update["outputs"], dict)
    assert update["metadata"]["late"] is True
    assert collector.invalid == []
    assert t.stats()["updates_sent"] == 1


def test_a_refused_update_is_dropped_not_counted_as_sent(collector: Collector, make: Make) -> None:
    t, _ = make(tracer_options=ONE_BATCH)
    with t.span("step", "tool") as span:
        pass
    assert t.flush(5.0)
    collector.fail(400, method="PUT")  # a client error: not retried
    span.update(metadata={"late": True})
    assert not t.flush(5.0)  # a loss since the last flush
    stats = t.stats()
    assert (stats["updates_sent"], stats["dropped"].get("rejected")) == (0, 1)
    span.update(metadata={"later": True})
    assert t.flush(5.0)
    assert t.stats()["updates_sent"] == 1


def test_put_bodies_never_carry_inputs_and_outputs_is_an_object(collector: Collector, direct: Any) -> None:
    exporter = direct()
    updates: list[dict[str, Any]] = [
        {"event_id": "e1", "inputs": {"q": 1}, "outputs": [1, 2], "metadata": {"k": "v"}},
        {"event_id": "e2", "outputs": "text"},
    ]
    assert exporter.export(Batch([], [], {}, updates)).ok
    assert collector.invalid == []
    # Updates of different events may be in flight at once: their order is not kept.
    assert sorted(collector.updates, key=lambda update: update["event_id"]) == [
        {"event_id": "e1", "outputs": {"value": [1, 2]}, "metadata": {"k": "v", "inputs": {"q": 1}}},
        {"event_id": "e2", "outputs": {"value": "text"}},
    ]


def test_exporter_requests_are_suppressed_and_not_traced(collector: Collector, make: Make) -> None:
    flags: list[bool] = []

    class Spy(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            flags.append(suppressed.get())
            return super().handle_request(request)

    t, exporter = make(transport=Spy())
    seen = workload(t)
    assert t.flush(5.0)
    assert_delivered_once(collector, seen)  # nothing but the app's own events
    assert flags and all(flags)
    flags.clear()
    assert exporter.export(make_batch(1)).ok  # even when called outside the pipeline
    assert flags == [True]


# -- faults the exporter rides out ----------------------------------------------------------------


def _each_retryable_status(c: Collector) -> None:
    for status in (408, 502, 503, 504):
        c.fail(status)


FAULTS: dict[str, Callable[[Collector], None]] = {
    "500 then success": lambda c: c.fail(500),
    "408 502 503 504": _each_retryable_status,
    "429 with Retry-After": lambda c: c.fail(429, retry_after="0.05"),
    "connection reset": lambda c: c.reset(2),
    "slow answer": lambda c: c.slow(0.3),
    "413 split": lambda c: setattr(c, "max_events_per_request", 1),
    "hang, then connection dropped": lambda c: c.hang(seconds=0.2),
}


@pytest.mark.parametrize("inject", FAULTS.values(), ids=FAULTS.keys())
def test_every_event_arrives_exactly_once_through_faults(
    collector: Collector, make: Make, inject: Callable[[Collector], None]
) -> None:
    inject(collector)
    t, _ = make(tracer_options=ONE_BATCH)
    seen = workload(t)
    assert t.flush(5.0), t.stats()
    assert_delivered_once(collector, seen)
    stats = t.stats()
    assert stats["sent"] == 4
    assert stats["dropped_total"] == 0
    assert stats["failed_requests"] <= len(collector.requests_to("POST", "/events/batch"))


def test_retries_are_counted(collector: Collector, make: Make) -> None:
    collector.fail(503, times=2)
    t, _ = make(tracer_options=ONE_BATCH)
    with t.span("one", "tool"):
        pass
    assert t.flush(5.0)
    assert [r.status for r in collector.requests] == [503, 503, 200]
    assert t.stats()["retried_requests"] == 2
    assert t.stats()["failed_requests"] == 0


def test_retry_after_is_honoured_in_real_time(collector: Collector, make: Make) -> None:
    """End to end on the real clock, through the pipeline (the exact rules are tested on a fake clock)."""
    collector.fail(429, retry_after="0.4")
    t, _ = make(tracer_options=ONE_BATCH)
    with t.span("one", "tool"):
        pass
    assert t.flush(5.0)
    first, second = collector.requests
    assert (first.status, second.status) == (429, 200)
    assert second.time - first.time >= 0.38  # the backoff alone would have waited ≤ 0.01 s


def test_backoff_doubles_from_base_delay_up_to_max_delay(collector: Collector, direct: Any) -> None:
    collector.fail(503, times=5)
    clock = FakeClock()
    exporter = direct(base_delay=0.5, max_delay=3.0, export_timeout=60.0, clock=clock, jitter=HighestJitter())
    result = exporter.export(make_batch(1))
    assert result.ok
    assert clock.sleeps == [0.5, 1.0, 2.0, 3.0, 3.0]  # jitter at its highest: the ceilings themselves
    assert [r.status for r in collector.requests] == [503] * 5 + [200]
    assert result.retried_requests == 5


def test_backoff_draws_full_jitter_below_each_ceiling(collector: Collector, direct: Any) -> None:
    collector.fail(500, times=4)
    clock = FakeClock()
    exporter = direct(base_delay=0.5, max_delay=3.0, export_timeout=60.0, clock=clock, jitter=random.Random(12))
    assert exporter.export(make_batch(1)).ok
    same_seed = random.Random(12)
    assert clock.sleeps == [same_seed.uniform(0.0, ceiling) for ceiling in (0.5, 1.0, 2.0, 3.0)]


def test_retry_after_replaces_the_backoff_exactly(collector: Collector, direct: Any) -> None:
    collector.fail(429, retry_after="7")  # seven seconds: waited on the fake clock only
    collector.fail(503, retry_after="0.25")
    clock = FakeClock()
    exporter = direct(base_delay=0.01, export_timeout=60.0, clock=clock, jitter=HighestJitter())
    assert exporter.export(make_batch(1)).ok
    assert clock.sleeps == [7.0, 0.25]
    assert [r.status for r in collector.requests] == [429, 503, 200]


def test_retry_after_as_an_http_date_is_honoured(collector: Collector, direct: Any) -> None:
    # An HTTP date is wall-clock time (whole seconds): a date 30 s ahead, waited within a second of it.
    collector.fail(503, retry_after=format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True))
    clock = FakeClock()
    exporter = direct(export_timeout=60.0, clock=clock)
    assert exporter.export(make_batch(1)).ok
    (wait,) = clock.sleeps
    assert 28.5 <= wait <= 30.0


def test_retry_after_is_capped(collector: Collector, direct: Any) -> None:
    collector.fail(503, retry_after="3600")
    clock = FakeClock()
    exporter = direct(max_retry_after=0.1, clock=clock)
    assert exporter.export(make_batch(1)).ok
    assert clock.sleeps == [0.1]
    assert len(collector.event_ids()) == 1


def test_a_retry_after_beyond_the_deadline_gives_up_at_once(collector: Collector, make: Make) -> None:
    collector.fail(503, retry_after="20")
    clock = FakeClock()
    t, _ = make(export_timeout=2.0, clock=clock, tracer_options=NO_SPOOL)
    with t.span("one", "tool"):
        pass
    assert not t.flush(5.0)
    assert clock.sleeps == []  # a wait that would end after the deadline is not started
    assert len(collector.requests) == 1
    stats = t.stats()
    assert stats["dropped"]["export_failed"] == 1
    assert "503" in stats["last_error"]


def test_a_backoff_beyond_the_deadline_gives_up_at_once(collector: Collector, direct: Any) -> None:
    collector.fail(503, times=10)
    clock = FakeClock()
    # Waits of 0.5, 1 and 2 s fit in 5 s; the next (4 s, at 3.5 s) would end after the deadline.
    exporter = direct(base_delay=0.5, max_delay=30.0, export_timeout=5.0, clock=clock, jitter=HighestJitter())
    result = exporter.export(make_batch(1))
    assert (result.failed, result.reason) == (1, "export_failed")
    assert clock.sleeps == [0.5, 1.0, 2.0]
    assert len(collector.requests) == 4


def test_persistent_server_errors_are_lost_after_max_attempts(
    collector: Collector, make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    collector.fail(500, times=100)
    t, _ = make(max_attempts=3, tracer_options=NO_SPOOL)
    seen = workload(t)
    assert not t.flush(5.0)
    posts = collector.requests_to("POST", "/events/batch")
    # 2 sessions × 3 attempts; then the 3-event session is bisected in case one event causes the 500:
    # halves [1] and [2], then [1] and [1], all failing: 4 requests without a success, a server failure.
    assert len(posts) == 6 + 4
    stats = t.stats()
    assert stats["dropped"]["export_failed"] == len(seen)  # not "rejected": no event was refused on its own
    assert stats["sent"] == 0
    assert stats["retried_requests"] == 4  # the bisection's requests are not retried
    assert stats["failed_requests"] == 2 + 4
    assert "HTTP 500" in stats["last_error"]
    assert len([r for r in tracer_records(caplog) if "500" in r.getMessage()]) == 1


def test_413_splits_until_each_part_fits(collector: Collector, make: Make) -> None:
    collector.max_events_per_request = 2
    t, _ = make(tracer_options=ONE_BATCH)
    with t.session("many"):
        ids = []
        for index in range(7):
            with t.span(f"s{index}", "tool") as span:
                ids.append(span.event_id)
    assert t.flush(5.0)
    assert sorted(collector.event_ids()) == sorted(ids)
    statuses = [r.status for r in collector.requests]
    assert statuses[0] == 413 and statuses.count(200) == 4
    assert all(len(r.body["events"]) <= 2 for r in collector.requests if r.status == 200)


def test_a_single_event_too_large_is_dropped_and_the_rest_delivered(collector: Collector, make: Make) -> None:
    collector.max_body_bytes = 8_000
    t, _ = make(tracer_options=ONE_BATCH)
    with t.session("mixed"):
        with t.span("small-1", "tool") as small1:
            pass
        with t.span("huge", "tool", inputs={"blob": "x" * 20_000}):
            pass
        with t.span("small-2", "tool") as small2:
            pass
    assert not t.flush(5.0)
    assert sorted(collector.event_ids()) == sorted([small1.event_id, small2.event_id])
    stats = t.stats()
    assert stats["dropped"]["too_large"] == 1
    assert stats["sent"] == 2
    assert "413" in stats["last_error"]


def test_partial_success_resends_only_the_missing_events(collector: Collector, make: Make) -> None:
    collector.partial(fail=1)
    t, _ = make(tracer_options=ONE_BATCH)
    ids = []
    with t.session("partial"):
        for index in range(3):
            with t.span(f"p{index}", "tool") as span:
                ids.append(span.event_id)
    assert t.flush(5.0)
    posts = collector.requests_to("POST", "/events/batch")
    assert [(r.status, len(r.body["events"])) for r in posts] == [(500, 3), (200, 1)]
    assert posts[1].body["events"][0]["event_id"] == ids[2]  # the one not acknowledged, alone
    assert sorted(collector.event_ids()) == sorted(ids)  # each once
    stats = t.stats()
    assert (stats["sent"], stats["dropped_total"]) == (3, 0)


def test_partial_success_by_direct_export(collector: Collector, direct: Any) -> None:
    collector.partial(fail=2)
    clock = FakeClock()
    result = direct(clock=clock, jitter=HighestJitter()).export(make_batch(5))
    assert (result.delivered, result.failed, result.reason) == (5, 0, None)
    assert [len(r.body["events"]) for r in collector.requests] == [5, 2]
    assert clock.sleeps == [0.01]  # the events not acknowledged go again after the first backoff


def test_server_refusing_gzip_gets_plain_bodies(
    collector: Collector, make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    collector.accept_gzip = False
    t, exporter = make(tracer_options=ONE_BATCH)
    seen = workload(t)
    assert t.flush(5.0)
    assert_delivered_once(collector, seen)
    assert exporter.gzip is False
    statuses = [(r.status, r.headers.get("content-encoding")) for r in collector.requests]
    # Both sessions' requests are in flight together, so both may go compressed at first.
    assert 1 <= statuses.count((415, "gzip")) <= 2
    assert set(statuses) == {(415, "gzip"), (200, None)}
    assert len([r for r in tracer_records(caplog) if "415" in r.getMessage()]) == 1


# -- refusals -------------------------------------------------------------------------------------


def test_invalid_api_key_is_rejected_logged_once_and_reported(
    collector: Collector, make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    t, _ = make(api_key="wrong", tracer_options=ONE_BATCH)
    seen = workload(t)
    assert t.flush(5.0) is False
    stats = t.stats()
    assert stats["dropped"]["rejected"] == len(seen)
    assert stats["sent"] == 0
    assert "401" in stats["last_error"] and "Invalid API key" in stats["last_error"]
    assert stats["retried_requests"] == 0  # a 401 is not retried
    assert [r.status for r in collector.requests] == [401, 401]  # one per session

    workload(t)  # more of the same: still a single log line
    assert t.flush(5.0) is False
    assert t.stats()["dropped"]["rejected"] == 2 * len(seen)
    lines = tracer_records(caplog)
    assert len(lines) == 1
    message = lines[0].getMessage()
    assert lines[0].levelno == logging.ERROR
    assert "401" in message and "Invalid API key" in message and "API key" in message
    assert "wrong" not in message  # the key itself is never logged
    assert collector.events == []


def test_bad_request_is_not_retried(collector: Collector, direct: Any) -> None:
    collector.fail(400, times=10, body={"message": "Bad request (missing required fields)"})
    exporter = direct()
    result = exporter.export(make_batch(2))
    assert (result.delivered, result.failed, result.reason) == (0, 2, "rejected")
    assert result.retry_events == ()  # refused: never offered again
    # Not retried as such: the batch, then each event alone (in case only one of them was refused).
    assert [len(sent_events(r)) for r in collector.requests] == [2, 1, 1]
    assert result.last_error is not None and "missing required fields" in result.last_error


# -- a slow, hanging or absent backend ------------------------------------------------------------


def test_the_app_never_waits_for_a_hanging_server(collector: Collector, make: Make) -> None:
    collector.hang()
    t, _ = make(timeout=10.0, export_timeout=20.0)

    @t.trace
    def work(n: int) -> int:
        return n

    started = time.monotonic()
    work(0)
    assert time.monotonic() - started < 0.1
    deadline = time.monotonic() + 5.0
    while not collector.requests and time.monotonic() < deadline:  # the worker is now stuck in the request
        time.sleep(0.01)
    assert collector.requests
    started = time.monotonic()
    for n in range(1, 50):
        work(n)
    assert time.monotonic() - started < 0.1

    started = time.monotonic()
    assert t.flush(timeout=0.5) is False
    assert 0.45 <= time.monotonic() - started < 1.0
    assert "timed out" in (t.stats()["last_error"] or "")

    collector.release()  # the hung connection is dropped; the retry delivers
    assert t.flush(5.0)
    counts = Counter(collector.event_ids())
    assert len(counts) == 50 and set(counts.values()) == {1}


def test_a_timeout_is_retried(collector: Collector, direct: Any) -> None:
    collector.hang(seconds=5.0)
    exporter = direct(timeout=0.2)
    started = time.monotonic()
    result = exporter.export(make_batch(1))
    assert result.ok
    assert time.monotonic() - started < 2.0
    assert (result.retried_requests, result.failed_requests, result.last_error) == (1, 0, None)
    assert len(collector.event_ids()) == 1


def test_export_deadline_bounds_a_batch(collector: Collector, direct: Any) -> None:
    collector.hang(times=10, seconds=5.0)
    exporter = direct(timeout=5.0, export_timeout=0.3)
    started = time.monotonic()
    result = exporter.export(make_batch(1))
    assert time.monotonic() - started < 1.0
    assert (result.failed, result.reason) == (1, "export_failed")


def test_a_retry_that_times_out_keeps_the_servers_answer_in_the_error(collector: Collector, direct: Any) -> None:
    collector.fail(503)
    collector.hang(times=10, seconds=5.0)
    exporter = direct(timeout=0.2, max_attempts=3, breaker_threshold=100)
    result = exporter.export(make_batch(1))
    assert (result.failed, result.reason) == (1, "export_failed")
    assert result.last_error is not None and "timed out (after HTTP 503)" in result.last_error, result.last_error


def test_unreachable_backend_opens_the_circuit_then_probes_and_resumes(
    collector: Collector, direct: Any, caplog: pytest.LogCaptureFixture
) -> None:
    collector.reset(times=2)
    clock = FakeClock()
    exporter = direct(
        breaker_threshold=2,
        breaker_cooldown=0.3,
        max_attempts=2,
        export_timeout=1.0,
        clock=clock,
        jitter=HighestJitter(),
    )

    result = exporter.export(make_batch(1))  # two connection failures: the circuit opens
    assert (result.failed, result.reason) == (1, "export_failed")
    assert len(collector.requests) == 2
    assert clock.sleeps == [0.01]  # the backoff between them; none after the last attempt

    exporter.export_timeout = 0.1  # shorter than the cooldown: fail fast, no request, nothing serialized
    result = exporter.export(make_batch(3))
    assert clock.sleeps == [0.01]  # not even a wait
    assert (result.failed, result.reason) == (3, "export_failed")
    assert len(collector.requests) == 2
    assert "circuit open" in (result.last_error or "")

    exporter.export_timeout = 2.0  # long enough: wait out the cooldown, probe, resume
    assert exporter.export(make_batch(2)).ok
    assert clock.sleeps == pytest.approx([0.01, 0.3])  # exactly the cooldown, from the moment the circuit opened
    assert len(collector.requests) == 3
    assert len(collector.event_ids()) == 2
    assert exporter.export(make_batch(1)).ok  # closed again: immediate
    unreachable = [r for r in tracer_records(caplog) if "cannot reach" in r.getMessage()]
    assert len(unreachable) == 1


def test_refused_connections_fail_within_the_deadline(direct: Any, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    exporter = direct(url=dead_url(), export_timeout=0.25, breaker_threshold=100, clock=clock, jitter=HighestJitter())
    result = exporter.export(make_batch(2))
    assert (result.failed, result.reason) == (2, "export_failed")
    # Backoff 0.01 doubling to max_delay 0.05: the seventh wait (at 0.22 s) would end after 0.25 s.
    assert clock.sleeps == [0.01, 0.02, 0.04, 0.05, 0.05, 0.05]
    assert result.retried_requests == 6
    assert result.failed_requests == 1
    assert result.last_error is not None and "ConnectError" in result.last_error
    exporter.export(make_batch(1))
    assert len([r for r in tracer_records(caplog) if "cannot reach" in r.getMessage()]) == 1


def test_shutdown_interrupts_a_backoff_wait(collector: Collector, direct: Any) -> None:
    collector.fail(503, times=5, retry_after="5")
    exporter = direct(export_timeout=30.0)

    results: list[Any] = []
    worker = threading.Thread(target=lambda: results.append(exporter.export(make_batch(1))))
    worker.start()
    deadline = time.monotonic() + 5.0
    while not collector.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    started = time.monotonic()
    exporter.interrupt()
    worker.join(2.0)
    assert not worker.is_alive()
    assert time.monotonic() - started < 0.5
    assert results[0].reason == "export_failed"


# -- the HTTP layer on its own --------------------------------------------------------------------


def test_parse_retry_after() -> None:
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    in_30s = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after("2", cap=60) == 2.0
    assert parse_retry_after(" 1.5 ", cap=60) == 1.5
    assert parse_retry_after("120", cap=60) == 60
    assert parse_retry_after("-3", cap=60) == 0.0
    assert parse_retry_after(in_30s, cap=60, now=now.timestamp()) == pytest.approx(30.0)
    assert parse_retry_after(in_30s, cap=10, now=now.timestamp()) == 10
    assert parse_retry_after(format_datetime(now, usegmt=True), cap=60, now=now.timestamp() + 5) == 0.0
    for bad in (None, "", "soon", "nan"):
        assert parse_retry_after(bad, cap=60) is None


def test_backoff_is_full_jitter_and_capped() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=30.0)
    assert [policy.backoff(attempt, HighestJitter()) for attempt in range(1, 9)] == [
        0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0
    ]  # fmt: skip
    assert policy.backoff(10_000, HighestJitter()) == 30.0  # no overflow far out
    draws, same_seed = random.Random(3), random.Random(3)
    assert [policy.backoff(attempt, draws) for attempt in (1, 2, 7)] == [
        same_seed.uniform(0.0, 0.5), same_seed.uniform(0.0, 1.0), same_seed.uniform(0.0, 30.0)
    ]  # fmt: skip
    assert all(0.0 <= policy.backoff(attempt) <= 30.0 for attempt in range(1, 12) for _ in range(20))


def test_the_circuit_breaker_doubles_its_cooldown_per_failed_probe_up_to_its_cap(collector: Collector) -> None:
    collector.reset(times=5)
    clock = FakeClock()
    policy = RetryPolicy(base_delay=0.01, max_delay=0.01, max_attempts=10, breaker_threshold=2, breaker_cooldown=0.3)
    headers = {"Authorization": "Bearer k", "Content-Type": "application/json"}
    client = HttpClient(headers, timeout=2.0, policy=policy, clock=clock, jitter=HighestJitter())
    try:
        body = orjson.dumps({"event_id": "e1"})
        result = client.request("PUT", f"{collector.url}/events", body, deadline=clock.monotonic() + 100)
    finally:
        client.close()
    assert result.ok and result.attempts == 6
    # After each failure the backoff (0.01), then what is left of the cooldown: it opens at the
    # second failure for 0.3 s, then 0.6 s after a failed probe, then the 1 s cap (breaker_max_cooldown).
    assert clock.sleeps == pytest.approx([0.01, 0.01, 0.29, 0.01, 0.59, 0.01, 0.99, 0.01, 0.99])
    assert client.breaker.opened == 4
    assert not client.breaker.is_open()


def test_http_client_reuses_one_connection(collector: Collector) -> None:
    client = HttpClient({"Authorization": "Bearer k", "Content-Type": "application/json"}, timeout=2.0)
    try:
        ports = set()
        for index in range(3):
            body = orjson.dumps({"event_id": f"e{index}"})
            result = client.request("PUT", f"{collector.url}/events", body, deadline=time.monotonic() + 2)
            assert result.ok and result.attempts == 1
            ports.add(collector.requests[-1].peer)
        assert len(collector.updates) == 3
    finally:
        client.close()
    assert len(ports) == 1


# -- wiring ---------------------------------------------------------------------------------------


def test_api_key_selects_the_honeyhive_exporter(collector: Collector) -> None:
    t = Tracer(project="test", api_key="k", server_url=collector.url)
    try:
        # conftest sets TRACER_STORE, so a local copy is kept beside it
        assert isinstance(t.exporters[0], HoneyHiveExporter)
        seen = workload(t)
        assert t.flush(5.0)
        assert_delivered_once(collector, seen)
    finally:
        t.shutdown(5.0)


def test_constructor_validates_and_never_shows_the_key() -> None:
    with pytest.raises(tracer.ConfigError, match="API key"):
        HoneyHiveExporter("")
    with pytest.raises(tracer.ConfigError, match="server_url"):
        HoneyHiveExporter("k", "api.honeyhive.ai")
    with pytest.raises(tracer.ConfigError, match="base_delay"):
        HoneyHiveExporter("k", base_delay=-1)
    exporter = HoneyHiveExporter("secret-key", "https://example.test/")
    try:
        assert exporter.server_url == "https://example.test"
        assert "secret-key" not in repr(exporter)
    finally:
        exporter.shutdown()


def test_session_enriched_before_its_events_is_created_not_put(collector: Collector) -> None:
    """A PUT for a session the server has never seen would fail: the session is started instead."""
    collector.strict_updates = True
    t = Tracer(api_key="k", server_url=collector.url, project="proj", batch=False)
    try:
        with t.session("early") as session:
            t.enrich_session(metadata={"stage": "before-events"})  # nothing of this session sent yet
            with t.span("work"):
                pass
            t.enrich_session(metadata={"stage": "after-events"})  # now the server has it: PUT
        assert t.flush(5)
    finally:
        t.shutdown(2)
    (started,) = collector.started_sessions
    assert started["session_id"] == session.session_id
    assert (started["project"], started["session_name"], started["metadata"]) == (
        "proj",
        "early",
        {"stage": "before-events"},
    )
    assert collector.updates == [{"event_id": session.session_id, "metadata": {"stage": "after-events"}}]
    assert t.stats()["dropped_total"] == 0


def test_shutdown_with_a_failing_backend_ends_on_time_and_counts_what_is_left(collector: Collector, make: Make) -> None:
    """Retry waits are interrupted when shutdown's time runs out; queued events are counted, not sent."""
    collector.fail(503, times=1000)
    t, _ = make(base_delay=5.0, max_delay=5.0, export_timeout=60.0, tracer_options=NO_SPOOL)
    for i in range(20):
        with t.span("doomed", inputs={"i": i}):
            pass
    assert t.flush(0.2) is False  # the worker is now waiting 5 s before its next retry
    for i in range(5):
        with t.span("queued-behind", inputs={"i": i}):
            pass
    started = time.monotonic()
    t.shutdown(timeout=0.5)
    assert time.monotonic() - started < 2.0
    dropped = t.stats()["dropped"]
    assert dropped["export_failed"] + dropped["shutdown_timeout"] == 25
    assert t._processor._detached.is_set()  # type: ignore[attr-defined]  # the worker let go of it
