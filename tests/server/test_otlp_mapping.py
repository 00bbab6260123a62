"""The span ↔ event mapping (tracer/_otlp_mapping.py): HoneyHive's rules, and the round trip."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from tracer._otlp_mapping import (
    STATUS_ERROR,
    Span,
    SpanEvent,
    event_id_for,
    event_to_span,
    span_to_event,
)

TRACE = "0af7651916cd43dd8448eb211c80319c"
ROOT, CHILD = "b7ad6b7169203331", "00f067aa0ba902b7"
T0 = 1_700_000_000_000


def span(attributes: dict[str, Any] | None = None, **fields: Any) -> Span:
    values: dict[str, Any] = {
        "trace_id": TRACE,
        "span_id": CHILD,
        "name": "work",
        "start_time_unix_nano": T0 * 1_000_000 + 250_000,
        "end_time_unix_nano": T0 * 1_000_000 + 42_750_000,
        "attributes": attributes or {},
    }
    values.update(fields)
    return Span(**values)


@pytest.mark.parametrize(
    ("attributes", "event_type"),
    [
        ({}, "tool"),
        ({"honeyhive_event_type": "chain", "gen_ai.operation.name": "chat"}, "chain"),
        ({"honeyhive_event_type": "bogus", "gen_ai.operation.name": "chat"}, "model"),
        ({"gen_ai.operation.name": "embeddings"}, "model"),
        ({"gen_ai.operation.name": "invoke_agent", "openinference.span.kind": "LLM"}, "chain"),
        ({"gen_ai.operation.name": "execute_tool"}, "tool"),
        ({"openinference.span.kind": "LLM"}, "model"),
        ({"openinference.span.kind": "AGENT"}, "chain"),
        ({"openinference.span.kind": "RETRIEVER"}, "tool"),
        ({"traceloop.span.kind": "workflow"}, "chain"),
    ],
)
def test_event_type_follows_honeyhives_order(attributes: dict[str, Any], event_type: str) -> None:
    assert span_to_event(span(attributes))[0]["event_type"] == event_type


def test_ids_times_and_the_session() -> None:
    root, session = span_to_event(span(span_id=ROOT))
    child, _ = span_to_event(span(parent_span_id=ROOT))
    assert session == {"session_id": str(uuid.UUID(TRACE))}  # no session named: the trace is the session
    assert root["session_id"] == child["session_id"] == str(uuid.UUID(TRACE))
    assert root["parent_id"] == root["session_id"]
    assert child["parent_id"] == root["event_id"] == event_id_for(TRACE, ROOT)
    assert child["event_id"] == span_to_event(span(parent_span_id=ROOT))[0]["event_id"]  # stable on retry
    assert (child["start_time"], child["end_time"], child["duration"]) == (T0, T0 + 42, 42.5)
    named, session = span_to_event(
        span(
            {"traceloop.association.properties.session_id": "s-1", "honeyhive.project": "p"},
            resource={"honeyhive.source": "svc", "service.name": "api"},
        )
    )
    assert session == {"session_id": "s-1", "project": "p", "source": "svc"}
    assert (named["session_id"], named["project"], named["source"]) == ("s-1", "p", "svc")
    assert named["metadata"]["otel.resource"] == {"service.name": "api"}


def test_honeyhive_buckets_are_rebuilt_into_nested_objects() -> None:
    event, _ = span_to_event(
        span(
            {
                "honeyhive_event_name": "answer",
                "honeyhive_inputs._params_.q": "hi",
                "honeyhive_inputs.chat_history.0.role": "user",
                "honeyhive_inputs.chat_history.0.content": "hello",
                "honeyhive_inputs.chat_history.1.role": "assistant",
                "honeyhive_outputs.result": "ok",
                "honeyhive_config.model": "m",
                "honeyhive_metadata.k": "1",
                "honeyhive_metrics.score": 0.5,
                "honeyhive_feedback.rating": 4,
                "honeyhive_user_properties.user": "u",
                "honeyhive_error": "Boom",
                "http.method": "GET",
            }
        )
    )
    assert event["event_name"] == "answer" and event["error"] == "Boom"
    assert event["inputs"] == {
        "_params_": {"q": "hi"},
        "chat_history": [{"role": "user", "content": "hello"}, {"role": "assistant"}],
    }
    assert event["outputs"] == {"result": "ok"} and event["config"] == {"model": "m"}
    assert event["metrics"] == {"score": 0.5} and event["feedback"] == {"rating": 4}
    assert event["user_properties"] == {"user": "u"}
    assert event["metadata"] == {"k": "1", "http.method": "GET"}  # what is not mapped is kept


def test_gen_ai_semantic_conventions_make_a_model_event() -> None:
    current, _ = span_to_event(
        span(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.system": "openai",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.request.temperature": 0.2,
                "gen_ai.input.messages": orjson.dumps(
                    [{"role": "user", "parts": [{"type": "text", "content": "2+2?"}]}]
                ).decode(),
                "gen_ai.output.messages": orjson.dumps(
                    [{"role": "assistant", "parts": [{"type": "text", "content": "4"}], "finish_reason": "stop"}]
                ).decode(),
                "gen_ai.usage.input_tokens": 9,
                "gen_ai.usage.output_tokens": 1,
            }
        )
    )
    assert current["event_type"] == "model"
    assert current["config"] == {"provider": "openai", "model": "gpt-4o-mini", "temperature": 0.2}
    assert current["inputs"] == {"chat_history": [{"role": "user", "content": "2+2?"}]}
    assert current["outputs"] == {"role": "assistant", "content": "4", "finish_reason": "stop"}
    assert current["metadata"]["prompt_tokens"] == 9 and current["metadata"]["completion_tokens"] == 1
    older, _ = span_to_event(
        span(
            {
                "gen_ai.system": "anthropic",
                "gen_ai.prompt.0.role": "system",
                "gen_ai.prompt.0.content": "be brief",
                "gen_ai.prompt.1.role": "user",
                "gen_ai.prompt.1.content": "hi",
                "gen_ai.completion.0.role": "assistant",
                "gen_ai.completion.0.content": "hello",
                "gen_ai.usage.prompt_tokens": 5,
                "gen_ai.usage.completion_tokens": 2,
                "llm.request.type": "chat",
            },
            events=[SpanEvent("gen_ai.content.prompt", 1, {"x": 1})],
        )
    )
    assert older["inputs"]["chat_history"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]
    assert older["outputs"] == {"role": "assistant", "content": "hello"}
    assert (older["metadata"]["prompt_tokens"], older["metadata"]["completion_tokens"]) == (5, 2)
    assert older["metadata"]["llm.request.type"] == "chat"
    assert older["metadata"]["otel.events"] == [
        {"name": "gen_ai.content.prompt", "time_unix_nano": 1, "attributes": {"x": 1}}
    ]
    events, _ = span_to_event(
        span(
            {"gen_ai.operation.name": "chat"},
            events=[
                SpanEvent("gen_ai.user.message", 1, {"content": "hi"}),
                SpanEvent("gen_ai.choice", 2, {"index": 0, "message": '{"role": "assistant", "content": "yo"}'}),
            ],
        )
    )
    assert events["inputs"] == {"chat_history": [{"role": "user", "content": "hi"}]}
    assert events["outputs"] == {"role": "assistant", "content": "yo", "index": 0}


def test_openinference_and_traceloop_keys() -> None:
    llm, _ = span_to_event(
        span(
            {
                "openinference.span.kind": "LLM",
                "llm.model_name": "claude",
                "llm.invocation_parameters": '{"max_tokens": 10}',
                "llm.input_messages.0.message.role": "user",
                "llm.input_messages.0.message.content": "q",
                "llm.output_messages.0.message.role": "assistant",
                "llm.output_messages.0.message.content": "a",
                "llm.token_count.prompt": 3,
                "llm.token_count.completion": 4,
                "llm.token_count.total": 7,
            }
        )
    )
    assert llm["event_type"] == "model" and llm["config"] == {"model": "claude", "max_tokens": 10}
    assert llm["inputs"] == {"chat_history": [{"role": "user", "content": "q"}]}
    assert llm["outputs"] == {"role": "assistant", "content": "a"}
    assert llm["metadata"]["total_tokens"] == 7
    chain, _ = span_to_event(
        span({"openinference.span.kind": "CHAIN", "input.value": '{"question": "x"}', "output.value": "y"})
    )
    assert chain["inputs"] == {"question": "x"} and chain["outputs"] == {"value": "y"}
    task, _ = span_to_event(span({"traceloop.span.kind": "task", "traceloop.entity.input": '{"args": [1]}'}))
    assert task["inputs"] == {"args": [1]}


def test_errors_from_exception_events_and_status() -> None:
    raised = SpanEvent(
        "exception", 5, {"exception.type": "ValueError", "exception.message": "bad", "exception.stacktrace": "..."}
    )
    assert span_to_event(span(events=[raised], status_code=STATUS_ERROR))[0]["error"] == "ValueError: bad"
    assert span_to_event(span(status_code=STATUS_ERROR, status_message="timeout"))[0]["error"] == "timeout"
    assert span_to_event(span(status_code=STATUS_ERROR))[0]["error"] == "error"
    assert "error" not in span_to_event(span())[0]


@pytest.mark.parametrize(
    "event",
    [
        {
            "event_id": str(uuid.uuid4()),
            "session_id": "3f1c7f7e-6f7c-4a7b-9f5e-0e2f4d5c6b7a",
            "parent_id": "3f1c7f7e-6f7c-4a7b-9f5e-0e2f4d5c6b7a",
            "event_type": "chain",
            "event_name": "answer",
            "source": "app",
            "project": "p",
            "start_time": T0,
            "end_time": T0 + 12,
            "duration": 12.345678,
            "config": {},
            "inputs": {"q": "hi", "opts": {"deep": [1, 2, 3], "empty": {}}, "none": []},
            "outputs": {"result": "ok"},
            "metadata": {"k": 1, "flag": True},
            "metrics": {},
            "feedback": {},
            "user_properties": {"u": "x"},
        },
        {
            "event_id": str(uuid.uuid4()),
            "session_id": "not-a-uuid-session",
            "parent_id": str(uuid.uuid4()),
            "event_type": "model",
            "event_name": "generate",
            "start_time": T0,
            "end_time": T0,
            "duration": 0.25,
            "error": "RateLimitError: slow down",
            "config": {"model": "m", "provider": "openai"},
            "inputs": {"chat_history": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
            "outputs": {"role": "assistant", "content": "c", "tool_calls": [{"id": "1", "function": {"name": "f"}}]},
            "metadata": {"prompt_tokens": 3, "completion_tokens": 4, "cost": 0.5},
            "metrics": {"score": 0.5},
            "feedback": {"rating": 1},
            "user_properties": {},
        },
    ],
)
def test_an_event_survives_the_round_trip(event: dict[str, Any]) -> None:
    back, session = span_to_event(event_to_span(event))
    assert session["session_id"] == event["session_id"]
    for name in ("source", "project"):
        assert back.get(name) == event.get(name)
    back.pop("source", None)
    back.pop("project", None)
    expected = {key: value for key, value in event.items() if key not in ("source", "project")}
    assert back == expected


def test_a_foreign_span_survives_the_round_trip() -> None:
    original = span(
        {"gen_ai.operation.name": "execute_tool", "honeyhive_inputs.x": 1, "custom": "v"},
        parent_span_id=ROOT,
        kind=3,
        scope_name="lib",
        resource={"service.name": "api"},
        events=[SpanEvent("note", 7, {"a": 1})],
    )
    event, _ = span_to_event(original)
    again = event_to_span(event)
    assert (again.trace_id, again.span_id, again.parent_span_id) == (TRACE, CHILD, ROOT)
    # Events hold milliseconds since the epoch (HoneyHive's unit) and a sub-millisecond duration.
    assert again.start_time_unix_nano // 1_000_000 == original.start_time_unix_nano // 1_000_000
    assert again.end_time_unix_nano - again.start_time_unix_nano == 42_500_000
    assert (again.kind, again.scope_name, again.resource, again.events) == (
        3,
        "lib",
        {"service.name": "api"},
        original.events,
    )
    assert span_to_event(again)[0] == event
