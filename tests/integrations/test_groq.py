"""Groq client calls become model events: real ``groq`` SDK against the fake server (its OpenAI-shaped API)."""

from __future__ import annotations

import asyncio
import gc
import importlib
import importlib.util
from collections.abc import Iterator
from typing import Any

import pytest

import tracer
from tracer import integrations
from tracer.testing import CapturedEvents

from ..fake_llm_server import FakeLLMServer
from .conftest import USER, model_events, only_model_event

groq = pytest.importorskip("groq")

HAS_EMBEDDINGS = importlib.util.find_spec("groq.resources.embeddings") is not None


@pytest.fixture
def client(server: FakeLLMServer) -> Iterator[Any]:
    made = groq.Groq(base_url=server.url, api_key="gsk-test", max_retries=0)
    yield made
    made.close()


def test_chat_create_is_one_model_event_under_the_current_span(events: CapturedEvents, client: Any) -> None:
    with tracer.span("agent", event_type="chain"):
        reply = client.chat.completions.create(model="llama-3.3-70b", messages=USER, temperature=0.1)
    assert reply.choices[0].message.content == "Hello!"
    event = only_model_event(events)
    assert event["event_name"] == "groq.chat.completions.create"
    assert event["parent_id"] == events.by_name("agent")["event_id"]
    assert (event["config"]["provider"], event["config"]["model"]) == ("groq", "llama-3.3-70b")
    assert event["config"]["temperature"] == 0.1
    assert event["inputs"]["chat_history"] == USER
    assert event["outputs"] == {"role": "assistant", "content": "Hello!", "finish_reason": "stop"}
    metadata = event["metadata"]
    assert (metadata["prompt_tokens"], metadata["completion_tokens"], metadata["total_tokens"]) == (11, 2, 13)
    assert metadata["response_id"] == "chatcmpl-1"


def test_tool_call(events: CapturedEvents, client: Any) -> None:
    client.chat.completions.create(model="llama-tools", messages=USER)
    outputs = only_model_event(events)["outputs"]
    assert outputs["finish_reason"] == "tool_calls"
    assert outputs["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}


def test_stream_is_one_event_with_ttft_and_x_groq_usage(events: CapturedEvents, client: Any) -> None:
    stream = client.chat.completions.create(model="llama", messages=USER, stream=True)
    assert isinstance(stream, groq.Stream)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices) == "Hello!"
    event = only_model_event(events)
    assert event["config"]["stream"] is True
    assert event["outputs"]["content"] == "Hello!"
    assert event["metrics"]["time_to_first_token_ms"] > 0
    assert event["metadata"]["total_tokens"] == 13  # from the last chunk's x_groq.usage
    assert "ended_early" not in event["metadata"]


def test_stream_closed_early(events: CapturedEvents, client: Any) -> None:
    with client.chat.completions.create(model="llama-long", messages=USER, stream=True) as stream:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                break
    event = only_model_event(events)
    assert (event["metadata"]["end_reason"], event["outputs"]["content"]) == ("closed", "tok0 ")


def test_http_error_is_recorded_and_reraised_unchanged(events: CapturedEvents, client: Any) -> None:
    with pytest.raises(groq.RateLimitError) as caught:
        client.chat.completions.create(model="error-429", messages=USER)
    assert caught.value.status_code == 429
    event = only_model_event(events)
    assert event["error"].startswith("RateLimitError")
    assert (event["metadata"]["status_code"], event["metadata"]["error_message"]) == (429, "rate limited")


def test_async_create_stream_and_error(events: CapturedEvents, server: FakeLLMServer) -> None:
    async def main() -> None:
        client = groq.AsyncGroq(base_url=server.url, api_key="gsk-test", max_retries=0)
        with tracer.span("task", event_type="chain"):
            await client.chat.completions.create(model="llama", messages=USER)
            stream = await client.chat.completions.create(model="llama", messages=USER, stream=True)
            assert isinstance(stream, groq.AsyncStream)
            async for _chunk in stream:
                pass
            with pytest.raises(groq.InternalServerError):
                await client.chat.completions.create(model="error-500", messages=USER)
        await client.close()

    asyncio.run(main())
    created, streamed, failed = model_events(events)
    task = events.by_name("task")["event_id"]
    assert {created["parent_id"], streamed["parent_id"], failed["parent_id"]} == {task}
    assert created["outputs"]["content"] == streamed["outputs"]["content"] == "Hello!"
    assert streamed["metadata"]["total_tokens"] == 13
    assert failed["metadata"]["status_code"] == 500


@pytest.mark.skipif(not HAS_EMBEDDINGS, reason="no embeddings in this groq")
def test_embeddings(events: CapturedEvents, client: Any) -> None:
    client.embeddings.create(model="nomic-embed", input=["a", "b"])
    event = only_model_event(events)
    assert (event["event_name"], event["config"]["provider"]) == ("groq.embeddings.create", "groq")
    assert event["inputs"]["input"] == ["a", "b"]
    assert event["outputs"]["embeddings"] == 2


def test_capture_content_false(client: Any) -> None:
    with tracer.testing.capture(capture_content=False) as captured:
        client.chat.completions.create(model="llama", messages=USER)
    event = only_model_event(captured)
    assert event["inputs"] in ({}, None)
    assert event["outputs"] == {"finish_reason": "stop"}
    assert event["metadata"]["total_tokens"] == 13


def test_uninstrument_and_instrument_again(events: CapturedEvents, client: Any) -> None:
    module = importlib.import_module("groq.resources.chat.completions")
    wrapped = module.Completions.__dict__["create"]
    try:
        assert integrations.uninstrument("groq") == ["groq"]
        assert module.Completions.__dict__["create"] is wrapped.__wrapped__
        client.chat.completions.create(model="llama", messages=USER)
        assert model_events(events) == []
    finally:
        integrations.instrument("groq")
    client.chat.completions.create(model="llama", messages=USER)
    assert len(model_events(events)) == 1
    gc.collect()
