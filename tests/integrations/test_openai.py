"""OpenAI client calls become model events: real ``openai`` SDK against the fake server."""

from __future__ import annotations

import asyncio
import gc
import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import tracer
from tracer.integrations import instrument
from tracer.testing import CapturedEvents

from ..api.test_lifecycle import _events as read_events
from ..api.test_lifecycle import _run as run_script
from ..fake_llm_server import FakeLLMServer
from .conftest import USER, cancel_midway, model_events, only_model_event

openai = pytest.importorskip("openai")

# What the installed release has: the range runs (tests/integrations/ranges.py) test the oldest
# supported one too, where newer APIs are skipped.
_chat = importlib.import_module("openai.resources.chat.completions")
HAS_STREAM_HELPER = hasattr(_chat.Completions, "stream")
HAS_PARSE = hasattr(_chat.Completions, "parse")
HAS_STREAM_OPTIONS = "stream_options" in inspect.signature(_chat.Completions.create).parameters
HAS_RESPONSES = importlib.util.find_spec("openai.resources.responses") is not None
needs_stream_helper = pytest.mark.skipif(not HAS_STREAM_HELPER, reason="no chat.completions.stream() in this openai")
needs_parse = pytest.mark.skipif(not HAS_PARSE, reason="no chat.completions.parse() in this openai")
needs_stream_options = pytest.mark.skipif(not HAS_STREAM_OPTIONS, reason="no stream_options in this openai")
needs_responses = pytest.mark.skipif(not HAS_RESPONSES, reason="no Responses API in this openai")
# Responses carry the request id (``_request_id``) from openai 1.4x on.
HAS_REQUEST_ID = "_request_id" in inspect.getsource(importlib.import_module("openai._models"))
NOT_GIVEN = getattr(openai, "NOT_GIVEN", None) or importlib.import_module("openai._types").NOT_GIVEN
OMIT = getattr(openai, "omit", NOT_GIVEN)

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


def aclient(server: FakeLLMServer) -> Any:
    return openai.AsyncOpenAI(base_url=server.openai_url, api_key="sk-test", max_retries=0)


# -- chat completions ------------------------------------------------------------------------------------


def test_chat_create_records_a_model_event_under_the_current_span(events: CapturedEvents, oai: Any) -> None:
    with tracer.span("agent", event_type="chain"):
        reply = oai.chat.completions.create(
            model="gpt-x",
            messages=[{"role": "system", "content": "be brief"}, *USER],
            temperature=0.2,
            max_tokens=50,
            top_p=0.9,
            tools=TOOLS,
            tool_choice="auto",
            seed=NOT_GIVEN,
            user=OMIT,
        )
    assert reply.choices[0].message.content == "Hello!"
    event = only_model_event(events)
    assert event["event_name"] == "openai.chat.completions.create"
    assert event["parent_id"] == events.by_name("agent")["event_id"]
    config = event["config"]
    assert config["provider"] == "local"  # the fake server is on 127.0.0.1 (see test_provider_from_the_host)
    assert config["model"] == "gpt-x"
    assert (config["temperature"], config["max_tokens"], config["top_p"], config["tool_choice"]) == (
        0.2,
        50,
        0.9,
        "auto",
    )
    assert config["tools"] == TOOLS
    assert "seed" not in config and "user" not in config  # sentinels dropped
    assert event["inputs"]["chat_history"] == [{"role": "system", "content": "be brief"}, *USER]
    assert event["outputs"] == {"role": "assistant", "content": "Hello!", "finish_reason": "stop"}
    metadata = event["metadata"]
    assert (metadata["prompt_tokens"], metadata["completion_tokens"], metadata["total_tokens"]) == (11, 2, 13)
    assert metadata["cached_tokens"] == 3
    assert metadata["reasoning_tokens"] == 0
    assert metadata["response_id"] == "chatcmpl-1"
    assert metadata["response_model"] == "gpt-x"
    assert metadata.get("request_id") == ("req_fake_1" if HAS_REQUEST_ID else None)
    assert event["error"] is None


