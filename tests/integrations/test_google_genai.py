"""Google Gen AI client calls become model events: real ``google-genai`` SDK against the fake server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

import tracer
from tracer.testing import CapturedEvents

from ..fake_llm_server import FakeLLMServer
from .conftest import (
    assert_closed_then_abandoned,
    assert_content_left_out,
    assert_uninstrument_restores,
    cancel_midway,
    model_events,
    only_model_event,
)

genai = pytest.importorskip("google.genai")
models_module = pytest.importorskip("google.genai.models")

# Raising an error sent in the middle of a stream came with google-genai 1.4x (1.40 does not, 1.50 does).
SDK_VERSION = tuple(int(part) for part in genai.__version__.split(".")[:2])
RAISES_MIDSTREAM_ERRORS = SDK_VERSION >= (1, 50)

TOOL_CALL = {"id": "fc_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}


@pytest.fixture(scope="module")
def gemini(server: FakeLLMServer) -> Any:
    return genai.Client(api_key="test", http_options={"base_url": server.url})


def tool_calls(event: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {**call, "function": {**call["function"], "arguments": json.loads(call["function"]["arguments"])}}
        for call in event["outputs"]["tool_calls"]
    ]


def assert_usage(metadata: dict[str, Any]) -> None:
    # completion = candidates 2 + thoughts 3; the prompt count includes the 4 cached tokens.
    assert (metadata["prompt_tokens"], metadata["completion_tokens"], metadata["total_tokens"]) == (11, 5, 16)
    assert (metadata["cached_tokens"], metadata["reasoning_tokens"]) == (4, 3)


def test_generate_content(events: CapturedEvents, gemini: Any) -> None:
    with tracer.span("agent", event_type="chain"):
        response = gemini.models.generate_content(
            model="gemini-x",
            contents="hi",
            config=genai.types.GenerateContentConfig(
                system_instruction="be brief", temperature=0.2, max_output_tokens=50
            ),
        )
    assert response.text == "Hello!"
    event = only_model_event(events)
    assert event["event_name"] == "google.models.generate_content"
    assert event["parent_id"] == events.by_name("agent")["event_id"]
    config = event["config"]
    assert (config["provider"], config["model"], config["temperature"], config["max_output_tokens"]) == (
        "google",
        "gemini-x",
        0.2,
        50,
    )
    assert "system_instruction" not in config and "http_options" not in config
    assert event["inputs"]["chat_history"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]
    assert event["outputs"] == {
        "role": "assistant",
        "content": "Hello!",
        "thinking": "Thinking it over.",
        "finish_reason": "STOP",
    }
    assert_usage(event["metadata"])
    assert event["metadata"]["response_model"] == "gemini-x-001"
    # What the SDK parsed (google-genai 1.20 drops the response id; 3.x keeps it).
    assert event["metadata"].get("response_id") == getattr(response, "response_id", None)


def test_function_call_and_content_list(events: CapturedEvents, gemini: Any) -> None:
    types = genai.types
    contents = [
        types.Content(role="user", parts=[types.Part.from_text(text="weather?")]),
        types.Content(role="model", parts=[types.Part.from_text(text="where?")]),
        "Paris",
        types.Part.from_bytes(data=b"\x89PNG....", mime_type="image/png"),
    ]
    tool = types.Tool(function_declarations=[types.FunctionDeclaration(name="get_weather", description="w")])
    gemini.models.generate_content(model="gemini-x-tools", contents=contents, config={"tools": [tool]})
    event = only_model_event(events)
    assert event["inputs"]["chat_history"] == [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "where?"},
        {"role": "user", "content": ["Paris", {"inline_data": {"mime_type": "image/png", "size": 8}}]},
    ]
    assert event["config"]["tools"] == [{"function_declarations": [{"name": "get_weather", "description": "w"}]}]
    assert tool_calls(event) == [TOOL_CALL]
    assert event["outputs"]["content"] is None


def test_generate_content_stream(events: CapturedEvents, gemini: Any) -> None:
    with tracer.span("agent", event_type="chain"):
        stream = gemini.models.generate_content_stream(model="gemini-x-tools", contents="hi")
        texts = [chunk.text for chunk in stream]
    assert texts[1:3] == ["Hel", "lo!"]
    event = only_model_event(events)
    assert event["event_name"] == "google.models.generate_content_stream"
    assert event["parent_id"] == events.by_name("agent")["event_id"]
    assert event["outputs"]["content"] == "Hello!"
    assert event["outputs"]["thinking"] == "Thinking it over."
    assert tool_calls(event) == [TOOL_CALL]
    assert event["outputs"]["finish_reason"] == "STOP"
    assert_usage(event["metadata"])  # the last chunk's usage, not a sum of the chunks'
    assert event["metrics"]["time_to_first_token_ms"] > 0
    assert "ended_early" not in event["metadata"]


def test_stream_closed_or_abandoned(events: CapturedEvents, gemini: Any) -> None:
    stream = gemini.models.generate_content_stream(model="gemini-x-long", contents="hi")
    for index, _chunk in enumerate(stream):
        if index == 2:
            break
    stream.close()

    def read_a_little() -> None:
        for index, _chunk in enumerate(gemini.models.generate_content_stream(model="gemini-x-long", contents="hi")):
            if index == 1:
                break

    read_a_little()
    assert_closed_then_abandoned(events)


def test_midstream_error(events: CapturedEvents, gemini: Any) -> None:
    raised: Exception | None = None
    try:
        for _chunk in gemini.models.generate_content_stream(model="gemini-x-midstream-error", contents="hi"):
            pass
    except genai.errors.ServerError as exc:
        raised = exc
    event = only_model_event(events)
    assert event["outputs"]["content"] == "Hel"
    if not RAISES_MIDSTREAM_ERRORS:  # the SDK yields the error as an empty chunk: the stream just ends
        assert raised is None and not event.get("error")
        return
    assert raised is not None and raised.code == 503
    assert event["error"].startswith("ServerError")
    assert (event["metadata"]["status_code"], event["metadata"]["error_type"]) == (503, "UNAVAILABLE")
    assert event["metadata"]["end_reason"] == "error"


@pytest.mark.parametrize(
    ("model", "error", "status"), [("error-429", "ClientError", 429), ("error-500", "ServerError", 500)]
)
def test_http_errors(events: CapturedEvents, gemini: Any, model: str, error: str, status: int) -> None:
    with pytest.raises(genai.errors.APIError) as caught:
        gemini.models.generate_content(model=model, contents="hi")
    assert type(caught.value).__name__ == error
    event = only_model_event(events)
    assert event["error"].startswith(error)
    assert event["metadata"]["status_code"] == status
    assert event["metadata"]["error_type"] == ("RESOURCE_EXHAUSTED" if status == 429 else "INTERNAL")
    assert event["metadata"]["error_message"] == ("rate limited" if status == 429 else "boom")


def test_embed_content(events: CapturedEvents, gemini: Any) -> None:
    response = gemini.models.embed_content(model="embed-x", contents=["a", "b"], config={"output_dimensionality": 3})
    assert len(response.embeddings) == 2
    event = only_model_event(events)
    assert event["event_name"] == "google.models.embed_content"
    assert (event["config"]["model"], event["config"]["output_dimensionality"]) == ("embed-x", 3)
    assert event["inputs"] == {"input": ["a", "b"]}
    assert event["outputs"] == {"embeddings": 2, "dimensions": 3}


def test_chat_messages_are_one_event_each(events: CapturedEvents, gemini: Any) -> None:
    chat = gemini.chats.create(model="gemini-x")
    with tracer.span("conversation", event_type="chain"):
        chat.send_message("hello")
        chunks = list(chat.send_message_stream("again"))
    assert chunks
    sent, streamed = model_events(events)
    assert (sent["event_name"], streamed["event_name"]) == (
        "google.models.generate_content",
        "google.models.generate_content_stream",
    )
    conversation = events.by_name("conversation")["event_id"]
    assert sent["parent_id"] == streamed["parent_id"] == conversation
    history = streamed["inputs"]["chat_history"]
    assert [message["role"] for message in history] == ["user", "assistant", "user"]
    assert (history[0]["content"], history[2]["content"]) == ("hello", "again")
    assert streamed["outputs"]["content"] == "Hello!"


def test_async_generate_stream_embed_and_chat(events: CapturedEvents, server: FakeLLMServer) -> None:
    async def main() -> str:
        gemini = genai.Client(api_key="test", http_options={"base_url": server.url})
        with tracer.span("agent", event_type="chain"):
            await gemini.aio.models.generate_content(model="gemini-x", contents="hi")
            stream = await gemini.aio.models.generate_content_stream(model="gemini-x", contents="hi")
            text = "".join(
                [
                    chunk.text
                    async for chunk in stream
                    if chunk.text and not chunk.candidates[0].content.parts[0].thought
                ]
            )
            await gemini.aio.models.embed_content(model="embed-x", contents="a")
            await gemini.aio.chats.create(model="gemini-x").send_message("hello")
        await close(gemini)
        return text

    assert asyncio.run(main()) == "Hello!"
    generated, streamed, embedded, chatted = model_events(events)
    agent = events.by_name("agent")["event_id"]
    assert {e["parent_id"] for e in (generated, streamed, embedded, chatted)} == {agent}
    assert streamed["outputs"]["content"] == generated["outputs"]["content"] == "Hello!"
    assert_usage(streamed["metadata"])
    assert streamed["metrics"]["time_to_first_token_ms"] > 0
    assert embedded["event_name"] == "google.models.embed_content"
    assert chatted["event_name"] == "google.models.generate_content"


def test_async_stream_cancelled_and_error(events: CapturedEvents, server: FakeLLMServer) -> None:
    async def main() -> None:
        gemini = genai.Client(api_key="test", http_options={"base_url": server.url})

        async def consume(reading: asyncio.Event) -> None:
            async for _chunk in await gemini.aio.models.generate_content_stream(model="gemini-x-slow", contents="hi"):
                reading.set()

        await cancel_midway(consume)
        with pytest.raises(genai.errors.ClientError):
            await gemini.aio.models.generate_content(model="error-429", contents="hi")
        await close(gemini)

    asyncio.run(main())
    cancelled, failed = model_events(events)
    assert cancelled["metadata"]["end_reason"] == "cancelled"
    assert failed["metadata"]["status_code"] == 429


def test_capture_content_false(gemini: Any) -> None:
    with tracer.testing.capture(capture_content=False) as captured:
        gemini.models.generate_content(model="gemini-x", contents="secret")
        list(gemini.models.generate_content_stream(model="gemini-x", contents="secret"))
    assert len(model_events(captured)) == 2
    assert_content_left_out(captured, "STOP", 16)


def test_uninstrument_restores_and_instrument_again(events: CapturedEvents, gemini: Any) -> None:
    assert_uninstrument_restores(
        events,
        "google-genai",
        (models_module.Models, models_module.AsyncModels),
        ("generate_content", "generate_content_stream", "embed_content"),
        lambda: gemini.models.generate_content(model="gemini-x", contents="hi"),
    )


async def close(client: Any) -> None:
    closer = getattr(client.aio, "aclose", None)  # google-genai >= 1.4x
    if closer is not None:
        await closer()
