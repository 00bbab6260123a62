"""tracer.inject() and tracer.continue_trace(): W3C trace context and baggage, one session across
two tracers (two "services" in one process here; tests/propagation/test_two_services.py runs two
real processes)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.datastructures import Headers as StarletteHeaders

import tracer
from tracer import InMemoryExporter, Tracer
from tracer._otlp_mapping import event_id_for, event_to_span, span_id_for, trace_id_for
from tracer._span import current_span_var

from ..conftest import Recorder

FOREIGN_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
FOREIGN_SPAN = "00f067aa0ba902b7"
FOREIGN = f"00-{FOREIGN_TRACE}-{FOREIGN_SPAN}-01"


class _Service(Recorder):
    """conftest's Recorder with its own source."""

    def __init__(self, source: str, **options: Any) -> None:
        self.exporter = InMemoryExporter()
        self.tracer = Tracer(project="test", source=source, exporter=self.exporter, **options)


@pytest.fixture
def caller() -> Iterator[Recorder]:
    recorder = _Service("staging", batch=False, session_name="caller")
    yield recorder
    recorder.tracer.shutdown(1.0)


@pytest.fixture
def callee() -> Iterator[Recorder]:
    recorder = _Service("test", batch=False, session_name="callee")
    yield recorder
    recorder.tracer.shutdown(1.0)


def _baggage(header: str) -> dict[str, str]:
    pairs = (member.split(";")[0].split("=", 1) for member in header.split(","))
    return {key.strip(): urllib.parse.unquote(value.strip()) for key, value in pairs}


def test_inject_without_a_span_returns_the_headers_unchanged(caller: Recorder) -> None:
    headers = {"accept": "text/plain"}
    assert caller.tracer.inject(headers) is headers
    assert headers == {"accept": "text/plain"}
    assert tracer.inject({}) == {}


def test_inject_into_headers_that_refuse_writes_returns_them_without_raising(caller: Recorder) -> None:
    received = StarletteHeaders({"accept": "text/plain"})  # a request's headers: immutable
    with caller.tracer.span("call"):
        assert caller.tracer.inject(received) is received  # type: ignore[type-var]

    class Refusing(dict[str, str]):
        def __setitem__(self, key: str, value: str) -> None:
            raise PermissionError("frozen")

    refusing = Refusing(accept="text/plain")
    with caller.tracer.span("call"):
        assert caller.tracer.inject(refusing) is refusing
    assert refusing == {"accept": "text/plain"}
    assert [event["event_name"] for event in caller.events()] == ["call", "call"]


def test_inject_writes_the_otlp_exporters_ids_and_the_session_in_baggage(caller: Recorder) -> None:
    with caller.tracer.session("checkout, step=1; é"), caller.tracer.span("outer"), caller.tracer.span("call") as span:
        headers = caller.tracer.inject({"TraceParent": "stale", "x-other": "kept"})
    assert headers["x-other"] == "kept" and "TraceParent" not in headers  # replaced, whatever its case
    event = caller.by_name("call")
    version, trace_id, span_id, flags = headers["traceparent"].split("-")
    assert (version, flags) == ("00", "01")
    exported = event_to_span(event)  # what the OTLP exporter sends for this event
    assert trace_id == exported.trace_id == trace_id_for(event["session_id"]) == uuid.UUID(event["session_id"]).hex
    assert span_id == exported.span_id == span_id_for(span.event_id)
    assert headers["tracestate"] == "tracer=" + uuid.UUID(span.event_id).hex
    assert _baggage(headers["baggage"]) == {
        "honeyhive.session_id": event["session_id"],
        "honeyhive.session_name": "checkout, step=1; é",
        "honeyhive.source": "staging",
    }
    assert all(ord(c) < 128 and c not in ' "\\' for c in headers["baggage"])  # W3C baggage-octets only