def test_chat_tool_call(events: CapturedEvents, oai: Any) -> None:
    oai.chat.completions.create(model="gpt-x-tools", messages=USER, tools=TOOLS)
    outputs = only_model_event(events)["outputs"]
    assert outputs["finish_reason"] == "tool_calls"
    assert outputs["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    ]


def test_one_shot_message_iterator_still_reaches_the_api(
    events: CapturedEvents, oai: Any, server: FakeLLMServer
) -> None:
    oai.chat.completions.create(model="gpt-x", messages=(m for m in USER))
    assert server.requests[-1][1]["messages"] == USER
    assert only_model_event(events)["inputs"]["chat_history"] == USER


def test_events_shaped_on_the_worker_record_each_call_as_it_was_made(oai: Any) -> None:
    """With the background pipeline our events are shaped on its thread after the call returned:
    a message list the caller extends afterwards must not show up in the earlier call's event."""
    exporter = tracer.InMemoryExporter()
    tracer.init(exporter=exporter, project="test", source="test", first_flush_interval=60, flush_interval=60)
    instrument()
    messages = [{"role": "user", "content": "Hi"}]
    reply = oai.chat.completions.create(model="gpt-x", messages=messages)
    messages.append({"role": "assistant", "content": reply.choices[0].message.content})
    messages.append({"role": "user", "content": "And again?"})
    streamed = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in oai.chat.completions.create(model="gpt-x", messages=messages, stream=True)
    )
    messages.append({"role": "assistant", "content": streamed})
    assert exporter.events == []  # nothing shaped or sent yet
    assert tracer.flush(5)
    first, second = (event for event in exporter.events if event["event_type"] == "model")
    assert [len(event["inputs"]["chat_history"]) for event in (first, second)] == [1, 3]
    assert first["outputs"]["content"] == reply.choices[0].message.content
    assert second["outputs"]["content"] == streamed
    assert second["metrics"]["time_to_first_token_ms"] > 0


