"""OTLPExporter against a real OTLP/HTTP receiver on 127.0.0.1 (tests/otlp_receiver.py), both
encodings decoded with the official opentelemetry-proto classes."""

from __future__ import annotations

import logging
import sys
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

import tracer
from tracer import Batch, ConfigError, ExportResult, Tracer
from tracer._otlp_mapping import Span, span_to_event
from tracer.exporters import HoneyHiveExporter, OTLPExporter
from tracer.exporters.otlp import otlp_exporter_from_env, parse_headers

from ..otlp_receiver import OTLPReceiver, ReceivedSpan, decode_request, otlp_receiver
from .test_honeyhive_exporter import dead_url

PROTOCOLS = ["http/protobuf", "http/json"]


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    yield from otlp_receiver()


def _event(session_id: str, event_type: str = "tool", parent: str | None = None, **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "session_id": session_id,
        "parent_id": parent or session_id,
        "event_type": event_type,
        "event_name": f"{event_type}-step",
        "start_time": 1_764_000_000_123,
        "end_time": 1_764_000_000_223,
        "duration": 100.25,
        "source": "staging",
        "project": "proj",
        "config": {},
        "inputs": {"question": "why?", "n": 3},
        "outputs": {"answer": "because", "items": [1, 2, {"x": None}]},
        "metadata": {"note": "ok"},
        "feedback": {},
        "metrics": {},
        "user_properties": {"user": "u1"},
    }
    event.update(fields)
    return event


def _model_event(session_id: str, parent: str) -> dict[str, Any]:
    return _event(
        session_id,
        "model",
        parent,
        event_name="openai.chat.completions",
        config={"provider": "openai", "model": "gpt-4o-mini", "temperature": 0.2, "max_tokens": 50},
        inputs={"chat_history": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]},
        outputs={"role": "assistant", "content": "hello", "finish_reason": "stop"},
        metadata={
            "prompt_tokens": 12,
            "completion_tokens": 3,
            "cached_tokens": 4,
            "cache_read_input_tokens": 4,
            "reasoning_tokens": 1,
            "response_id": "chatcmpl-1",
            "response_model": "gpt-4o-mini-2024-07-18",
        },
        metrics={"time_to_first_token_ms": 250.5},
    )


def _batch(events: list[dict[str, Any]]) -> Batch:
    sessions = {
        e["session_id"]: {"session_id": e["session_id"], "session_name": "sess", "source": "staging"} for e in events
    }
    return Batch([orjson.dumps(e) for e in events], [e["session_id"] for e in events], sessions)


def _tree() -> list[dict[str, Any]]:
    sid = str(uuid.uuid4())
    root = _event(sid, "chain", event_name="agent")
    model = _model_event(sid, root["event_id"])
    failed = _event(sid, "tool", root["event_id"], event_name="search", error="ValueError: no results")
    return [root, model, failed]


def _as_mapping_span(received: ReceivedSpan) -> Span:
    return Span(
        trace_id=received.trace_id,
        span_id=received.span_id,
        parent_span_id=received.parent_span_id,
        name=received.name,
        kind=received.kind,
        start_time_unix_nano=received.start,
        end_time_unix_nano=received.end,
        attributes=received.attributes,
        status_code=received.status_code,
        status_message=received.status_message,
        resource={},  # the resource is the service's, not the event's
    )