def _roundtrip(caller: Recorder, callee: Recorder, headers_of: Any = dict) -> tuple[dict, dict, dict]:
    with caller.tracer.session("chat"), caller.tracer.span("request"), caller.tracer.span("call_b"):
        headers = caller.tracer.inject({})
    with callee.tracer.continue_trace(headers_of(headers)) as session:
        assert session is not None
        with callee.tracer.span("handle") as handle, callee.tracer.span("inner"):
            assert handle.parent_id == caller.by_name("call_b")["event_id"]  # while open too
    return caller.by_name("call_b"), callee.by_name("handle"), callee.by_name("inner")


def test_continue_trace_joins_the_callers_session_as_a_child_of_its_span(caller: Recorder, callee: Recorder) -> None:
    call_b, handle, inner = _roundtrip(caller, callee)
    assert handle["session_id"] == inner["session_id"] == call_b["session_id"]
    assert handle["parent_id"] == call_b["event_id"]
    assert inner["parent_id"] == handle["event_id"]
    assert handle["source"] == "staging"  # the session's, from baggage
    assert callee.exporter.sessions[handle["session_id"]]["session_name"] == "chat"
    # One OTLP trace: the callee's root span is the caller's span's child.
    assert event_to_span(handle).trace_id == event_to_span(call_b).trace_id
    assert event_to_span(handle).parent_span_id == event_to_span(call_b).span_id
    # Outside the block: back to the callee's own session.
    with callee.tracer.span("after"):
        pass
    assert callee.by_name("after")["session_id"] != handle["session_id"]
    assert callee.by_name("after")["parent_id"] == callee.by_name("after")["session_id"]


@pytest.mark.parametrize(
    "shape",
    [
        pytest.param(lambda h: {k.upper(): v for k, v in h.items()}, id="upper-case-dict"),
        pytest.param(lambda h: list(h.items()), id="list-of-pairs"),
        pytest.param(lambda h: tuple((k.title(), v) for k, v in h.items()), id="tuple-of-pairs"),
        pytest.param(StarletteHeaders, id="starlette-headers"),
        pytest.param(httpx.Headers, id="httpx-headers"),
    ],
)
def test_continue_trace_accepts_every_header_shape(caller: Recorder, callee: Recorder, shape: Any) -> None:
    call_b, handle, _ = _roundtrip(caller, callee, shape)
    assert handle["parent_id"] == call_b["event_id"]


def test_a_tracer_caller_without_baggage_keeps_its_session_by_the_trace_id(caller: Recorder, callee: Recorder) -> None:
    call_b, handle, _ = _roundtrip(caller, callee, lambda h: {k: v for k, v in h.items() if k != "baggage"})
    assert handle["session_id"] == call_b["session_id"]
    assert handle["parent_id"] == call_b["event_id"]
    assert callee.exporter.sessions[handle["session_id"]]["session_name"] == "callee"  # not sent: the default


def test_a_foreign_opentelemetry_caller_is_continued_in_a_session_of_its_trace(callee: Recorder) -> None:
    with (
        callee.tracer.continue_trace({"traceparent": FOREIGN}, session_name="GET /items"),
        callee.tracer.span("handle"),
    ):
        pass
    handle = callee.by_name("handle")
    assert handle["session_id"] == str(uuid.UUID(hex=FOREIGN_TRACE))
    # The event the collector (span_to_event) stores for the foreign span: the same id.
    assert handle["parent_id"] == event_id_for(FOREIGN_TRACE, FOREIGN_SPAN)
    span = event_to_span(handle)
    assert (span.trace_id, span.parent_span_id) == (FOREIGN_TRACE, FOREIGN_SPAN)
    assert callee.exporter.sessions[handle["session_id"]]["session_name"] == "GET /items"


def test_tracestate_is_passed_on_and_a_stale_entry_of_ours_is_not_trusted(callee: Recorder) -> None:
    stale = "tracer=" + "ab" * 16  # its last 16 digits are not FOREIGN_SPAN: a foreign hop in between
    received = {"traceparent": FOREIGN, "tracestate": f"congo=t61rcWkgMzE,{stale},rojo=00f067aa0ba902b7"}
    with callee.tracer.continue_trace(received), callee.tracer.span("handle") as span:
        onward = callee.tracer.inject({})
    assert callee.by_name("handle")["parent_id"] == event_id_for(FOREIGN_TRACE, FOREIGN_SPAN)
    assert onward["tracestate"] == f"tracer={uuid.UUID(span.event_id).hex},congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    assert onward["traceparent"] == f"00-{FOREIGN_TRACE}-{span_id_for(span.event_id)}-01"