@pytest.mark.skipif(
    sys.version_info[:3] == (3, 13, 0),
    reason="CPython 3.13.0 crashes (SIGSEGV, in the garbage collector at exit, in httpx2's close) when an "
    "openai stream is still open at exit, with or without tracer: reproduced with a plain openai script",
)
def test_calls_still_being_shaped_or_streamed_at_exit_are_delivered(server: FakeLLMServer, tmp_path: Path) -> None:
    """The background pipeline, a script that never flushes: a finished call (shaped only at exit)
    and a stream still open when the interpreter exits (ended then, with what it received)."""
    out = tmp_path / "events.jsonl"
    done = run_script(
        f"""
        import openai, tracer
        tracer.init(exporter=tracer.JSONLExporter({str(out)!r}), flush_interval=60, first_flush_interval=60)
        client = openai.OpenAI(base_url={server.openai_url!r}, api_key="sk-test", max_retries=0)
        messages = [{{"role": "user", "content": "Hi"}}]
        client.chat.completions.create(model="gpt-x", messages=messages)
        stream = client.chat.completions.create(model="gpt-x", messages=messages, stream=True)
        next(iter(stream)), next(iter(stream))  # the role chunk, then the first text
        KEEP = stream  # still open at exit
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    finished, open_at_exit = sorted(read_events(out), key=lambda event: "stream" in event["config"])
    assert finished["outputs"]["content"] == "Hello!"
    assert finished["inputs"]["chat_history"] == [{"role": "user", "content": "Hi"}]
    assert (open_at_exit["config"]["stream"], open_at_exit["metadata"]["end_reason"]) == (True, "process_exit")
    assert open_at_exit["metadata"]["ended_early"] is True
    assert "Hello!".startswith(open_at_exit["outputs"]["content"]) and open_at_exit["outputs"]["content"]


def test_raw_response_calls_of_a_client_made_before_init_are_traced(server: FakeLLMServer, tmp_path: Path) -> None:
    """The client (and its with_raw_response accessors, where the release builds them with the
    client) exists before tracer.init(): its raw-response calls are still traced (openai < 1.9 bound
    the unpatched methods at client creation, hence the minimum)."""
    out = tmp_path / "events.jsonl"
    done = run_script(
        f"""
        import openai, tracer
        client = openai.OpenAI(base_url={server.openai_url!r}, api_key="sk-test", max_retries=0)
        tracer.init(exporter=tracer.JSONLExporter({str(out)!r}))
        messages = [{{"role": "user", "content": "Hi"}}]
        client.chat.completions.with_raw_response.create(model="gpt-x", messages=messages).parse()
        client.with_raw_response.chat.completions.create(model="gpt-x", messages=messages).parse()
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    events = read_events(out)
    assert [event["event_name"] for event in events] == ["openai.chat.completions.create"] * 2
    for event in events:
        assert event["outputs"]["content"] == "Hello!"
        assert (event["metadata"]["raw_response"], event["metadata"]["total_tokens"]) == (True, 13)


def test_chat_stream_covers_the_whole_stream(events: CapturedEvents, oai: Any, server: FakeLLMServer) -> None:
    stream = oai.chat.completions.create(model="gpt-x", messages=USER, stream=True)
    assert isinstance(stream, openai.Stream)
    assert model_events(events) == []  # open until the stream ends
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
    assert text == "Hello!"
    event = only_model_event(events)
    assert event["outputs"] == {"role": "assistant", "content": "Hello!", "finish_reason": "stop"}
    assert event["config"]["stream"] is True
    assert event["metrics"]["time_to_first_token_ms"] > 0
    assert "ended_early" not in event["metadata"]
    assert "prompt_tokens" not in event["metadata"]  # usage was not requested…
    assert "stream_options" not in server.requests[-1][1]  # …and not injected


@needs_stream_options
def test_chat_stream_records_usage_when_the_caller_asks_for_it(events: CapturedEvents, oai: Any) -> None:
    stream = oai.chat.completions.create(
        model="gpt-x", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage is not None  # the caller sees the usage chunk
    metadata = only_model_event(events)["metadata"]
    assert (metadata["prompt_tokens"], metadata["completion_tokens"], metadata["total_tokens"]) == (11, 2, 13)


@needs_stream_options
def test_include_stream_usage_option_asks_and_hides_the_usage_chunk(
    events: CapturedEvents, oai: Any, server: FakeLLMServer
) -> None:
    instrument("openai", include_stream_usage=True)
    try:
        chunks = list(oai.chat.completions.create(model="gpt-x", messages=USER, stream=True))
    finally:
        instrument("openai", include_stream_usage=False)
    assert server.requests[-1][1]["stream_options"] == {"include_usage": True}
    assert all(chunk.choices for chunk in chunks)  # the usage-only chunk is not passed on
    assert only_model_event(events)["metadata"]["total_tokens"] == 13


def test_stream_with_block_returns_the_proxy_and_break_ends_the_event(events: CapturedEvents, oai: Any) -> None:
    with oai.chat.completions.create(model="gpt-x-long", messages=USER, stream=True) as stream:
        assert isinstance(stream, openai.Stream)
        for index, _chunk in enumerate(stream):
            if index == 3:
                break
        assert model_events(events) == []
    event = only_model_event(events)
    assert event["metadata"]["ended_early"] is True
    assert event["metadata"]["end_reason"] == "closed"
    assert event["outputs"]["content"] == "tok0 tok1 tok2 "  # the partial output is kept


def test_stream_close(events: CapturedEvents, oai: Any) -> None:
    stream = oai.chat.completions.create(model="gpt-x-long", messages=USER, stream=True)
    next(stream)
    next(stream)
    stream.close()
    event = only_model_event(events)
    assert event["metadata"]["ended_early"] is True
    assert event["outputs"]["content"] == "tok0 "


def test_abandoned_stream_ends_when_collected(events: CapturedEvents, oai: Any) -> None:
    def read_a_little() -> None:
        stream = oai.chat.completions.create(model="gpt-x-long", messages=USER, stream=True)
        next(stream)
        next(stream)

    read_a_little()
    gc.collect()
    event = only_model_event(events)
    assert event["metadata"]["ended_early"] is True
    assert event["metadata"]["end_reason"] == "abandoned"
    assert event["outputs"]["content"] == "tok0 "


def test_break_out_of_a_stream_without_with_ends_on_release(events: CapturedEvents, oai: Any) -> None:
    for index, _chunk in enumerate(oai.chat.completions.create(model="gpt-x-long", messages=USER, stream=True)):
        if index == 2:
            break
    gc.collect()
    assert only_model_event(events)["metadata"]["ended_early"] is True


@needs_stream_helper
def test_stream_helper_is_one_event(events: CapturedEvents, oai: Any) -> None:
    with oai.chat.completions.stream(model="gpt-x-tools", messages=USER, tools=TOOLS) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.tool_calls[0].function.name == "get_weather"
    event = only_model_event(events)
    assert event["event_name"] == "openai.chat.completions.stream"
    assert event["outputs"]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert event["outputs"]["finish_reason"] == "tool_calls"
    assert "ended_early" not in event["metadata"]


@needs_stream_helper
def test_stream_helper_break_ends_at_with_exit(events: CapturedEvents, oai: Any) -> None:
    with oai.chat.completions.stream(model="gpt-x-long", messages=USER) as stream:
        for event in stream:
            if event.type == "content.delta":
                break
    event = only_model_event(events)  # no garbage collection needed
    assert event["metadata"]["ended_early"] is True


def test_midstream_error(events: CapturedEvents, oai: Any) -> None:
    stream = oai.chat.completions.create(model="gpt-x-midstream-error", messages=USER, stream=True)
    with pytest.raises(openai.APIError) as caught:
        for _chunk in stream:
            pass
    event = only_model_event(events)
    assert event["error"] == f"APIError: {caught.value}"
    assert event["metadata"]["ended_early"] is True
    assert event["metadata"]["end_reason"] == "error"
    assert event["metadata"]["error_type"] == "server_error"
    assert event["outputs"]["content"] == "Hel"


@pytest.mark.parametrize(
    ("model", "error", "status"), [("error-429", "RateLimitError", 429), ("error-500", "InternalServerError", 500)]
)
def test_http_errors_are_recorded_and_reraised_unchanged(
    events: CapturedEvents, oai: Any, model: str, error: str, status: int
) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        oai.chat.completions.create(model=model, messages=USER)
    assert type(caught.value).__name__ == error
    assert caught.value.status_code == status
    event = only_model_event(events)
    assert event["error"].startswith(f"{error}: Error code: {status}")
    metadata = event["metadata"]
    assert metadata["status_code"] == status
    assert metadata["exception"] == error
    assert metadata["error_message"] == ("rate limited" if status == 429 else "boom")
    assert metadata["request_id"] == "req_fake_1"


@needs_parse
def test_parse_with_a_pydantic_response_format(events: CapturedEvents, oai: Any) -> None:
    class City(BaseModel):
        city: str
        country: str

    parsed = oai.chat.completions.parse(model="gpt-x", messages=USER, response_format=City)
    assert parsed.choices[0].message.parsed == City(city="Paris", country="France")
    event = only_model_event(events)
    assert event["event_name"] == "openai.chat.completions.parse"
    assert event["config"]["response_format"]["name"] == "City"
    assert event["config"]["response_format"]["schema"]["properties"]["city"] == {"title": "City", "type": "string"}
    assert event["outputs"]["content"] == '{"city": "Paris", "country": "France"}'


def test_with_raw_response(events: CapturedEvents, oai: Any) -> None:
    raw = oai.chat.completions.with_raw_response.create(model="gpt-x", messages=USER)
    assert raw.headers["x-request-id"] == "req_fake_1"
    assert raw.parse().choices[0].message.content == "Hello!"
    event = only_model_event(events)
    assert event["outputs"]["content"] == "Hello!"
    assert event["metadata"]["status_code"] == 200


def test_with_streaming_response_records_the_status_only(events: CapturedEvents, oai: Any) -> None:
    with oai.chat.completions.with_streaming_response.create(model="gpt-x", messages=USER) as response:
        assert response.parse().choices[0].message.content == "Hello!"
    event = only_model_event(events)
    assert event["metadata"]["status_code"] == 200
    assert event["outputs"] in ({}, None)


def test_azure_client_is_provider_azure(events: CapturedEvents, server: FakeLLMServer) -> None:
    client = openai.AzureOpenAI(azure_endpoint=server.url, api_key="sk-test", api_version="2024-10-21", max_retries=0)
    client.chat.completions.create(model="my-deployment", messages=USER)
    client.close()
    event = only_model_event(events)
    assert event["config"]["provider"] == "azure"
    assert event["config"]["model"] == "my-deployment"
    assert server.requests[-1][0] == "/openai/deployments/my-deployment/chat/completions"


@pytest.mark.parametrize(
    ("base_url", "provider"),
    [
        ("https://api.openai.com/v1", "openai"),
        ("https://api.groq.com/openai/v1", "groq"),
        ("https://openrouter.ai/api/v1", "openrouter"),
        ("https://api.deepseek.com", "deepseek"),
        ("http://localhost:11434/v1", "ollama"),
        ("http://127.0.0.1:11434/v1", "ollama"),
        ("http://localhost:8000/v1", "vllm"),
        ("http://127.0.0.1:1234/v1", "lmstudio"),
        ("http://[::1]:8080/v1", "local"),
        ("http://127.0.0.2:9999/v1", "local"),
        ("http://localhost/v1", "local"),
        ("http://gpu-box.internal:11434/v1", "openai"),  # another machine: no claim from the port
    ],
)
def test_provider_from_the_host(base_url: str, provider: str) -> None:
    """The provider comes from the client's base URL: hosted providers by host, servers on this
    machine by their default port (Ollama, vLLM, LM Studio), any other loopback server "local".
    Read from real clients; nothing is sent."""
    from tracer.integrations.openai import _provider

    client = openai.OpenAI(base_url=base_url, api_key="sk-test")
    assert _provider(client.chat.completions) == (
        provider,
        None if provider == "openai" and "api.openai.com" in base_url else base_url.rstrip("/"),
    )
    client.close()


def test_a_local_server_is_named_local_in_the_event(events: CapturedEvents, server: FakeLLMServer) -> None:
    client = openai.OpenAI(base_url=server.openai_url.replace("127.0.0.1", "localhost"), api_key="x", max_retries=0)
    client.chat.completions.create(model="llama3", messages=USER)
    client.close()
    config = only_model_event(events)["config"]
    assert (config["provider"], config["base_url"]) == ("local", server.openai_url.replace("127.0.0.1", "localhost"))


# -- responses, embeddings, legacy completions ---------------------------------------------------------------


@needs_responses
def test_responses_create(events: CapturedEvents, oai: Any) -> None:
    response = oai.responses.create(model="gpt-x", input="hi", instructions="be brief", max_output_tokens=20)
    assert response.output_text == "Hello!"
    event = only_model_event(events)
    assert event["event_name"] == "openai.responses.create"
    assert event["inputs"]["chat_history"] == [{"role": "system", "content": "be brief"}, *USER]
    assert event["config"]["max_output_tokens"] == 20
    assert event["outputs"] == {"role": "assistant", "content": "Hello!", "finish_reason": "completed"}
    assert (event["metadata"]["prompt_tokens"], event["metadata"]["completion_tokens"]) == (9, 2)
    assert event["metadata"]["response_id"] == "resp_1"


@needs_responses
def test_responses_tool_call(events: CapturedEvents, oai: Any) -> None:
    oai.responses.create(model="gpt-x-tools", input=[{"role": "user", "content": "weather?"}])
    event = only_model_event(events)
    assert event["inputs"]["chat_history"] == [{"role": "user", "content": "weather?"}]
    assert event["outputs"]["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    ]


@needs_responses
def test_responses_stream_and_helper(events: CapturedEvents, oai: Any) -> None:
    kinds = [event.type for event in oai.responses.create(model="gpt-x", input="hi", stream=True)]
    assert kinds[-1] == "response.completed"
    with oai.responses.stream(model="gpt-x", input="hi") as stream:
        assert stream.get_final_response().output_text == "Hello!"
    first, second = model_events(events)
    for event in (first, second):
        assert event["outputs"]["content"] == "Hello!"
        assert event["metadata"]["total_tokens"] == 11
        assert event["metrics"]["time_to_first_token_ms"] > 0


@needs_responses
def test_responses_stream_break_keeps_partial_text(events: CapturedEvents, oai: Any) -> None:
    with oai.responses.stream(model="gpt-x-long", input="hi") as stream:
        for event in stream:
            if event.type == "response.output_text.delta" and event.delta == "tok1 ":
                break
    event = only_model_event(events)
    assert event["metadata"]["ended_early"] is True
    assert event["outputs"]["content"] == "tok0 tok1 "


@needs_responses
def test_responses_parse(events: CapturedEvents, oai: Any) -> None:
    oai.responses.parse(model="gpt-x", input="hi")
    assert only_model_event(events)["event_name"] == "openai.responses.parse"


def test_embeddings(events: CapturedEvents, oai: Any) -> None:
    result = oai.embeddings.create(model="emb-x", input=["a", "b"])
    assert len(result.data) == 2
    event = only_model_event(events)
    assert event["event_name"] == "openai.embeddings.create"
    assert event["inputs"] == {"input": ["a", "b"]}
    assert event["outputs"] == {"embeddings": 2, "dimensions": 3}
    assert event["metadata"]["prompt_tokens"] == 4


def test_legacy_completions(events: CapturedEvents, oai: Any) -> None:
    oai.completions.create(model="gpt-x", prompt="Say hi", max_tokens=5)
    text = "".join(chunk.choices[0].text for chunk in oai.completions.create(model="gpt-x", prompt="x", stream=True))
    assert text == "Hello!"
    plain, streamed = model_events(events)
    assert plain["inputs"] == {"prompt": "Say hi"}
    assert plain["outputs"] == {"text": "Hello!", "finish_reason": "stop"}
    assert plain["metadata"]["total_tokens"] == 7
    assert streamed["outputs"] == {"text": "Hello!", "finish_reason": "stop"}


# -- async ----------------------------------------------------------------------------------------------------


def test_async_create_and_stream(events: CapturedEvents, server: FakeLLMServer) -> None:
    async def main() -> str:
        client = aclient(server)
        with tracer.span("agent", event_type="chain"):
            await client.chat.completions.create(model="gpt-x", messages=USER)
            stream = await client.chat.completions.create(model="gpt-x", messages=USER, stream=True)
            assert isinstance(stream, openai.AsyncStream)
            text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream])
        await client.close()
        return text

    assert asyncio.run(main()) == "Hello!"
    plain, streamed = model_events(events)
    agent = events.by_name("agent")
    assert plain["parent_id"] == streamed["parent_id"] == agent["event_id"]
    assert streamed["outputs"]["content"] == "Hello!"
    assert streamed["metrics"]["time_to_first_token_ms"] > 0


def test_async_with_break_and_aclose(events: CapturedEvents, server: FakeLLMServer) -> None:
    async def main() -> None:
        client = aclient(server)
        async with await client.chat.completions.create(model="gpt-x-long", messages=USER, stream=True) as stream:
            async for _chunk in stream:
                break
        stream = await client.chat.completions.create(model="gpt-x-long", messages=USER, stream=True)
        await stream.__anext__()
        await stream.close()
        await client.close()

    asyncio.run(main())
    first, second = model_events(events)
    assert first["metadata"]["ended_early"] is True and second["metadata"]["ended_early"] is True


@needs_stream_helper
def test_async_stream_helper(events: CapturedEvents, server: FakeLLMServer) -> None:
    async def main() -> str:
        client = aclient(server)
        async with client.chat.completions.stream(model="gpt-x", messages=USER) as stream:
            final = await stream.get_final_completion()
        await client.close()
        return str(final.choices[0].message.content)

    assert asyncio.run(main()) == "Hello!"
    event = only_model_event(events)
    assert event["event_name"] == "openai.chat.completions.stream"
    assert event["outputs"]["content"] == "Hello!"


def test_async_cancellation_mid_stream(events: CapturedEvents, server: FakeLLMServer) -> None:
    async def main() -> None:
        client = aclient(server)

        async def consume(reading: asyncio.Event) -> None:
            stream = await client.chat.completions.create(model="gpt-x-slow", messages=USER, stream=True)
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    reading.set()  # some text is in: the event must keep it

        await cancel_midway(consume)
        await client.close()

    asyncio.run(main())
    gc.collect()
    event = only_model_event(events)
    assert event["metadata"]["ended_early"] is True
    assert event["metadata"]["end_reason"] == "cancelled"
    assert event["outputs"]["content"].startswith("tok0 ")


def test_async_errors(events: CapturedEvents, server: FakeLLMServer) -> None:
    async def main() -> None:
        client = aclient(server)
        with pytest.raises(openai.RateLimitError):
            await client.chat.completions.create(model="error-429", messages=USER)
        await client.close()

    asyncio.run(main())
    assert only_model_event(events)["metadata"]["status_code"] == 429


@needs_stream_helper
def test_async_stream_helper_break_and_midstream_error(events: CapturedEvents, server: FakeLLMServer) -> None:
    async def main() -> None:
        client = aclient(server)
        async with client.chat.completions.stream(model="gpt-x-long", messages=USER) as stream:
            async for event in stream:
                if event.type == "content.delta":
                    break
        stream_raw = await client.chat.completions.create(model="gpt-x-midstream-error", messages=USER, stream=True)
        with pytest.raises(openai.APIError):
            async for _chunk in stream_raw:
                pass
        await client.close()

    asyncio.run(main())
    broken, failed = model_events(events)
    assert broken["metadata"]["end_reason"] == "closed"  # at the helper's exit, no garbage collection needed
    assert failed["metadata"]["end_reason"] == "error"
    assert failed["error"].startswith("APIError")


@needs_stream_helper
def test_include_stream_usage_with_the_stream_helper(events: CapturedEvents, oai: Any, server: FakeLLMServer) -> None:
    instrument("openai", include_stream_usage=True)
    try:
        with oai.chat.completions.stream(model="gpt-x", messages=USER) as stream:
            final = stream.get_final_completion()
    finally:
        instrument("openai", include_stream_usage=False)
    assert final.choices[0].message.content == "Hello!"
    assert server.requests[-1][1]["stream_options"] == {"include_usage": True}
    event = only_model_event(events)
    assert event["event_name"] == "openai.chat.completions.stream"
    assert event["metadata"]["total_tokens"] == 13


def test_a_queued_llm_event_is_charged_the_size_of_its_messages(oai: Any) -> None:
    """Until the worker shapes it, an LLM event's record holds the call's messages: the queue's
    byte bound counts them (not a flat estimate), so a backlog of large prompts stays bounded."""
    exporter = tracer.InMemoryExporter()
    t = tracer.init(exporter=exporter, project="test", source="test", first_flush_interval=60, flush_interval=60)
    instrument()
    oai.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "Hi"}])
    _, small = t.stats()["queue_size"], t.stats()["queue_bytes"]
    history = [{"role": "user" if i % 2 else "assistant", "content": "x" * 10_000} for i in range(20)]
    oai.chat.completions.create(model="gpt-x", messages=history)
    queued, both = t.stats()["queue_size"], t.stats()["queue_bytes"]
    assert queued == 2 and exporter.events == []  # neither shaped yet
    large = both - small
    assert 200_000 <= large < 200_000 + 20_000  # the 200,000 characters of history, plus a bound
    assert small < 20_000
    assert tracer.flush(5)
