"""Mistral client calls become model events: real ``mistralai`` SDK against the fake server."""

from __future__ import annotations

import asyncio
import gc
import importlib
import types
from collections.abc import Iterator
from typing import Any

import pytest

import tracer
from tracer.testing import CapturedEvents

from ..fake_llm_server import FakeLLMServer
from .conftest import (
    USER,
    assert_closed_then_abandoned,
    assert_content_left_out,
    assert_uninstrument_restores,
    cancel_midway,
    model_events,
    only_model_event,
)

pytest.importorskip("mistralai")
VERSION = importlib.metadata.version("mistralai")
# The Mistral client moved from ``mistralai`` (1.x) to ``mistralai.client`` (2.0).
PACKAGE = "mistralai" if int(VERSION.split(".")[0]) < 2 else "mistralai.client"
sdk = importlib.import_module(PACKAGE)
chat_module = importlib.import_module(f"{PACKAGE}.chat")
UNSET = importlib.import_module(f"{PACKAGE}.types").UNSET
models = importlib.import_module(f"{PACKAGE}.models")

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
TOOL_CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}


@pytest.fixture
def client(server: FakeLLMServer) -> Iterator[Any]:
    mistral = sdk.Mistral(api_key="test", server_url=server.url)
    yield mistral
    mistral.sdk_configuration.client.close()


def assert_usage(metadata: dict[str, Any]) -> None:
    assert (metadata["prompt_tokens"], metadata["completion_tokens"], metadata["total_tokens"]) == (11, 2, 13)


def test_chat_complete(events: CapturedEvents, client: Any) -> None:
    with tracer.span("agent", event_type="chain"):
        response = client.chat.complete(
            model="mistral-x",
            messages=USER,
            temperature=0.2,
            max_tokens=50,
            random_seed=7,
            safe_prompt=False,
            n=UNSET,  # as frameworks pass "not given"
        )
    assert response.choices[0].message.content == "Hello!"
    event = only_model_event(events)
    assert event["event_name"] == "mistral.chat.complete"
    assert event["parent_id"] == events.by_name("agent")["event_id"]
    config = event["config"]
    assert (config["provider"], config["model"], config["temperature"], config["max_tokens"]) == (
        "mistral",
        "mistral-x",
        0.2,
        50,
    )
    assert (config["random_seed"], config["safe_prompt"]) == (7, False)
    assert not {"n", "stop", "messages", "retries", "server_url"} & set(config)  # UNSET and transport
    assert event["inputs"]["chat_history"] == USER
    assert event["outputs"] == {"role": "assistant", "content": "Hello!", "finish_reason": "stop"}
    assert_usage(event["metadata"])
    assert (event["metadata"]["response_id"], event["metadata"]["response_model"]) == ("cmpl-1", "mistral-x")


def test_tool_call(events: CapturedEvents, client: Any) -> None:
    client.chat.complete(model="mistral-x-tools", messages=USER, tools=TOOLS, tool_choice="any")
    event = only_model_event(events)
    assert event["outputs"]["tool_calls"] == [TOOL_CALL]
    assert event["outputs"]["finish_reason"] == "tool_calls"
    assert (event["config"]["tools"], event["config"]["tool_choice"]) == (TOOLS, "any")


def test_chat_stream(events: CapturedEvents, client: Any) -> None:
    with tracer.span("agent", event_type="chain"):
        stream = client.chat.stream(model="mistral-x-tools", messages=USER)
        pieces = [event.data.choices[0].delta.content for event in stream]
    assert "Hel" in pieces and "lo!" in pieces
    event = only_model_event(events)
    assert event["event_name"] == "mistral.chat.stream"
    assert event["parent_id"] == events.by_name("agent")["event_id"]
    assert event["outputs"] == {
        "role": "assistant",
        "content": "Hello!",
        "tool_calls": [TOOL_CALL],
        "finish_reason": "tool_calls",
    }
    assert_usage(event["metadata"])
    assert event["metrics"]["time_to_first_token_ms"] > 0
    assert "ended_early" not in event["metadata"]


@pytest.mark.skipif(not hasattr(models, "ThinkChunk"), reason="this mistralai has no thinking chunks (ThinkChunk)")
@pytest.mark.parametrize("streamed", [False, True])
def test_thinking_and_cached_tokens(events: CapturedEvents, client: Any, streamed: bool) -> None:
    if streamed:
        list(client.chat.stream(model="mistral-x-thinking", messages=USER))
    else:
        client.chat.complete(model="mistral-x-thinking", messages=USER)
    event = only_model_event(events)
    outputs = event["outputs"]
    assert (outputs["content"], outputs["thinking"]) == ("Hello!", "The user greets me.")
    assert_usage(event["metadata"])
    assert event["metadata"]["cached_tokens"] == 5


def test_stream_chunks_are_taken_as_they_arrive(events: CapturedEvents, client: Any) -> None:
    # Mistral's SDK parses each chunk slowly (ChatStream.BATCH): none waits in the recorder's buffer,
    # where it would be cold when taken and keep its objects alive until the worker shapes the event.
    stream = client.chat.stream(model="mistral-x-tools", messages=USER)
    recorder = stream._self_recorder
    seen: list[str] = []
    for event in stream:
        content = event.data.choices[0].delta.content
        if isinstance(content, str):
            seen.append(content)
        assert recorder.buffer is None  # it has none
        assert "".join(recorder.text) == "".join(seen)
    assert "".join(seen) == "Hello!"
    assert only_model_event(events)["outputs"]["content"] == "Hello!"


