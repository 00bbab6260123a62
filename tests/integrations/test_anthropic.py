"""Anthropic client calls become model events: real ``anthropic`` SDK against the fake server."""

from __future__ import annotations

import asyncio
import gc
import importlib
import importlib.util
import inspect
import json
from typing import Any

import pytest
from pydantic import BaseModel

import tracer
from tracer.testing import CapturedEvents

from ..fake_llm_server import FakeLLMServer
from .conftest import USER, model_events, only_model_event

anthropic = pytest.importorskip("anthropic")

# What the installed release has: the range runs (tests/integrations/ranges.py) test the oldest
# supported one too (0.30), where newer APIs are skipped.
_messages = importlib.import_module("anthropic.resources.messages")
HAS_PARSE = hasattr(_messages.Messages, "parse")
try:
    HAS_BETA_MESSAGES = hasattr(
        importlib.import_module("anthropic.resources.beta.messages.messages").Messages, "stream"
    )
except ImportError:
    HAS_BETA_MESSAGES = False
# Responses carry the request id (``_request_id``) from anthropic 0.3x on.
HAS_REQUEST_ID = "_request_id" in inspect.getsource(importlib.import_module("anthropic._models"))
_CREATE_PARAMETERS = inspect.signature(_messages.Messages.create).parameters
NOT_GIVEN = anthropic.NOT_GIVEN
OMIT = getattr(anthropic, "omit", NOT_GIVEN)
# Sentinels given for parameters this release has (they must not reach the event's config).
SENTINEL_ARGS = {
    name: value
    for name, value in (("service_tier", NOT_GIVEN), ("thinking", OMIT), ("metadata", OMIT))
    if name in _CREATE_PARAMETERS
}