# -- mapping and encodings -------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_event_sent_as_a_span_maps_back_to_the_same_honeyhive_fields(protocol: str) -> None:
    events = _tree()
    exporter = OTLPExporter("http://127.0.0.1:9/v1/traces", protocol=protocol, compression=None)
    content_type = "application/json" if protocol == "http/json" else "application/x-protobuf"
    received = decode_request(exporter.encode(_batch(events)), content_type)
    assert len(received) == 3
    for event, span in zip(events, received, strict=True):
        back, session = span_to_event(_as_mapping_span(span))
        assert session["session_id"] == event["session_id"]
        assert session["session_name"] == "sess"
        for field in (
            "event_id",
            "session_id",
            "parent_id",
            "event_type",
            "event_name",
            "start_time",
            "duration",
            "source",
            "project",
        ):
            assert back[field] == event[field], field
        for bucket in ("config", "inputs", "outputs", "metadata", "feedback", "metrics", "user_properties"):
            assert back[bucket] == event[bucket], bucket
        assert back.get("error") == event.get("error")
    exporter.shutdown()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_spans_carry_trace_ids_parents_kinds_status_resource_and_genai_attributes(protocol: str) -> None:
    events = _tree()
    root, model, _failed = events
    exporter = OTLPExporter("http://127.0.0.1:9/v1/traces", protocol=protocol, compression=None, service_name="svc")
    content_type = "application/json" if protocol == "http/json" else "application/x-protobuf"
    spans = decode_request(exporter.encode(_batch(events)), content_type)
    by_name = {s.name: s for s in spans}
    session_hex = uuid.UUID(root["session_id"]).hex
    assert {s.trace_id for s in spans} == {session_hex}  # one session = one trace, the session id itself
    assert by_name["agent"].parent_span_id == ""
    assert by_name["openai.chat.completions"].parent_span_id == by_name["agent"].span_id
    assert by_name["search"].parent_span_id == by_name["agent"].span_id
    assert by_name["agent"].span_id == uuid.UUID(root["event_id"]).hex[16:]
    assert by_name["agent"].start == root["start_time"] * 1_000_000
    assert by_name["agent"].end == root["start_time"] * 1_000_000 + 100_250_000
    assert (by_name["agent"].kind, by_name["openai.chat.completions"].kind) == (1, 3)  # INTERNAL, CLIENT
    assert by_name["search"].status_code == 2 and by_name["search"].status_message == "ValueError: no results"
    assert by_name["agent"].status_code == 0
    resource = spans[0].resource
    assert resource["service.name"] == "svc"
    assert resource["deployment.environment.name"] == "staging"
    assert (resource["telemetry.sdk.name"], resource["telemetry.sdk.language"]) == ("tracer", "python")
    assert resource["telemetry.sdk.version"] == tracer.__version__
    attributes = by_name["openai.chat.completions"].attributes
    assert attributes["honeyhive_event_type"] == "model"
    assert orjson.loads(attributes["honeyhive_config"]) == model["config"]
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert attributes["gen_ai.request.temperature"] == 0.2
    assert attributes["gen_ai.request.max_tokens"] == 50
    assert attributes["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert attributes["gen_ai.response.id"] == "chatcmpl-1"
    assert attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (12, 3)
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == 4
    assert attributes["gen_ai.usage.reasoning.output_tokens"] == 1
    assert attributes["gen_ai.response.time_to_first_chunk"] == pytest.approx(0.2505)
    assert orjson.loads(attributes["gen_ai.input.messages"])[1] == {
        "role": "user",
        "parts": [{"type": "text", "content": "hi"}],
    }
    assert orjson.loads(attributes["gen_ai.output.messages"])[0]["parts"] == [{"type": "text", "content": "hello"}]
    assert "gen_ai.operation.name" not in by_name["agent"].attributes
    exporter.shutdown()


def test_otlp_json_follows_the_json_rules_hex_ids_int64_as_strings_enums_as_ints() -> None:
    events = _tree()
    exporter = OTLPExporter("http://127.0.0.1:9/v1/traces", protocol="http/json", compression=None)
    body = orjson.loads(exporter.encode(_batch(events)))
    span = body["resourceSpans"][0]["scopeSpans"][0]["spans"][1]
    assert span["traceId"] == uuid.UUID(events[0]["session_id"]).hex and len(span["spanId"]) == 16
    assert isinstance(span["startTimeUnixNano"], str) and isinstance(span["endTimeUnixNano"], str)
    assert span["kind"] == 3
    tokens = next(a for a in span["attributes"] if a["key"] == "gen_ai.usage.input_tokens")
    assert tokens["value"] == {"intValue": "12"}
    failed = body["resourceSpans"][0]["scopeSpans"][0]["spans"][2]
    assert failed["status"] == {"code": 2, "message": "ValueError: no results"}
    exporter.shutdown()


def test_oversized_values_keep_head_and_tail_and_extra_attributes_are_dropped_not_the_batch(
    receiver: OTLPReceiver,
) -> None:
    sid = str(uuid.uuid4())
    huge = _event(sid, inputs={"text": "A" * 50_000 + "Z" * 50_000})
    many = _event(sid, metadata={f"http.header{i}": i for i in range(300)})
    plain = _event(sid)
    exporter = OTLPExporter(receiver.endpoint, max_attribute_length=1000, max_attributes=64)
    (result,) = exporter.export_batches([_batch([huge, many, plain])])
    assert isinstance(result, ExportResult) and (result.delivered, result.failed) == (3, 0)
    spans = {s.span_id: s for s in receiver.spans}
    cut = spans[uuid.UUID(huge["event_id"]).hex[16:]].attributes["honeyhive_inputs"]
    assert cut.startswith('{"text":"AAA') and cut.endswith('ZZZ"}')
    assert f"…[truncated: {len(orjson.dumps(huge['inputs']))} chars in total]…" in cut and len(cut) < 1100
    crowded = spans[uuid.UUID(many["event_id"]).hex[16:]]
    assert len(crowded.attributes) == 64 and crowded.dropped_attributes > 0
    assert crowded.attributes["honeyhive_event_type"] == "tool"  # HoneyHive's own attributes come first
    assert spans[uuid.UUID(plain["event_id"]).hex[16:]].dropped_attributes == 0
    exporter.shutdown()


# -- delivery through the pipeline ----------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("compression", ["gzip", None])
def test_a_traced_app_reaches_the_receiver_as_one_trace(
    receiver: OTLPReceiver, protocol: str, compression: str | None
) -> None:
    exporter = OTLPExporter(receiver.endpoint, protocol=protocol, compression=compression, headers={"x-api-key": "k1"})
    t = Tracer(project="proj", source="test", exporter=exporter, instrument=False, spool=False)
    with t.session("one request") as session, t.span("outer", event_type="chain"):
        with t.span("inner", event_type="tool", inputs={"q": 1}) as inner:
            inner.update(outputs={"a": 2})
        with pytest.raises(KeyError), t.span("broken"):
            raise KeyError("missing")
    assert t.flush(5.0)
    t.shutdown()
    assert receiver.wait_for(3)
    headers = receiver.requests[0]
    assert headers["x-api-key"] == "k1"
    assert headers.get("content-encoding") == ("gzip" if compression else None)
    spans = {s.name: s for s in receiver.spans}
    assert set(spans) == {"outer", "inner", "broken"}
    assert {s.trace_id for s in spans.values()} == {uuid.UUID(session.session_id).hex}
    assert spans["inner"].parent_span_id == spans["outer"].span_id == spans["broken"].parent_span_id
    assert spans["outer"].parent_span_id == ""
    assert orjson.loads(spans["inner"].attributes["honeyhive_outputs"]) == {"a": 2}
    assert spans["broken"].status_code == 2 and "KeyError" in spans["broken"].status_message
    assert spans["outer"].resource["service.name"] == "proj"
    stats = t.stats()
    assert stats["sent"] == 3


def test_503_then_ok_and_429_with_retry_after_deliver_everything_once(receiver: OTLPReceiver) -> None:
    receiver.fail(503)
    receiver.fail(429, retry_after="0")
    exporter = OTLPExporter(receiver.endpoint, base_delay=0.01, max_delay=0.02)
    (result,) = exporter.export_batches([_batch(_tree())])
    assert isinstance(result, ExportResult)
    assert (result.delivered, result.failed, result.retried_requests) == (3, 0, 2)
    assert len(receiver.requests) == 3 and len(receiver.spans) == 3
    assert len({s.span_id for s in receiver.spans}) == 3
    exporter.shutdown()


def test_another_4xx_is_not_retried_and_logged_once_with_the_body(
    receiver: OTLPReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.fail(400, times=2)
    exporter = OTLPExporter(receiver.endpoint, base_delay=0.01)
    with caplog.at_level(logging.WARNING, logger="tracer"):
        results = exporter.export_batches([_batch(_tree()), _batch(_tree())])
    assert [(r.delivered, r.failed, r.reason, r.retry_events) for r in results if isinstance(r, ExportResult)] == [
        (0, 3, "rejected", ())
    ] * 2
    assert len(receiver.requests) == 1  # the two batches in one request, not sent again
    assert [r.failed_requests for r in results if isinstance(r, ExportResult)] == [1, 0]  # stats() count requests
    logged = [r.getMessage() for r in caplog.records if r.name == "tracer" and "HTTP 400" in r.getMessage()]
    assert len(logged) == 1 and "programmed fault" in logged[0]
    exporter.shutdown()


def _ids_of(spans: list[ReceivedSpan]) -> list[str]:
    return sorted(span_to_event(_as_mapping_span(span))[0]["event_id"] for span in spans)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_batches_of_one_export_share_requests_up_to_4096_spans(receiver: OTLPReceiver, protocol: str) -> None:
    def batch(count: int) -> Batch:
        sid = str(uuid.uuid4())
        return _batch([_event(sid, event_name=f"step-{index}") for index in range(count)])

    batches = [batch(1000) for _ in range(5)] + [batch(1)]
    exporter = OTLPExporter(receiver.endpoint, protocol=protocol)
    results = exporter.export_batches(batches)
    assert [(r.delivered, r.failed) for r in results if isinstance(r, ExportResult)] == [(len(b), 0) for b in batches]
    # 4 x 1,000 fit one request (4,096 at most); the fifth batch of 1,000 and the last one of 1
    # go in a second.
    assert len(receiver.requests) == len(receiver.bodies) == 2
    sent = [span_to_event(_as_mapping_span(span))[0] for span in receiver.spans]
    assert len(sent) == 5001
    assert sorted(e["event_id"] for e in sent) == sorted(
        orjson.loads(raw)["event_id"] for b in batches for raw in b.encoded
    )
    # each event keeps its own session (trace) and fields in a shared request
    by_id = {orjson.loads(raw)["event_id"]: orjson.loads(raw) for b in batches for raw in b.encoded}
    for event in sent:
        assert event["session_id"] == by_id[event["event_id"]]["session_id"]
        assert event["event_name"] == by_id[event["event_id"]]["event_name"]
    exporter.shutdown()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_shared_request_refused_as_too_large_goes_again_one_batch_per_request(
    receiver: OTLPReceiver, protocol: str
) -> None:
    receiver.fail(413)
    batches = [_batch(_tree()) for _ in range(3)]
    exporter = OTLPExporter(receiver.endpoint, protocol=protocol)
    results = exporter.export_batches(batches)
    assert [(r.delivered, r.failed, r.reason) for r in results if isinstance(r, ExportResult)] == [(3, 0, None)] * 3
    assert len(receiver.requests) == 4  # the shared one (413), then one per batch
    assert len(receiver.spans) == 9
    assert _ids_of(receiver.spans) == sorted(orjson.loads(raw)["event_id"] for b in batches for raw in b.encoded)
    exporter.shutdown()


def test_a_413_for_a_single_batch_is_a_refusal_not_a_loop(receiver: OTLPReceiver) -> None:
    receiver.fail(413, times=2)
    exporter = OTLPExporter(receiver.endpoint)
    (result,) = exporter.export_batches([_batch(_tree())])
    assert isinstance(result, ExportResult)
    assert (result.delivered, result.failed, result.reason) == (0, 3, "rejected")
    assert len(receiver.requests) == 1
    exporter.shutdown()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_partial_success_of_a_shared_request_counts_each_rejected_span_once(
    receiver: OTLPReceiver, protocol: str
) -> None:
    receiver.partial(4, "4 spans too old")
    exporter = OTLPExporter(receiver.endpoint, protocol=protocol)
    results = exporter.export_batches([_batch(_tree()) for _ in range(3)])
    outcomes = [(r.delivered, r.failed, r.reason, r.retry_events) for r in results if isinstance(r, ExportResult)]
    # the endpoint names no spans: the count is taken from the first batches on, never re-sent
    assert outcomes == [(0, 3, "rejected", ()), (2, 1, "rejected", ()), (3, 0, None, ())]
    assert len(receiver.requests) == 1
    exporter.shutdown()


def test_an_unreachable_endpoint_gives_every_batch_of_a_shared_request_back() -> None:
    exporter = OTLPExporter(dead_url(), max_attempts=1, export_timeout=2.0)
    results = exporter.export_batches([_batch(_tree()) for _ in range(3)])
    assert [(r.delivered, r.failed, r.retry_events) for r in results if isinstance(r, ExportResult)] == [
        (0, 3, (0, 1, 2))
    ] * 3
    assert [r.failed_requests for r in results if isinstance(r, ExportResult)] == [1, 0, 0]
    exporter.shutdown()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_partial_success_is_counted_and_logged_not_sent_again(
    receiver: OTLPReceiver, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.partial(2, "2 spans too old")
    exporter = OTLPExporter(receiver.endpoint, protocol=protocol)
    with caplog.at_level(logging.WARNING, logger="tracer"):
        (result,) = exporter.export_batches([_batch(_tree())])
    assert isinstance(result, ExportResult)
    assert (result.delivered, result.failed, result.reason, result.retry_events) == (1, 2, "rejected", ())
    assert len(receiver.requests) == 1
    assert any("2 spans too old" in r.getMessage() for r in caplog.records if r.name == "tracer")
    exporter.shutdown()


def test_partial_success_through_the_pipeline_is_counted_rejected(receiver: OTLPReceiver) -> None:
    receiver.partial(1, "one refused")
    t = Tracer(project="p", source="test", exporter=OTLPExporter(receiver.endpoint), instrument=False, spool=False)
    with t.span("a"), t.span("b"):
        pass
    t.flush(5.0)  # False: not everything was delivered
    stats = t.stats()
    t.shutdown()
    assert (stats["sent"], stats["dropped"]["rejected"]) == (1, 1)


def test_a_503_with_retry_after_that_outlasts_the_export_reports_the_wait(receiver: OTLPReceiver) -> None:
    receiver.fail(503, retry_after="30", times=3)
    exporter = OTLPExporter(receiver.endpoint, max_retry_after=60.0)
    (result,) = exporter.export_batches([_batch(_tree())], timeout=1.0)
    assert isinstance(result, ExportResult)
    assert (result.failed, result.reason, result.retry_events) == (3, "export_failed", (0, 1, 2))
    assert result.retry_after == 30.0 and len(receiver.requests) == 1  # no retry inside the deadline
    exporter.shutdown()


def test_an_unreachable_endpoint_gives_every_event_back_for_the_spool() -> None:
    exporter = OTLPExporter(dead_url() + "/v1/traces", base_delay=0.01, max_delay=0.02, max_attempts=2)
    (result,) = exporter.export_batches([_batch(_tree())], timeout=2.0)
    assert isinstance(result, ExportResult)
    assert (result.delivered, result.failed, result.reason, result.retry_events) == (0, 3, "export_failed", (0, 1, 2))
    assert result.failed_requests == 1 and result.last_error
    exporter.shutdown()


def test_events_kept_in_the_spool_reach_the_receiver_once_it_is_back(tmp_path: Any) -> None:
    receiver = OTLPReceiver()
    port = receiver.port
    receiver.close()  # down: nothing listens on the port
    endpoint = f"http://127.0.0.1:{port}/v1/traces"
    exporter = OTLPExporter(endpoint, base_delay=0.01, max_delay=0.02, max_attempts=2, export_timeout=1.0)
    t = Tracer(project="p", source="test", exporter=exporter, instrument=False, spool=str(tmp_path / "spool.db"))
    for index in range(20):
        with t.span(f"s{index}"):
            pass
    t.flush(3.0)
    assert t.stats()["sent"] == 0
    t.shutdown(3.0)
    # The receiver comes back; a new tracer on the same spool (a restarted app) sends what was kept.
    back = OTLPReceiver(port)
    try:
        again = Tracer(
            project="p",
            source="test",
            exporter=OTLPExporter(endpoint, base_delay=0.01),
            instrument=False,
            spool=str(tmp_path / "spool.db"),
        )
        assert back.wait_for(20)
        again.shutdown(3.0)
        names = [s.name for s in back.spans]
        assert sorted(names) == sorted(f"s{index}" for index in range(20))
    finally:
        back.close()


def test_a_hanging_receiver_never_blocks_the_app_and_loses_nothing(receiver: OTLPReceiver) -> None:
    receiver.hang(1.5)
    t = Tracer(
        project="p",
        source="test",
        exporter=OTLPExporter(receiver.endpoint, timeout=5.0),
        instrument=False,
        spool=False,
        first_flush_interval=0.01,
        flush_interval=0.01,
    )
    with t.span("first"):
        pass
    t.flush(0.05)  # the worker now waits on the hanging request
    done = threading.Event()

    def app() -> None:
        for index in range(200):
            with t.span(f"during-{index}"):
                pass
        done.set()

    thread = threading.Thread(target=app)
    thread.start()
    # The app's 200 spans complete while the receiver still hangs (it answers after 1.5 s).
    assert done.wait(1.0)
    assert len(receiver.spans) == 0
    assert t.flush(10.0)
    t.shutdown()
    assert receiver.wait_for(201)
    names = [s.name for s in receiver.spans]
    assert len(names) == 201 == len(set(names))


# -- configuration ---------------------------------------------------------------------------------


def test_invalid_settings_fail_at_init_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match="protocol"):
        OTLPExporter("http://127.0.0.1:9/v1/traces", protocol="grpc")
    with pytest.raises(ConfigError, match="compression"):
        OTLPExporter("http://127.0.0.1:9/v1/traces", compression="zstd")
    with pytest.raises(ConfigError, match="endpoint"):
        OTLPExporter("localhost:4318")
    with pytest.raises(ConfigError, match=r"^OTLPExporter: max_attempts"):
        OTLPExporter("http://127.0.0.1:9/v1/traces", max_attempts=0)
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_PROTOCOL"):
        otlp_exporter_from_env(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "p", 30
        )
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_HEADERS"):
        otlp_exporter_from_env(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_EXPORTER_OTLP_HEADERS": "novalue"}, "p", 30
        )
    with pytest.raises(ConfigError, match=r"OTEL_EXPORTER_OTLP_HEADERS.*'x-key'.*CR, LF"):  # would split the request
        otlp_exporter_from_env(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_EXPORTER_OTLP_HEADERS": "x-key=a%0D%0AHost: x"}, "p", 30
        )
    with pytest.raises(ConfigError, match="header name 'a b'"):
        OTLPExporter("http://127.0.0.1:9/v1/traces", headers={"a b": "c"})
    with pytest.raises(ConfigError, match="headers must be a mapping"):
        OTLPExporter("http://127.0.0.1:9/v1/traces", headers="api-key=1")  # type: ignore[arg-type]


def test_protobuf_without_the_otlp_extra_is_a_config_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # The package is installed here: hide it as if the extra were missing (None in sys.modules: ImportError).
    monkeypatch.setitem(sys.modules, "opentelemetry.proto.collector.trace.v1.trace_service_pb2", None)
    with pytest.raises(ConfigError, match=r"tracer-ai\[otlp\]"):
        OTLPExporter("http://127.0.0.1:9/v1/traces")
    with pytest.raises(ConfigError, match=r"OTEL_EXPORTER_OTLP_PROTOCOL.*tracer-ai\[otlp\]"):
        otlp_exporter_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}, "p", 30)
    OTLPExporter("http://127.0.0.1:9/v1/traces", protocol="http/json").shutdown()  # JSON needs nothing