def test_inject_in_a_continued_block_before_any_span_propagates_the_remote_parent(callee: Recorder) -> None:
    received = {"traceparent": FOREIGN, "baggage": "userId=alice, serverNode=DF%2028;ttl=1"}
    with callee.tracer.continue_trace(received):
        assert callee.tracer.current_span() is None  # the remote parent is not a span one can enrich
        assert callee.tracer.enrich_span(metadata={"x": 1}) is False
        onward = tracer.inject({})
    assert onward["traceparent"] == FOREIGN
    members = _baggage(onward["baggage"])
    assert members["honeyhive.session_id"] == str(uuid.UUID(hex=FOREIGN_TRACE))
    assert members["userId"] == "alice" and members["serverNode"] == "DF 28"  # passed on


def test_async_with_and_threads_inside_a_continued_block(caller: Recorder, callee: Recorder) -> None:
    with caller.tracer.span("call_b"):
        headers = caller.tracer.inject({})

    def work() -> None:
        with callee.tracer.span("in_thread"):
            pass

    async def handler() -> None:
        async with callee.tracer.continue_trace(headers):
            async with callee.tracer.span("handle_async"):
                pass
            with concurrent.futures.ThreadPoolExecutor(1) as pool:  # propagate_to_threads: the default
                pool.submit(work).result()

    asyncio.run(handler())
    call_b = caller.by_name("call_b")
    assert callee.by_name("handle_async")["parent_id"] == call_b["event_id"]
    assert callee.by_name("in_thread")["parent_id"] == call_b["event_id"]


def test_a_long_continued_block_keeps_no_list_of_its_root_spans(callee: Recorder) -> None:
    with callee.tracer.continue_trace({"traceparent": FOREIGN}):
        assert callee.tracer.current_span() is None
        remote = current_span_var.get()
        for _ in range(100):
            with callee.tracer.span("root"):
                pass
    assert remote is not None and not remote._children
    assert len(callee.events()) == 100


def test_the_background_pipeline_writes_the_remote_parent(batch_rec: Recorder) -> None:
    remote = batch_rec.tracer.continue_trace({"traceparent": FOREIGN})
    with remote, batch_rec.tracer.span("handle"), batch_rec.tracer.span("child"):
        pass
    handle = batch_rec.by_name("handle")
    assert handle["parent_id"] == event_id_for(FOREIGN_TRACE, FOREIGN_SPAN)
    assert batch_rec.by_name("child")["parent_id"] == handle["event_id"]


HOSTILE: list[Any] = [
    pytest.param({"traceparent": FOREIGN.encode()}, id="bytes-value"),
    pytest.param([(b"traceparent", FOREIGN.encode())], id="bytes-pairs"),
    pytest.param({"traceparent": 42}, id="int-value"),
    pytest.param({"traceparent": FOREIGN + "\r\nX-Injected: 1"}, id="crlf"),
    pytest.param({"traceparent": FOREIGN.upper()}, id="upper-case-hex"),
    pytest.param({"traceparent": FOREIGN.replace("4bf9", "4bg9")}, id="invalid-hex"),
    pytest.param({"traceparent": "ff" + FOREIGN[2:]}, id="version-ff"),
    pytest.param({"traceparent": f"00-{'0' * 32}-{FOREIGN_SPAN}-01"}, id="zero-trace-id"),
    pytest.param({"traceparent": f"00-{FOREIGN_TRACE}-{'0' * 16}-01"}, id="zero-span-id"),
    pytest.param({"traceparent": FOREIGN + "-extra"}, id="version-00-with-more"),
    pytest.param({"traceparent": "01-" + FOREIGN[3:] + "-" + "a" * 600}, id="oversized"),
    pytest.param({"traceparent": FOREIGN[:-3]}, id="truncated"),
    pytest.param([("traceparent", FOREIGN), ("Traceparent", FOREIGN)], id="twice"),
    pytest.param({"traceparent": ""}, id="empty"),
    pytest.param(None, id="none"),
    pytest.param(12, id="not-headers"),
]


