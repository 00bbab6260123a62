"""Event fields shaped on the worker thread (``tracer._deferred``), as the LLM integrations use them."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import pytest

from tracer._deferred import SIZE_ESTIMATE, Deferred
from tracer._span import attach_deferred

from ..conftest import Recorder


class Shaped(Deferred):
    """Returns fixed fields and notes the thread that shaped them."""

    __slots__ = ("fields", "threads")

    def __init__(self, fields: dict[str, Mapping[str, Any] | None]) -> None:
        super().__init__()
        self.fields = fields
        self.threads: list[str] = []

    def shape(self) -> dict[str, Mapping[str, Any] | None]:
        self.threads.append(threading.current_thread().name)
        return self.fields


class Failing(Deferred):
    __slots__ = ()

    def shape(self) -> dict[str, Mapping[str, Any] | None]:
        raise RuntimeError("shape failed")


def test_fields_are_shaped_by_the_worker_and_merged_under_the_spans_own(batch_rec: Recorder) -> None:
    shaped = Shaped(
        {
            "config": {"model": "m"},
            "inputs": {"chat_history": [{"role": "user", "content": "hi"}]},
            "outputs": {"content": "hello"},
            "metadata": {"total_tokens": 3, "source_of": "shape"},
        }
    )
    with batch_rec.tracer.span("call", event_type="model") as span:
        span.update(metadata={"source_of": "span"}, metrics={"ttft_ms": 1.5})
        attach_deferred(span, shaped)
    assert shaped.threads == []  # nothing shaped while the caller ends the span
    event = batch_rec.by_name("call")
    assert shaped.threads == ["tracer-worker"]
    assert event["config"] == {"model": "m"}
    assert event["inputs"] == {"chat_history": [{"role": "user", "content": "hi"}]}
    assert event["outputs"] == {"content": "hello"}
    assert event["metadata"] == {"total_tokens": 3, "source_of": "span"}  # the span's own keys win
    assert event["metrics"] == {"ttft_ms": 1.5}


def test_a_deferred_event_is_charged_an_estimate_until_shaped() -> None:
    held = Recorder(batch=True, first_flush_interval=60, flush_interval=60)  # nothing leaves before flush()
    try:
        with held.tracer.span("call", event_type="model") as span:
            attach_deferred(span, Shaped({"outputs": {"content": "x"}}))
        queued_events, queued_bytes = held.tracer._processor.queue_size()
        assert (queued_events, queued_bytes >= SIZE_ESTIMATE) == (1, True)
        assert held.by_name("call")["outputs"] == {"content": "x"}
        assert held.tracer._processor.queue_size() == (0, 0)
    finally:
        held.tracer.shutdown(2.0)


def test_a_failing_shape_keeps_the_event_with_the_spans_own_fields(
    batch_rec: Recorder, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("TRACER_RAISE_INTERNAL_ERRORS")  # as in a user's app: logged, not raised
    with caplog.at_level(logging.ERROR, logger="tracer"):
        with batch_rec.tracer.span("call", event_type="model") as span:
            span.update(metadata={"kept": True})
            attach_deferred(span, Failing())
        event = batch_rec.by_name("call")
    assert event["metadata"] == {"kept": True}
    assert event["outputs"] == {}
    assert any("shaping an LLM event" in record.getMessage() for record in caplog.records)