def test_headers_are_url_decoded_key_value_lists() -> None:
    assert parse_headers("api-key=a%20b%3D,x-team = t1 ,", "H") == {"api-key": "a b=", "x-team": "t1"}


def test_the_standard_variables_select_and_configure_the_exporter() -> None:
    assert otlp_exporter_from_env({}, "p", 30) is None
    base = otlp_exporter_from_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318/",
            "OTEL_EXPORTER_OTLP_HEADERS": "a=1,b=2",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "b=3",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json",
            "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
        },
        "p",
        30,
    )
    assert base is not None
    assert base.endpoint == "http://127.0.0.1:4318/v1/traces"
    assert (base.protocol, base.compression) == ("http/json", "gzip")
    base.shutdown()
    specific = otlp_exporter_from_env(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b/custom"}, "p", 30
    )
    assert specific is not None and specific.endpoint == "http://b/custom" and specific.compression is None
    specific.shutdown()


def test_init_sends_to_the_variables_endpoint_alongside_honeyhive_and_the_store(
    receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = receiver.endpoint.removesuffix("/v1/traces")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", base)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20k")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "checkout")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "team=ml,region=eu%2Dwest")
    t = Tracer(project="p", source="prod", instrument=False, spool=False)
    try:
        kinds = [type(e).__name__ for e in t.exporters]
        assert kinds == ["OTLPExporter", "SQLiteExporter"]  # TRACER_STORE is set by the tests' conftest
        with t.span("hello"):
            pass
        assert t.flush(5.0)
        assert receiver.wait_for(1)
        span = receiver.spans[0]
        assert receiver.requests[0]["authorization"] == "Bearer k"
        assert span.resource["service.name"] == "checkout"
        assert (span.resource["team"], span.resource["region"]) == ("ml", "eu-west")
        assert span.resource["deployment.environment.name"] == "prod"
    finally:
        t.shutdown()
    both = Tracer(project="p", api_key="hh-key", server_url=dead_url(), instrument=False, spool=False)
    try:
        assert [type(e) for e in both.exporters][:2] == [HoneyHiveExporter, OTLPExporter]
    finally:
        both.shutdown(0.1)