class _Exploding(dict[str, str]):
    def items(self) -> Any:
        raise RuntimeError("boom")


@pytest.mark.parametrize("headers", [*HOSTILE, pytest.param(_Exploding(), id="items-raises")])
def test_malformed_or_hostile_headers_are_ignored_with_one_debug_line(
    callee: Recorder, headers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="tracer"):
        with callee.tracer.continue_trace(headers) as session, callee.tracer.span("handle"):
            assert session is None
        lines = [r for r in caplog.records if "trace headers" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in caplog.records]
    handle = callee.by_name("handle")
    assert handle["parent_id"] == handle["session_id"]  # the callee's own session, a root event


def test_no_trace_headers_at_all_is_silent(callee: Recorder, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="tracer"), callee.tracer.continue_trace({"accept": "*/*"}) as session:
        assert session is None
    assert not [r for r in caplog.records if "trace headers" in r.getMessage()]


@pytest.mark.parametrize(
    ("extra", "kept"),
    [
        pytest.param({"tracestate": "a=" + "b" * 600}, "baggage", id="tracestate-over-512"),
        pytest.param({"tracestate": ",".join(f"k{i}=v" for i in range(33))}, "baggage", id="tracestate-33-members"),
        pytest.param({"tracestate": "Bad Key=1"}, "baggage", id="tracestate-malformed"),
        pytest.param({"baggage": "x=" + "y" * 8200}, "tracestate", id="baggage-over-8192-bytes"),
        pytest.param({"baggage": ",".join(f"k{i}=v" for i in range(181))}, "tracestate", id="baggage-181-members"),
        pytest.param({"baggage": "honeyhive.session_name=a b"}, "tracestate", id="baggage-malformed"),
    ],
)
def test_an_oversized_or_malformed_tracestate_or_baggage_is_dropped_alone(
    caller: Recorder, callee: Recorder, extra: dict[str, str], kept: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caller.tracer.session("chat"), caller.tracer.span("call_b"):
        headers = caller.tracer.inject({})
    headers.update(extra)
    remote = callee.tracer.continue_trace(headers)
    with caplog.at_level(logging.DEBUG, logger="tracer"), remote, callee.tracer.span("handle"):
        pass
    assert len([r for r in caplog.records if "trace headers" in r.getMessage()]) == 1
    call_b, handle = caller.by_name("call_b"), callee.by_name("handle")
    assert handle["session_id"] == call_b["session_id"]  # the traceparent still counts
    if kept == "tracestate":  # the whole event id came in tracestate
        assert handle["parent_id"] == call_b["event_id"]
    else:  # the session name came in baggage
        assert callee.exporter.sessions[handle["session_id"]]["session_name"] == "chat"


def test_a_control_character_in_a_baggage_value_is_not_taken(callee: Recorder) -> None:
    headers = {"traceparent": FOREIGN, "baggage": "honeyhive.session_name=evil%0D%0AX-Injected%3A%201"}
    with callee.tracer.continue_trace(headers, session_name="fallback"), callee.tracer.span("handle"):
        pass
    assert callee.exporter.sessions[callee.by_name("handle")["session_id"]]["session_name"] == "fallback"


def test_a_disabled_tracer_continues_nothing(callee: Recorder) -> None:
    off = Recorder(batch=False, disabled=True)
    try:
        with off.tracer.continue_trace({"traceparent": FOREIGN}) as session:
            assert session is None
            assert tracer.inject({}) == {}
    finally:
        off.tracer.shutdown(1.0)


# -- sampling: a session is sampled once, where it starts ------------------------------------------


def _flags(headers: dict[str, str]) -> str:
    return headers["traceparent"].rsplit("-", 1)[1]


def test_a_sampled_out_callers_session_records_nothing_downstream_and_is_passed_on(callee: Recorder) -> None:
    caller = _Service("staging", batch=False, sample_rate=0.0)  # every session sampled out
    try:
        with caller.tracer.session("chat") as session:
            headers = caller.tracer.inject({})
        assert caller.events() == []
        assert (
            headers["traceparent"]
            == f"00-{uuid.UUID(session.session_id).hex}-{uuid.UUID(session.session_id).hex[16:]}-00"
        )
        assert "tracestate" not in headers  # no event of ours to name
        assert _baggage(headers["baggage"])["honeyhive.session_id"] == session.session_id

        @callee.tracer.trace(event_name="handle")
        def handle() -> dict[str, str]:
            return callee.tracer.inject({})

        with callee.tracer.continue_trace(headers) as continued:  # the callee samples every session
            assert continued is not None and continued.session_id == session.session_id
            assert not continued.sampled  # the caller's decision
            onward = handle()  # a traced function's fast path as well as a span block
            with callee.tracer.span("block"):
                onward_from_block = callee.tracer.inject({})
        assert callee.events() == []
        # Passed on, still not sampled: the next service follows the same decision.
        assert onward == onward_from_block == headers
        with callee.tracer.span("after"):  # outside the block: the callee's own sampling again
            pass
        assert [event["event_name"] for event in callee.events()] == ["after"]
    finally:
        caller.tracer.shutdown(1.0)


def test_a_sampled_callers_session_is_recorded_by_a_callee_that_would_sample_it_out(caller: Recorder) -> None:
    callee = _Service("test", batch=False, sample_rate=0.0)
    try:
        with caller.tracer.session("chat"), caller.tracer.span("call_b"):
            headers = caller.tracer.inject({})
        assert _flags(headers) == "01"

        @callee.tracer.trace(event_name="handle")
        def handle() -> None:
            pass

        with callee.tracer.continue_trace(headers) as continued:
            assert continued is not None and continued.sampled
            handle()
        assert callee.by_name("handle")["parent_id"] == caller.by_name("call_b")["event_id"]
    finally:
        callee.tracer.shutdown(1.0)


@pytest.mark.parametrize("flags", ["00", "01"])
def test_a_foreign_callers_flag_is_not_followed(flags: str) -> None:
    # Proxies and meshes stamp 00 on traffic they only pass on: a foreign decision either way
    # leaves the session to this tracer's own sampling (by the session id: the trace id).
    for rate, recorded in ((1.0, ["handle"]), (0.0, [])):
        callee = _Service("test", batch=False, sample_rate=rate)
        try:

            @callee.tracer.trace(event_name="handle")
            def handle() -> None:
                pass

            with callee.tracer.continue_trace({"traceparent": f"00-{FOREIGN_TRACE}-{FOREIGN_SPAN}-{flags}"}):
                handle()  # with rate 0.0 a traced function used to be recorded (its fast path)
            assert [event["event_name"] for event in callee.events()] == recorded
        finally:
            callee.tracer.shutdown(1.0)


def test_inject_in_a_session_outside_any_span_makes_the_callees_events_its_roots(
    caller: Recorder, callee: Recorder
) -> None:
    with caller.tracer.session("chat") as session:
        headers = caller.tracer.inject({})
        with caller.tracer.span("later"):
            pass
    assert _flags(headers) == "01" and "tracestate" not in headers
    with callee.tracer.continue_trace(headers), callee.tracer.span("handle"), callee.tracer.span("inner"):
        pass
    handle, later = callee.by_name("handle"), caller.by_name("later")
    assert handle["session_id"] == later["session_id"] == session.session_id
    assert handle["parent_id"] == session.session_id  # a root event of the session, like "later"
    assert callee.by_name("inner")["parent_id"] == handle["event_id"]
    span = event_to_span(handle)  # and a root span of the session's OTLP trace
    assert span.trace_id == event_to_span(later).trace_id and not span.parent_span_id
