"""Cohere v2 client calls become model events: real ``cohere`` SDK against the fake server."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import pytest

import tracer
from tracer import integrations
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

cohere = pytest.importorskip("cohere")
v2_module = pytest.importorskip("cohere.v2.client")

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
TOOL_CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
NO_RETRIES = {"max_retries": 0}


@pytest.fixture
def client(server: FakeLLMServer) -> Iterator[Any]:
    co = cohere.ClientV2(api_key="test", base_url=server.url)
    yield co
    co._client_wrapper.httpx_client.httpx_client.close()


def assert_usage(metadata: dict[str, Any]) -> None:
    # The model's token counts (tokens), the billed ones kept apart.
    assert (metadata["prompt_tokens"], metadata["completion_tokens"], metadata["total_tokens"]) == (11, 2, 13)
    assert (metadata["billed_input_tokens"], metadata["billed_output_tokens"], metadata["cached_tokens"]) == (9, 2, 4)


def test_chat(events: CapturedEvents, client: Any) -> None:
    documents = [{"id": "d1", "data": {"text": "Paris is in France."}}]
    with tracer.span("agent", event_type="chain"):
        response = client.chat(
            model="command-x", messages=USER, temperature=0.2, max_tokens=50, documents=documents, request_options={}
        )
    assert response.message.content[0].text == "Hello!"
    event = only_model_event(events)
    assert event["event_name"] == "cohere.chat"
    assert event["parent_id"] == events.by_name("agent")["event_id"]
    assert event["config"] == {"provider": "cohere", "model": "command-x", "temperature": 0.2, "max_tokens": 50}
    assert event["inputs"] == {"chat_history": USER, "documents": documents}
    assert event["outputs"] == {"role": "assistant", "content": "Hello!", "finish_reason": "COMPLETE"}
    assert_usage(event["metadata"])
    assert event["metadata"]["response_id"] == "chat_1"


def test_tool_call_with_sdk_message_models(events: CapturedEvents, client: Any) -> None:
    messages = [cohere.SystemChatMessageV2(content="be brief"), cohere.UserChatMessageV2(content="weather?")]
    client.chat(model="command-x-tools", messages=messages, tools=TOOLS)
    event = only_model_event(events)
    assert event["inputs"]["chat_history"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "weather?"},
    ]
    assert event["config"]["tools"] == TOOLS
    outputs = event["outputs"]
    assert (outputs["tool_calls"], outputs["tool_plan"], outputs["finish_reason"]) == (
        [TOOL_CALL],
        "I will look it up.",
        "TOOL_CALL",
    )


def test_chat_stream(events: CapturedEvents, client: Any) -> None:
    with tracer.span("agent", event_type="chain"):
        kinds = [event.type for event in client.chat_stream(model="command-x-tools", messages=USER)]
    assert kinds[0] == "message-start" and kinds[-1] == "message-end"
    event = only_model_event(events)
    assert event["event_name"] == "cohere.chat_stream"
    assert event["parent_id"] == events.by_name("agent")["event_id"]
    assert event["outputs"]["tool_calls"] == [TOOL_CALL]  # arguments put together from the deltas
    assert event["outputs"]["tool_plan"] == "I will look it up."
    assert event["outputs"]["finish_reason"] == "TOOL_CALL"
    assert_usage(event["metadata"])
    assert event["metrics"]["time_to_first_token_ms"] > 0
    assert "ended_early" not in event["metadata"]


def test_stream_text_closed_and_abandoned(events: CapturedEvents, client: Any) -> None:
    stream = client.chat_stream(model="command-x-long", messages=USER)
    for event in stream:
        if event.type == "content-delta" and event.delta.message.content.text == "tok1 ":
            break
    stream.close()

    def read_a_little() -> None:
        for event in client.chat_stream(model="command-x-long", messages=USER):
            if event.type == "content-delta":
                break

    read_a_little()
    assert_closed_then_abandoned(events)


def test_stream_ending_in_an_error(events: CapturedEvents, client: Any) -> None:
    list(client.chat_stream(model="command-x-midstream-error", messages=USER))  # the SDK does not raise
    event = only_model_event(events)
    assert event["outputs"]["content"] == "Hel"
    assert event["outputs"]["finish_reason"] == "ERROR"
    assert event["metadata"]["error_message"] == "Overloaded"


@pytest.mark.parametrize(
    ("model", "error", "status"),
    [("error-429", "TooManyRequestsError", 429), ("error-500", "InternalServerError", 500)],
)
def test_http_errors(events: CapturedEvents, client: Any, model: str, error: str, status: int) -> None:
    with pytest.raises(cohere.core.ApiError) as caught:
        client.chat(model=model, messages=USER, request_options=NO_RETRIES)
    assert type(caught.value).__name__ == error
    event = only_model_event(events)
    assert event["error"].startswith(error)
    assert event["metadata"]["status_code"] == status
    assert event["metadata"]["error_message"] == ("rate limited" if status == 429 else "boom")


def test_http_error_of_a_stream(events: CapturedEvents, client: Any) -> None:
    with pytest.raises(cohere.core.ApiError):
        list(client.chat_stream(model="error-429", messages=USER, request_options=NO_RETRIES))
    event = only_model_event(events)
    assert event["metadata"]["status_code"] == 429
    assert event["metadata"]["end_reason"] == "error"


def test_embed(events: CapturedEvents, client: Any) -> None:
    response = client.embed(model="embed-x", texts=["a", "b"], input_type="search_document", embedding_types=["float"])
    assert len(response.embeddings.float_) == 2
    event = only_model_event(events)
    assert event["event_name"] == "cohere.embed"
    assert event["config"] == {
        "provider": "cohere",
        "model": "embed-x",
        "input_type": "search_document",
        "embedding_types": ["float"],
    }
    assert event["inputs"] == {"input": ["a", "b"]}
    assert event["outputs"] == {"embeddings": 2, "dimensions": 3}
    assert event["metadata"]["prompt_tokens"] == 4


def test_async_chat_stream_and_embed(events: CapturedEvents, server: FakeLLMServer) -> None:
    async def main() -> str:
        client = cohere.AsyncClientV2(api_key="test", base_url=server.url)
        with tracer.span("agent", event_type="chain"):
            await client.chat(model="command-x", messages=USER)
            pieces = [
                event.delta.message.content.text
                async for event in client.chat_stream(model="command-x", messages=USER)
                if event.type == "content-delta"
            ]
            await client.embed(model="embed-x", texts=["a"], input_type="search_query", embedding_types=["float"])
        await client._client_wrapper.httpx_client.httpx_client.aclose()
        return "".join(pieces)

    assert asyncio.run(main()) == "Hello!"
    chatted, streamed, embedded = model_events(events)
    agent = events.by_name("agent")["event_id"]
    assert {chatted["parent_id"], streamed["parent_id"], embedded["parent_id"]} == {agent}
    assert chatted["outputs"]["content"] == streamed["outputs"]["content"] == "Hello!"
    assert streamed["event_name"] == "cohere.chat_stream"
    assert_usage(streamed["metadata"])
    assert streamed["metrics"]["time_to_first_token_ms"] > 0


def test_async_stream_cancelled(events: CapturedEvents, server: FakeLLMServer) -> None:
    async def main() -> None:
        client = cohere.AsyncClientV2(api_key="test", base_url=server.url)

        async def consume(reading: asyncio.Event) -> None:
            async for _event in client.chat_stream(model="command-x-slow", messages=USER):
                reading.set()

        await cancel_midway(consume)
        await client._client_wrapper.httpx_client.httpx_client.aclose()

    asyncio.run(main())
    gc.collect()
    event = only_model_event(events)
    assert event["metadata"]["end_reason"] == "cancelled"


def test_capture_content_false(client: Any) -> None:
    secret = [{"role": "user", "content": "secret"}]
    with tracer.testing.capture(capture_content=False) as captured:
        client.chat(model="command-x", messages=secret)
        list(client.chat_stream(model="command-x", messages=secret))
    assert_content_left_out(captured, "COMPLETE", 13)


def test_uninstrument_restores_and_instrument_again(events: CapturedEvents, client: Any) -> None:
    owners = (v2_module.V2Client, v2_module.AsyncV2Client)
    assert_uninstrument_restores(
        events,
        "cohere",
        owners,
        ("chat", "chat_stream", "embed"),
        lambda: client.chat(model="command-x", messages=USER),
    )


def test_clients_made_before_instrumenting_are_traced(server: FakeLLMServer) -> None:
    """``ClientV2.__init__`` keeps its bound ``chat`` and ``chat_stream`` on the instance: a client
    made before ``tracer.init()`` still calls the originals, which reach the raw client, patched."""
    assert integrations.uninstrument("cohere") == ["cohere"]
    try:
        early = cohere.ClientV2(api_key="test", base_url=server.url)
        early_async = cohere.AsyncClientV2(api_key="test", base_url=server.url)
    finally:
        assert integrations.instrument("cohere") == ["cohere"]

    async def async_calls() -> list[str]:
        await early_async.chat(model="command-x", messages=USER)
        pieces = [
            event.delta.message.content.text
            async for event in early_async.chat_stream(model="command-x", messages=USER)
            if event.type == "content-delta"
        ]
        await early_async._client_wrapper.httpx_client.httpx_client.aclose()
        return pieces

    with tracer.testing.capture() as captured:
        with tracer.span("agent", event_type="chain"):
            early.chat(model="command-x", messages=USER)
            kinds = [event.type for event in early.chat_stream(model="command-x-tools", messages=USER)]
            assert "".join(asyncio.run(async_calls())) == "Hello!"
        with pytest.raises(cohere.core.ApiError):
            list(early.chat_stream(model="error-429", messages=USER, request_options=NO_RETRIES))
    early._client_wrapper.httpx_client.httpx_client.close()
    assert kinds[0] == "message-start" and kinds[-1] == "message-end"
    chatted, streamed, async_chatted, async_streamed, failed = model_events(captured)
    assert [e["event_name"] for e in (chatted, streamed, async_chatted, async_streamed)] == [
        "cohere.chat",
        "cohere.chat_stream",
        "cohere.chat",
        "cohere.chat_stream",
    ]
    agent = captured.by_name("agent")["event_id"]
    assert {e["parent_id"] for e in (chatted, streamed, async_chatted, async_streamed)} == {agent}
    assert streamed["outputs"]["tool_calls"] == [TOOL_CALL]
    assert streamed["config"]["stream"] is True
    assert_usage(streamed["metadata"])
    assert_usage(async_streamed["metadata"])
    assert async_streamed["outputs"]["content"] == "Hello!"
    assert streamed["metrics"]["time_to_first_token_ms"] > 0
    assert failed["error"].startswith("TooManyRequestsError")  # failed as the request was sent
    assert failed["metadata"]["status_code"] == 429