# -- interop with OpenTelemetry's own exporter ------------------------------------------------------


def test_the_official_exporter_and_ours_give_the_receiver_the_same_span_tree(receiver: OTLPReceiver) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=receiver.endpoint)))
    otel = provider.get_tracer("interop")
    with otel.start_as_current_span("agent"):
        with otel.start_as_current_span("plan"):
            pass
        with otel.start_as_current_span("act"), otel.start_as_current_span("tool-call"):
            pass
    provider.shutdown()
    assert receiver.wait_for(4)
    theirs = list(receiver.spans)
    receiver.spans.clear()

    t = Tracer(project="p", source="test", exporter=OTLPExporter(receiver.endpoint), instrument=False, spool=False)
    with t.span("agent"):
        with t.span("plan"):
            pass
        with t.span("act"), t.span("tool-call"):
            pass
    assert t.flush(5.0)
    t.shutdown()
    assert receiver.wait_for(4)
    ours = list(receiver.spans)

    def tree(spans: list[ReceivedSpan]) -> set[tuple[str, str | None]]:
        names = {s.span_id: s.name for s in spans}
        assert len({s.trace_id for s in spans}) == 1
        return {(s.name, names.get(s.parent_span_id)) for s in spans}

    assert tree(ours) == tree(theirs) == {("agent", None), ("plan", "agent"), ("act", "agent"), ("tool-call", "act")}