def test_stream_with_block_break_and_abandon(events: CapturedEvents, client: Any) -> None:
    stream = client.chat.stream(model="mistral-x-long", messages=USER)
    if isinstance(stream, types.GeneratorType):  # mistralai < 1.3 (or so): a plain generator, no `with`
        for index, _event in enumerate(stream):
            if index == 2:
                break
        stream.close()
    else:
        with stream:
            for index, _event in enumerate(stream):
                if index == 2:
                    break

    def read_a_little() -> None:
        for index, _event in enumerate(client.chat.stream(model="mistral-x-long", messages=USER)):
            if index == 1:
                break

    read_a_little()
    assert_closed_then_abandoned(events)


@pytest.mark.parametrize(("model", "status"), [("mistral-error-429", 429), ("mistral-error-500", 500)])
def test_http_errors(events: CapturedEvents, client: Any, model: str, status: int) -> None:
    with pytest.raises(Exception) as caught:
        client.chat.complete(model=model, messages=USER)
    assert caught.value.status_code == status  # type: ignore[attr-defined]
    event = only_model_event(events)
    assert event["error"].startswith(type(caught.value).__name__)
    assert event["metadata"]["status_code"] == status
    assert event["metadata"]["error_type"] == ("rate_limited" if status == 429 else "api_error")
    assert event["metadata"]["error_message"] == ("rate limited" if status == 429 else "boom")


def test_embeddings(events: CapturedEvents, client: Any) -> None:
    response = client.embeddings.create(model="mistral-embed", inputs=["a", "b"])
    assert len(response.data) == 2
    event = only_model_event(events)
    assert event["event_name"] == "mistral.embeddings.create"
    assert event["config"] == {"provider": "mistral", "model": "mistral-embed"}
    assert event["inputs"] == {"input": ["a", "b"]}
    assert event["outputs"] == {"embeddings": 2, "dimensions": 3}
    assert event["metadata"]["prompt_tokens"] == 4


def test_async_complete_and_stream(events: CapturedEvents, server: FakeLLMServer) -> None:
    async def main() -> str:
        client = sdk.Mistral(api_key="test", server_url=server.url)
        with tracer.span("agent", event_type="chain"):
            await client.chat.complete_async(model="mistral-x", messages=USER)
            stream = await client.chat.stream_async(model="mistral-x", messages=USER)
            pieces = [event.data.choices[0].delta.content async for event in stream]
            await client.embeddings.create_async(model="mistral-embed", inputs="a")
        await aclose(client)
        return "".join(piece for piece in pieces if isinstance(piece, str))

    assert asyncio.run(main()) == "Hello!"
    completed, streamed, embedded = model_events(events)
    agent = events.by_name("agent")["event_id"]
    assert {completed["parent_id"], streamed["parent_id"], embedded["parent_id"]} == {agent}
    assert completed["outputs"]["content"] == streamed["outputs"]["content"] == "Hello!"
    assert_usage(streamed["metadata"])
    assert streamed["metrics"]["time_to_first_token_ms"] > 0
    assert embedded["inputs"] == {"input": "a"}


def test_async_stream_cancelled(events: CapturedEvents, server: FakeLLMServer) -> None:
    async def main() -> None:
        client = sdk.Mistral(api_key="test", server_url=server.url)

        async def consume(reading: asyncio.Event) -> None:
            async for _event in await client.chat.stream_async(model="mistral-x-slow", messages=USER):
                reading.set()

        await cancel_midway(consume)
        await aclose(client)

    asyncio.run(main())
    gc.collect()
    event = only_model_event(events)
    assert event["metadata"]["end_reason"] == "cancelled"


def test_parse_is_one_event(events: CapturedEvents, client: Any) -> None:
    if not hasattr(chat_module.Chat, "parse"):
        pytest.skip(f"mistralai {VERSION} has no chat.parse")
    from pydantic import BaseModel

    class Answer(BaseModel):
        text: str

    with pytest.raises(Exception):  # noqa: B017 - the fake answers "Hello!", not JSON: parsing fails after the call
        client.chat.parse(response_format=Answer, model="mistral-x", messages=USER)
    event = only_model_event(events)
    assert event["event_name"] == "mistral.chat.complete"
    assert event["config"]["response_format"]["type"] == "json_schema"


def test_capture_content_false(client: Any) -> None:
    with tracer.testing.capture(capture_content=False) as captured:
        client.chat.complete(model="mistral-x", messages=[{"role": "user", "content": "secret"}])
        list(client.chat.stream(model="mistral-x", messages=[{"role": "user", "content": "secret"}]))
    assert_content_left_out(captured, "stop", 13)


def test_uninstrument_restores_and_instrument_again(events: CapturedEvents, client: Any) -> None:
    assert_uninstrument_restores(
        events,
        "mistralai",
        (chat_module.Chat,),
        ("complete", "complete_async", "stream", "stream_async"),
        lambda: client.chat.complete(model="mistral-x", messages=USER),
    )


async def aclose(client: Any) -> None:
    """Close the client's async HTTP connections in the loop that opened them."""
    await client.sdk_configuration.async_client.aclose()