TOOLS = [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
TOOL_CALL = {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}


def tool_calls(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The event's tool calls with their JSON arguments decoded (spacing differs by path)."""
    calls = event["outputs"]["tool_calls"]
    return [
        {**call, "function": {**call["function"], "arguments": json.loads(call["function"]["arguments"])}}
        for call in calls
    ]


def aclient(server: FakeLLMServer) -> Any:
    return anthropic.AsyncAnthropic(base_url=server.url, api_key="sk-test", max_retries=0)


def assert_usage(metadata: dict[str, Any]) -> None:
    # input_tokens 10 + cache reads 4 + cache writes 0; streamed output usage is cumulative (7, not 1 + 7).
    assert (metadata["prompt_tokens"], metadata["completion_tokens"], metadata["total_tokens"]) == (14, 7, 21)
    assert metadata["cache_read_input_tokens"] == 4
    assert metadata["cache_creation_input_tokens"] == 0


def test_messages_create(events: CapturedEvents, claude: Any) -> None:
    with tracer.span("agent", event_type="chain"):
        message = claude.messages.create(
            model="claude-x-tools",
            max_tokens=100,
            system="be brief",
            messages=USER,
            tools=TOOLS,
            tool_choice={"type": "auto"},
            stop_sequences=["END"],
            **SENTINEL_ARGS,
        )
    assert message.stop_reason == "tool_use"
    event = only_model_event(events)
    assert event["event_name"] == "anthropic.messages.create"
    assert event["parent_id"] == events.by_name("agent")["event_id"]
    config = event["config"]
    assert (config["provider"], config["model"], config["max_tokens"]) == ("anthropic", "claude-x-tools", 100)
    assert (config["tool_choice"], config["stop_sequences"]) == ({"type": "auto"}, ["END"])
    assert config["tools"] == TOOLS
    assert not {"service_tier", "thinking", "metadata", "system", "messages"} & set(config)
    assert event["inputs"]["chat_history"] == [{"role": "system", "content": "be brief"}, *USER]
    outputs = event["outputs"]
    assert (outputs["role"], outputs["content"], outputs["finish_reason"]) == ("assistant", "Hello!", "tool_use")
    assert outputs["tool_calls"][0]["function"]["name"] == "get_weather"
    assert outputs["tool_calls"][0]["id"] == "toolu_1"
    assert_usage(event["metadata"])
    assert event["metadata"]["response_id"] == "msg_1"
    assert event["metadata"].get("request_id") == ("req_fake_1" if HAS_REQUEST_ID else None)


def test_create_stream_true(events: CapturedEvents, claude: Any) -> None:
    stream = claude.messages.create(model="claude-x-tools", max_tokens=100, messages=USER, stream=True)
    assert isinstance(stream, anthropic.Stream)
    kinds = [event.type for event in stream]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    event = only_model_event(events)
    assert event["outputs"]["content"] == "Hello!"
    assert tool_calls(event) == [TOOL_CALL]
    assert event["outputs"]["finish_reason"] == "tool_use"
    assert_usage(event["metadata"])
    assert event["metrics"]["time_to_first_token_ms"] > 0
    assert event["metadata"]["request_id"] == "req_fake_1"


def test_stream_helper_text_stream_and_final_message(events: CapturedEvents, claude: Any) -> None:
    with claude.messages.stream(model="claude-x", max_tokens=100, messages=USER, system="be brief") as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello!" and final.content[0].text == "Hello!"
    event = only_model_event(events)
    assert event["event_name"] == "anthropic.messages.stream"
    assert event["config"]["stream"] is True
    assert event["inputs"]["chat_history"][0] == {"role": "system", "content": "be brief"}
    assert event["outputs"] == {"role": "assistant", "content": "Hello!", "finish_reason": "end_turn"}
    assert_usage(event["metadata"])
    assert "ended_early" not in event["metadata"]


def test_stream_helper_get_final_message_only(events: CapturedEvents, claude: Any) -> None:
    with claude.messages.stream(model="claude-x-tools", max_tokens=100, messages=USER, tools=TOOLS) as stream:
        final = stream.get_final_message()
    assert final.content[1].input == {"city": "Paris"}
    assert tool_calls(only_model_event(events)) == [TOOL_CALL]


def test_stream_helper_break(events: CapturedEvents, claude: Any) -> None:
    with claude.messages.stream(model="claude-x-long", max_tokens=100, messages=USER) as stream:
        for index, _text in enumerate(stream.text_stream):
            if index == 1:
                break
        assert model_events(events) == []
    event = only_model_event(events)
    assert event["metadata"]["ended_early"] is True
    assert event["outputs"]["content"] == "tok0 tok1 "


def test_raw_stream_closed_by_with_exit(events: CapturedEvents, claude: Any) -> None:
    """On 0.x the stream is handed back without a proxy (isinstance() rejects one there): closing
    it still ends the event at once."""
    with claude.messages.create(model="claude-x-long", max_tokens=100, messages=USER, stream=True) as stream:
        assert isinstance(stream, anthropic.Stream)
        for event in stream:
            if event.type == "content_block_delta":
                break
        assert model_events(events) == []
    event = only_model_event(events)
    assert (event["metadata"]["end_reason"], event["outputs"]["content"]) == ("closed", "tok0 ")


def test_abandoned_raw_stream(events: CapturedEvents, claude: Any) -> None:
    def read_a_little() -> None:
        stream = claude.messages.create(model="claude-x-long", max_tokens=100, messages=USER, stream=True)
        for event in stream:
            if event.type == "content_block_delta":
                break

    read_a_little()
    gc.collect()
    event = only_model_event(events)
    assert event["metadata"]["end_reason"] == "abandoned"
    assert event["outputs"]["content"] == "tok0 "


def test_midstream_error_event(events: CapturedEvents, claude: Any) -> None:
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        claude.messages.stream(model="claude-x-midstream-error", max_tokens=100, messages=USER) as stream,
    ):
        stream.get_final_message()
    assert "Overloaded" in str(caught.value)
    event = only_model_event(events)
    assert event["error"].startswith("APIStatusError")
    assert event["metadata"]["error_type"] == "overloaded_error"
    assert event["metadata"]["ended_early"] is True
    assert event["outputs"]["content"] == "Hel"


@pytest.mark.parametrize(
    ("model", "error", "status"), [("error-429", "RateLimitError", 429), ("error-500", "InternalServerError", 500)]
)
def test_http_errors(events: CapturedEvents, claude: Any, model: str, error: str, status: int) -> None:
    with pytest.raises(anthropic.APIStatusError) as caught:
        claude.messages.create(model=model, max_tokens=10, messages=USER)
    assert type(caught.value).__name__ == error
    event = only_model_event(events)
    assert event["error"].startswith(error)
    assert event["metadata"]["status_code"] == status
    assert event["metadata"]["error_type"] == ("rate_limit_error" if status == 429 else "api_error")


def test_http_error_from_the_stream_helper(events: CapturedEvents, claude: Any) -> None:
    with pytest.raises(anthropic.RateLimitError):  # noqa: SIM117 - the request is sent by __enter__
        with claude.messages.stream(model="error-429", max_tokens=10, messages=USER):
            pass
    assert only_model_event(events)["metadata"]["status_code"] == 429


@pytest.mark.skipif(not HAS_PARSE, reason="no messages.parse() in this anthropic")
def test_parse(events: CapturedEvents, claude: Any) -> None:
    class City(BaseModel):
        city: str
        country: str

    parsed = claude.messages.parse(model="claude-x", max_tokens=100, messages=USER, output_format=City)
    assert parsed.parsed_output == City(city="Paris", country="France")
    event = only_model_event(events)
    assert event["event_name"] == "anthropic.messages.parse"
    assert event["config"]["output_format"]["name"] == "City"


@pytest.mark.skipif(not HAS_BETA_MESSAGES, reason="no beta.messages in this anthropic")
def test_beta_messages(events: CapturedEvents, claude: Any) -> None:
    claude.beta.messages.create(model="claude-x", max_tokens=10, messages=USER)
    with claude.beta.messages.stream(model="claude-x", max_tokens=10, messages=USER) as stream:
        stream.get_final_message()
    created, streamed = model_events(events)
    assert created["event_name"] == "anthropic.beta.messages.create"
    assert streamed["event_name"] == "anthropic.beta.messages.stream"
    assert streamed["outputs"]["content"] == "Hello!"


def test_async_create_stream_and_helper(events: CapturedEvents, server: FakeLLMServer) -> None:
    async def main() -> str:
        client = aclient(server)
        with tracer.span("agent", event_type="chain"):
            await client.messages.create(model="claude-x", max_tokens=10, messages=USER)
            stream = await client.messages.create(model="claude-x", max_tokens=10, messages=USER, stream=True)
            assert isinstance(stream, anthropic.AsyncStream)
            async for _event in stream:
                pass
            async with client.messages.stream(model="claude-x", max_tokens=10, messages=USER) as helper:
                text = "".join([piece async for piece in helper.text_stream])
        await client.close()
        return text

    assert asyncio.run(main()) == "Hello!"
    created, raw, helper = model_events(events)
    agent = events.by_name("agent")
    assert {created["parent_id"], raw["parent_id"], helper["parent_id"]} == {agent["event_id"]}
    assert raw["outputs"]["content"] == helper["outputs"]["content"] == "Hello!"
    assert_usage(helper["metadata"])


def test_async_helper_break_and_cancel(events: CapturedEvents, server: FakeLLMServer) -> None:
    async def main() -> None:
        client = aclient(server)
        async with client.messages.stream(model="claude-x-long", max_tokens=10, messages=USER) as helper:
            async for _text in helper.text_stream:
                break

        streaming = asyncio.Event()

        async def consume() -> None:
            async with client.messages.stream(model="claude-x-slow", max_tokens=10, messages=USER) as slow:
                streaming.set()  # the response has started: cancelling now ends a stream, not a request
                await slow.get_final_message()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(streaming.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await client.close()

    asyncio.run(main())
    gc.collect()
    broken, cancelled = model_events(events)
    assert broken["metadata"]["ended_early"] is True
    assert cancelled["metadata"]["end_reason"] == "cancelled"
    assert cancelled["error"] == "CancelledError"