# -- into tracer serve's OTLP ingest ----------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tracer_serve_stores_what_the_exporter_sent_as_the_same_events(tmp_path: Any, protocol: str) -> None:
    pytest.importorskip("starlette")
    from tracer.store import TraceStore

    from ..processes import Server

    server = Server(tmp_path / "c.db", "--api-key", "k")
    try:
        memory = tracer.InMemoryExporter()
        otlp = OTLPExporter(server.url + "/v1/traces", headers={"Authorization": "Bearer k"}, protocol=protocol)
        t = Tracer(project="p", source="test", exporter=[memory, otlp], instrument=False, spool=False)
        with t.session("served") as session, t.span("agent", event_type="chain", inputs={"q": "why?"}):
            with t.span("llm", event_type="model") as llm:
                llm.update(
                    config={"provider": "openai", "model": "m-1", "temperature": 0.5},
                    outputs={"role": "assistant", "content": "because", "finish_reason": "stop"},
                    metadata={"prompt_tokens": 4, "completion_tokens": 6, "response_id": "r-1"},
                )
            with pytest.raises(ValueError), t.span("lookup"):
                raise ValueError("nope")
        assert t.flush(10.0)
        t.shutdown()
        with TraceStore(server.store) as store:
            stored = {event["event_id"]: event for event in store.session_events(session.session_id)}
        sent = {event["event_id"]: event for event in memory.events if event["session_id"] == session.session_id}
        assert set(stored) == set(sent) and len(sent) == 3
        for event_id, event in sent.items():
            back = stored[event_id]
            for field in ("parent_id", "event_type", "event_name", "source", "start_time", "error"):
                assert back[field] == event[field], field
            for bucket in ("config", "inputs", "outputs", "feedback", "metrics", "user_properties"):
                assert back[bucket] == event[bucket], bucket
            # The collector adds what it knows about the span's origin (resource, scope) under otel.*.
            kept = {key: value for key, value in back["metadata"].items() if not key.startswith("otel.")}
            assert kept == event["metadata"]
    finally:
        assert server.stop() == 0
