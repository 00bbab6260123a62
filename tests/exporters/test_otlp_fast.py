"""The OTLP exporter's fast writer (``tracer/exporters/_otlp_fast.py``, from ``Batch.parts``) and its
hand-written protobuf against the reference: the event decoded from its JSON, mapped by
``event_to_span`` and encoded with the official ``opentelemetry-proto`` classes
(``tests/otlp_reference.py``). Both requests are decoded with the official classes and compared
whole; batches come from a real ``Tracer`` pipeline."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import tracer
from tracer import Batch, ExportResult, Tracer
from tracer.exporters import OTLPExporter

from ..kept_batches import KeepBatches
from ..otlp_receiver import OTLPReceiver, otlp_receiver
from ..otlp_reference import reference_protobuf


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    yield from otlp_receiver()


def _traced(keep: KeepBatches, **options: Any) -> None:
    """A varied set of events, all through the real pipeline."""
    t = Tracer(project="proj", source="staging", exporter=keep, instrument=False, spool=False, **options)

    @t.trace
    def step(q: str, ctx: dict[str, Any]) -> dict[str, Any]:
        return {"answer": q.upper(), "n": len(ctx)}

    with t.session("first session"):
        with t.span("agent", event_type="chain", inputs={"q": "why?"}) as root:
            for _ in range(3):
                step("what is it?", {"a": 1, "b": "two", "c": [1, 2]})
            with t.span(
                "openai.chat.completions",
                event_type="model",
                config={"provider": "openai", "model": "gpt-4o-mini", "temperature": 0.2, "max_tokens": 50},
                inputs={"chat_history": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]},
                metadata={"prompt_tokens": 12, "completion_tokens": 3, "response_model": "gpt-4o-mini-2024"},
            ) as model:
                model.update(
                    outputs={"role": "assistant", "content": "hello", "finish_reason": "stop"},
                    metrics={"time_to_first_token_ms": 250.5},
                )
            with pytest.raises(ValueError), t.span("search", event_type="tool"):
                raise ValueError('no results for «ünïcödé» \u2603 "quoted"\n')
            with t.span("unicode ☃ name", inputs={"text": "héllo wörld 𝄞", "emoji": "🙂"}) as span:
                span.update(outputs={"outputs": {"nested": "outputs key inside"}, "x": 1})
            with t.span("large", inputs={"text": "A" * 40_000 + "Z" * 40_000}) as span:
                span.update(outputs={"small": 1})
            with t.span("rare buckets", metadata={"note": "ok", "ratio": 0.5}) as span:
                span.update(
                    feedback={"rating": 5}, user_properties={"user": "u1"}, metrics={"score": 0.9}, config={"k": 1}
                )
            with t.span("dotted metadata", metadata={"http.method": "GET", "plain": 1}):
                pass
            with t.span("empty"):
                pass
            with t.span("outputs only") as span:
                span.update(outputs={"only": True})
        root.update(metadata={"late": True})  # a late update: a PUT body, no span
    with t.session("second session", metadata={"team": "x"}):
        step("again", {})
    carrier: dict[str, str] = {"traceparent": f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"}
    with t.continue_trace(carrier):  # a remote parent from another service
        step("remote", {"a": 1})
    assert t.flush(10)
    t.shutdown()


def _decoded(body: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return request


def _reference(exporter: OTLPExporter, batch: Batch) -> bytes:
    """The request as the exporter wrote it before: decoded JSON, event_to_span, upb messages."""
    plain = Batch(batch.encoded, batch.session_ids, batch.sessions, batch.updates)
    return reference_protobuf(exporter.spans(plain), exporter.max_attribute_length, exporter.max_attributes)


@pytest.mark.parametrize(
    "settings",
    [{}, {"max_attribute_length": 64, "max_attributes": 16}, {"capture_messages": False, "service_name": "svc"}],
    ids=["defaults", "tight-limits", "no-messages"],
)
def test_the_fast_writer_sends_the_same_spans_as_the_reference_path(settings: dict[str, Any]) -> None:
    keep = KeepBatches()
    _traced(keep)
    assert all(batch.parts is not None for batch in keep.batches)
    exporter = OTLPExporter("http://127.0.0.1:9/v1/traces", compression=None, **settings)
    spans = 0
    for batch in keep.batches:
        fast, reference = exporter.encode(batch), _reference(exporter, batch)
        assert _decoded(fast) == _decoded(reference)
        spans += sum(len(s.spans) for r in _decoded(fast).resource_spans for s in r.scope_spans)
    assert spans == sum(len(batch) for batch in keep.batches) == 14
    exporter.shutdown()


def test_the_usual_events_never_take_the_reference_path() -> None:
    keep = KeepBatches()
    t = Tracer(project="proj", exporter=keep, instrument=False, spool=False)

    @t.trace
    def step(q: str, n: int) -> dict[str, Any]:
        return {"answer": q, "n": n}

    with t.session("s"), t.span("outer", event_type="chain"):
        for index in range(50):
            step("q", index)
            with pytest.raises(KeyError), t.span("failing"):
                raise KeyError("x")
    assert t.flush(10)
    t.shutdown()
    exporter = OTLPExporter("http://127.0.0.1:9/v1/traces")
    assert exporter._fast is not None
    for batch in keep.batches:

        def reference(index: int) -> tuple[tuple[str, str], bytes]:
            raise AssertionError(f"event {index} went to the reference path")

        body = exporter._fast.encode(batch, reference)
        assert _decoded(body) == _decoded(_reference(exporter, batch))
    exporter.shutdown()


def test_events_rewritten_by_the_mask_hook_have_no_pieces_and_are_sent_the_same() -> None:
    keep = KeepBatches()
    _traced(keep, mask=lambda event: {**event, "metadata": {"masked": True}})
    assert keep.batches and all(part is None for batch in keep.batches for part in batch.parts or [None])
    exporter = OTLPExporter("http://127.0.0.1:9/v1/traces", compression=None)
    for batch in keep.batches:
        decoded = _decoded(exporter.encode(batch))
        assert decoded == _decoded(_reference(exporter, batch))
    exporter.shutdown()


def test_a_batch_split_in_two_keeps_each_events_pieces() -> None:
    keep = KeepBatches()
    _traced(keep)
    batch = max(keep.batches, key=len)
    first, second = batch.split()
    assert first.parts == (batch.parts or [])[: len(first)] and second.parts == (batch.parts or [])[len(first) :]


def test_requests_go_side_by_side_to_a_far_endpoint(receiver: OTLPReceiver) -> None:
    receiver.latency = 0.05  # a far endpoint: 50 ms per answer
    keep = KeepBatches()
    _traced(keep)
    first = keep.batches[0]
    times = 2100 // len(first) + 1  # over 2,048 spans per batch: no two share a request (4,096 at most)
    big = Batch(first.encoded * times, first.session_ids * times, first.sessions, [], (first.parts or []) * times)
    batches = [big] * 4
    exporter = OTLPExporter(receiver.endpoint, max_in_flight=4)
    results = exporter.export_batches(batches)
    assert all(isinstance(r, ExportResult) and r.ok for r in results)
    assert len(receiver.bodies) == len(batches)
    assert receiver.most_in_flight > 1
    exporter.shutdown()


def test_one_in_flight_sends_one_request_at_a_time(receiver: OTLPReceiver) -> None:
    receiver.latency = 0.02
    keep = KeepBatches()
    _traced(keep)
    exporter = OTLPExporter(receiver.endpoint, max_in_flight=1)
    results = exporter.export_batches([batch for batch in keep.batches for _ in range(3)])
    assert all(isinstance(r, ExportResult) and r.ok for r in results)
    assert receiver.most_in_flight == 1
    exporter.shutdown()


def test_max_in_flight_must_be_a_positive_whole_number() -> None:
    for wrong in (0, -1, 1.5, True):
        with pytest.raises(tracer.ConfigError, match="max_in_flight"):
            OTLPExporter("http://127.0.0.1:9/v1/traces", max_in_flight=wrong)  # type: ignore[arg-type]
